"""dynamo-bench."""

"""Performance knowledge: the model catalogue (and, later, GPUs, roofline and timing tables)."""

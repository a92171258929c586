"""Reports: pure functions of a study's typed records, and the writers of its files."""

from dynamo_bench.report.files import Report, write_report

__all__ = ["Report", "write_report"]

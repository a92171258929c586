"""Names shared by the writer and the readers of a study: no dependencies, nothing to run.

A study folder holds `STUDY_FILE` (the storage it uses, the sweep, the tiers; format
`SCHEMA_VERSION`); its storage holds two Optuna studies per SLA tier, named by `study_name`.
"""

from __future__ import annotations

#: The file in a study folder that names its storage, sweep and tiers.
STUDY_FILE = "study.yaml"

#: The format of `STUDY_FILE` and of the trials' user attributes; readers refuse another.
SCHEMA_VERSION = 1


def study_name(sweep_name: str, tier: str, verify: bool = False) -> str:
    """`<sweep>.<tier>` (exploration) or `<sweep>.<tier>.verify` (live verification)."""
    return f"{sweep_name}.{tier}" + (".verify" if verify else "")

"""Where a study's trials live: SQLite in the study folder by default, or a journal file or a
database URL that several tuner processes (or machines) share.

`storage_url` turns the sweep's `storage:` setting into a canonical string that the study folder
records in `study.yaml`; `open_storage` opens it. Trials of a tuner that died (SIGKILL, power
loss) are found by `recover_interrupted`: on this host by the tuner's PID, elsewhere by Optuna's
heartbeat (SQL storages only), and re-queued so the study loses nothing.
"""

from __future__ import annotations

import datetime
import os
import random
import socket
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import psutil
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from dynamo_bench.errors import SpecError

HEARTBEAT_S = 10
GRACE_S = 60
TUNER_ATTR = "tuner"
ORPHAN_S = 30


def storage_url(setting: str | None, folder: Path) -> str:
    """`None`/`sqlite` -> `sqlite:///FOLDER/study.db`; `journal` -> `journal:FOLDER/study.journal`;
    `journal:PATH`, `sqlite:///...`, `postgresql://...`, `mysql://...` as given."""
    if setting in (None, "", "sqlite"):
        return f"sqlite:///{(folder / 'study.db').resolve()}"
    if setting == "journal":
        return f"journal:{(folder / 'study.journal').resolve()}"
    if setting.startswith("journal:"):
        return f"journal:{Path(setting.removeprefix('journal:')).expanduser().resolve()}"
    if "://" in setting:
        return setting
    raise SpecError("storage", f"{setting!r} is not a storage (use sqlite, journal, "
                    "journal:PATH, or a database URL such as postgresql://user@host/db)")


def open_storage(url: str) -> BaseStorage:
    """Open the storage `storage_url` returned (the database must be reachable)."""
    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        # several processes on one SQLite file: wait for the lock instead of failing at once
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    for attempt in range(6):
        try:
            with warnings.catch_warnings():  # the heartbeat is marked experimental
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                                  heartbeat_stale_trial_callback=_requeue, **kwargs)
        except (ImportError, ModuleNotFoundError) as e:
            raise SpecError("storage", f"cannot open {url.split('://')[0]} storage: {e}") \
                from None
        except Exception as e:  # sqlalchemy's errors: say it in one line
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            # two tuners creating the schema of an empty database at once: one wins, the
            # other sees a duplicate; the schema exists after a moment
            if attempt < 5 and any(w in msg for w in ("duplicate key", "already exists",
                                                      "UniqueViolation", "IntegrityError")):
                time.sleep(0.2 + random.random() * (attempt + 1))
                continue
            raise SpecError("storage", f"cannot open {_redact(url)}: {msg}") from None
    raise AssertionError("unreachable")


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def tuner_id() -> str:
    """`host:pid:start-time` of this process (the start time guards against PID reuse)."""
    p = psutil.Process()
    return f"{socket.gethostname()}:{os.getpid()}:{int(p.create_time())}"


def _alive_here(tuner: str) -> bool | None:
    """True/False for a tuner on this host, None for one elsewhere (cannot tell)."""
    try:
        host, pid, started = tuner.rsplit(":", 2)
    except ValueError:
        return None
    if host != socket.gethostname():
        return None
    try:
        return int(psutil.Process(int(pid)).create_time()) == int(started)
    except (psutil.NoSuchProcess, ValueError):
        return False


def _requeue(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Put an interrupted trial's parameters back in the queue (once)."""
    attrs = {k: v for k, v in trial.user_attrs.items() if k in ("start_point", "verifies")}
    params = trial.params or trial.system_attrs.get("fixed_params") or {}
    study.enqueue_trial(params, user_attrs={**attrs, "retry_of": trial.number})


def recover_interrupted(study: optuna.Study) -> list[int]:
    """Fail and re-queue RUNNING trials whose tuner process is gone; returns their numbers."""
    with warnings.catch_warnings():  # marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # other hosts, by heartbeat (SQL storages)
    storage = study._storage
    recovered = []
    now = datetime.datetime.now()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        tuner = t.user_attrs.get(TUNER_ATTR)
        # without a tuner id the trial's creator died within moments of creating it
        orphan = tuner is None and t.datetime_start is not None and \
            (now - t.datetime_start).total_seconds() > ORPHAN_S
        if orphan or (tuner is not None and _alive_here(tuner) is False):
            storage.set_trial_user_attr(t._trial_id, "reason",
                                        "interrupted: its tuner process is gone (re-queued)")
            storage.set_trial_user_attr(t._trial_id, "status", "failed")
            if storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                if t.params or t.system_attrs.get("fixed_params"):
                    _requeue(study, t)
                recovered.append(t.number)
    return recovered

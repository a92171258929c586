"""Where a study's trials live: SQLite in the study folder by default, or a journal file or a
database URL that several tuner processes (or machines) share.

`storage_url` turns the sweep's `storage:` setting into a canonical string (absolute paths);
`open_storage` opens it. The study folder records it in `study.yaml` as `recorded_url` writes it:
SQLite and journal paths inside the folder relative to it (a moved folder still opens), and no
password. `resolve_recorded` reads it back; the password comes from the URL the user gives again
(`--storage`), from `$DYNAMO_BENCH_STORAGE_PASSWORD`, or from the driver's own sources
(PostgreSQL: `$PGPASSWORD`, `~/.pgpass`). Every message shows URLs through `redact`.

Trials of a tuner that died (SIGKILL, power loss) are found by `recover_interrupted`: on this
host by the tuner's PID, elsewhere by Optuna's heartbeat (SQL storages only), and re-queued so
the study loses nothing; `interrupt_trials` does the same for the tuner's own trials when it is
stopped by Ctrl-C or SIGTERM.
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
PASSWORD_ENV = "DYNAMO_BENCH_STORAGE_PASSWORD"
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


def _inside(path: Path, folder: Path) -> str | None:
    try:
        return path.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return None


def recorded_url(url: str, folder: Path) -> str:
    """`url` as `study.yaml` keeps it: a path inside `folder` relative to it, no password."""
    if url.startswith("journal:"):
        rel = _inside(Path(url.removeprefix("journal:")), folder)
        return f"journal:{rel}" if rel else url
    u = _parse(url)
    if u is None:
        return url
    if u.drivername.startswith("sqlite"):
        rel = _inside(Path(u.database), folder) if u.database and u.database != ":memory:" \
            else None
        return f"sqlite:///{rel}" if rel else url
    return _without_password(u).render_as_string(hide_password=False)


def resolve_recorded(recorded: str, folder: Path) -> str:
    """The URL `recorded_url` wrote, made openable again: relative paths are relative to the
    folder; a password-less database URL takes `$DYNAMO_BENCH_STORAGE_PASSWORD` if set."""
    if recorded.startswith("journal:"):
        return f"journal:{_in_folder(Path(recorded.removeprefix('journal:')), folder)}"
    u = _parse(recorded)
    if u is None:
        return recorded
    if u.drivername.startswith("sqlite"):
        if u.database and u.database != ":memory:":
            return f"sqlite:///{_in_folder(Path(u.database), folder)}"
        return recorded
    if u.username and u.password is None and os.environ.get(PASSWORD_ENV):
        return u.set(password=os.environ[PASSWORD_ENV]).render_as_string(hide_password=False)
    return recorded


def _in_folder(path: Path, folder: Path) -> Path:
    """A recorded path: relative to the folder; an absolute one (older study files) that is
    gone but whose file is in the folder (the folder was moved) is the one in the folder."""
    path = path.expanduser()
    if not path.is_absolute():
        return (folder / path).resolve()
    if not path.exists() and (folder / path.name).exists():
        return (folder / path.name).resolve()
    return path


def same_storage(a: str, b: str, folder: Path) -> bool:
    """Whether two URLs name one storage (passwords aside)."""
    return recorded_url(a, folder) == recorded_url(b, folder)


def redact(url: str) -> str:
    """`url` with any password replaced by `***` (for messages)."""
    u = _parse(url)
    if u is None:
        return _redact(url)
    query = {k: ("***" if _secret(k) else v) for k, v in u.query.items()}
    return u.set(query=query).render_as_string(hide_password=True)


def _secret(key: str) -> bool:
    return any(w in key.lower() for w in ("pass", "pwd", "secret", "token"))


def _parse(url: str):  # type: ignore[no-untyped-def]
    if "://" not in url:
        return None
    from sqlalchemy.engine import make_url
    try:
        return make_url(url)
    except Exception:  # not a URL SQLAlchemy can read: left as it is
        return None


def _without_password(u):  # type: ignore[no-untyped-def]
    from sqlalchemy.engine import URL
    return URL.create(u.drivername, u.username, None, u.host, u.port, u.database,
                      {k: v for k, v in u.query.items() if not _secret(k)})


def _scrub(text: str, url: str) -> str:
    """`text` (a driver's message) with the URL's password, if any, replaced by `***`."""
    u = _parse(url)
    secrets = [u.password] if u is not None and u.password else []
    if u is not None:
        secrets += [str(v) for k, v in u.query.items() if _secret(k) and v]
    for s in secrets:
        text = text.replace(s, "***")
    return text


def open_storage(url: str) -> BaseStorage:
    """Open the storage `storage_url` returned (the database must be reachable)."""
    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:"))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        except OSError as e:
            raise SpecError("storage", f"cannot open the journal {path}: "
                            f"{e.strerror or e} (choose a writable path)") from None
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
            raise SpecError("storage", f"cannot open {url.split('://')[0]} storage: "
                            f"{_scrub(str(e), url)}") from None
        except Exception as e:  # sqlalchemy's errors: say it in one line
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            # two tuners creating the schema of an empty database at once: one wins, the
            # other sees a duplicate; the schema exists after a moment
            if attempt < 5 and any(w in msg for w in ("duplicate key", "already exists",
                                                      "UniqueViolation", "IntegrityError")):
                time.sleep(0.2 + random.random() * (attempt + 1))
                continue
            u = _parse(url)
            hint = ""
            if u is not None and u.username and u.password is None \
                    and not u.drivername.startswith("sqlite"):
                hint = (" (study.yaml keeps no password: give --storage with it again, or set "
                        f"{PASSWORD_ENV})")
            raise SpecError("storage", f"cannot open {redact(url)}: {_scrub(msg, url)}{hint}") \
                from None
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
    """Put an interrupted trial's parameters back in the queue (once). A verification is not
    re-queued: the verify loop measures every candidate without a finished verification."""
    if "verifies" in trial.user_attrs:
        return
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


def interrupted_reason(e: BaseException) -> str:
    """The `reason` of a trial stopped by Ctrl-C (KeyboardInterrupt) or a signal."""
    why = str(e).removeprefix("received ") or "Ctrl-C"
    return f"interrupted: {why} (re-queued)"


def interrupt_trials(study: optuna.Study, tuner: str, reason: str) -> list[int]:
    """Fail and re-queue the trials `tuner` (this process) was running when it was stopped
    (Ctrl-C, SIGTERM): RUNNING ones, and FAIL ones the objective marked interrupted on its
    way out (Optuna failed them) that are not re-queued yet. Returns their numbers."""
    storage = study._storage
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    out = []
    for t in trials:
        if t.user_attrs.get(TUNER_ATTR) != tuner:
            continue
        if t.state == TrialState.RUNNING:
            storage.set_trial_user_attr(t._trial_id, "reason", reason)
            storage.set_trial_user_attr(t._trial_id, "status", "failed")
            if not storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                continue
        elif not (t.state == TrialState.FAIL and t.number not in retried
                  and str(t.user_attrs.get("reason", "")).startswith("interrupted")):
            continue
        if t.params or t.system_attrs.get("fixed_params"):
            _requeue(study, t)
        out.append(t.number)
    return out

"""Tuning with real processes: the quickstart end to end, a worker crash in a live trial,
resume after SIGKILL, SIGINT or SIGTERM of the tuner, and two tuners sharing one study on
PostgreSQL."""

from __future__ import annotations

import copy
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import optuna
import psutil
import pytest
import yaml

from dynamo_bench import api
from dynamo_bench.tune.sweep_file import parse_sweep
from dynamo_bench.tune.tuner import TuneOptions, Tuner
from tests.helpers import sigint_default, wait_gone
from tests.postgres import postgres_server

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "dynamo_bench.cli"]

REPLAY_SWEEP: dict[str, Any] = {
    "name": "shared", "deployment": {"model": "Qwen3-8B", "gpu": "h100_sxm"},
    "budget": {"gpus": 4, "trials": 24},
    "space": {"mode": ["agg", "disagg"], "tp": [1, 2], "block_size": [16, 32, 64],
              "max_num_seqs": [16, 64, 256], "router": {"mode": ["kv", "round-robin"]}},
    "workload": {"isl": {"mean": 512}, "osl": {"mean": 64}, "concurrency": 1,
                 "request_count": 32},
    "sla": {"batch": "ttft_ms.p90<=2000,itl_ms.p90<=40"},
    "load": {"limit": 128},
    "fidelity": {"verify": "none"},
}


def write_sweep(path: Path, **changes: Any) -> Path:
    data = copy.deepcopy(REPLAY_SWEEP)
    data.update(changes)
    path.write_text(yaml.safe_dump(data))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_quickstart_tunes_verifies_and_writes_deployable_files(quickstart) -> None:
    out, proc = quickstart.out, quickstart.proc
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert quickstart.seconds < 600
    assert (out / "report.html").is_file()
    study = api.load_study(out)
    for tier in ("interactive", "batch"):
        choice = study.best(tier)
        assert choice.best is not None, tier
        assert choice.best.verified is not None and choice.best.verified_ok, tier
        summary = (out / "best" / tier / "summary.md").read_text()
        assert "Verified (live)" in summary and "Live vs predicted" in summary
        check = subprocess.run([*CLI, "serve", str(out / "best" / tier / "deployment.yaml"),
                                "--check"], capture_output=True, text=True, timeout=300)
        assert check.returncode == 0, check.stdout + check.stderr
    verify = study.trials()
    verify = verify[verify["kind"] == "verify"]
    assert set(verify["fidelity"]) == {"live"} and len(verify) >= 2
    # the launch script a person would run: it serves, and it stops on SIGTERM
    port = _free_port()
    script = out / "best" / "batch" / "launch.sh"
    env = {**os.environ, "PORT": str(port), "PYTHON": sys.executable}
    launched = subprocess.Popen(["bash", str(script)], env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        answer = None
        while time.monotonic() < deadline and answer is None:
            assert launched.poll() is None, "launch.sh exited"
            try:
                r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=10,
                               json={"model": "Qwen3-32B", "max_tokens": 4, "messages": [
                                   {"role": "user", "content": "hello"}]})
                if r.status_code == 200:
                    answer = r.json()
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert answer is not None and answer["usage"]["completion_tokens"] == 4
    finally:
        group = [p.pid for p in psutil.Process(launched.pid).children(recursive=True)]
        os.killpg(launched.pid, signal.SIGTERM)
        launched.wait(timeout=30)
        assert not wait_gone([launched.pid, *group], timeout_s=30)


LIVE_SWEEP: dict[str, Any] = {
    "name": "stopped", "deployment": {"model": "Qwen3-0.6B", "gpu": "h100_sxm"},
    "budget": {"gpus": 1, "trials": 2},
    "space": {"mode": ["agg"], "max_num_seqs": [8, 16]},
    "workload": {"isl": {"mean": 128}, "osl": {"mean": 32}, "concurrency": 1,
                 "request_count": 16},
    "sla": {"loose": "ttft_ms.p90<=5000,itl_ms.p90<=200"},
    "load": {"limit": 2, "requests_per_slot": 8},
    "fidelity": {"explore": "live", "verify": "none"}, "search": {"start_points": 0},
    "peer": "none",
}


def test_worker_crash_during_a_live_trial_is_recorded_and_the_study_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a relative study folder, as `--out results/x` gives
    sweep = parse_sweep({**{k: v for k, v in LIVE_SWEEP.items() if k != "peer"},
                         "name": "crash", "fidelity": {"explore": "live"}})
    killed: list[str] = []

    def kill_first_worker() -> None:
        """Once AIPerf is loading the first trial's stack, SIGKILL its mocker worker."""
        me = psutil.Process()
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            procs = me.children(recursive=True)
            cmds = {p.pid: " ".join(p.cmdline()) for p in procs if p.is_running()}
            worker = next((pid for pid, c in cmds.items() if "dynamo.mocker" in c), None)
            loading = any("aiperf" in c and "profile" in c for c in cmds.values())
            if worker and loading:
                time.sleep(1.0)
                os.kill(worker, signal.SIGKILL)
                killed.append(cmds[worker])
                return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_first_worker, daemon=True)
    killer.start()
    Tuner(sweep, Path("crash"), options=TuneOptions(verify=False)).run()
    killer.join(timeout=5)
    assert killed, "the worker was never found"
    trials = api.load_study(tmp_path / "crash").trials().sort_values("trial")
    first, second = trials.iloc[0], trials.iloc[1]
    assert first["state"] == "FAIL" and first["status"] == "failed"
    assert "died" in first["reason"] and "agg-0" in first["reason"], first["reason"]
    assert second["state"] == "COMPLETE" and second["status"] == "complete"
    assert second["fidelity"] == "live"
    logs = tmp_path / "crash" / "trials" / "loose" / "0000" / "stack" / "logs"
    assert (logs / "agg-0.log").is_file() and (logs / "frontend.log").is_file()


def _finished(db: Path) -> tuple[int, int]:
    """(finished, running and being evaluated) trials in a study database, read without
    Optuna: a trial is being evaluated once its deployment is recorded (all parameters are
    chosen by then)."""
    if not db.exists():
        return 0, 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            rows = dict(conn.execute("SELECT state, COUNT(*) FROM trials GROUP BY state"))
            running = conn.execute(
                "SELECT COUNT(DISTINCT t.trial_id) FROM trials t JOIN trial_user_attributes a "
                "ON a.trial_id = t.trial_id WHERE t.state = 'RUNNING' "
                "AND a.key = 'deployment'").fetchone()[0]
    except sqlite3.Error:
        return 0, 0
    return rows.get("COMPLETE", 0) + rows.get("FAIL", 0), running


def test_a_killed_tuner_resumes_without_losing_a_trial(tmp_path: Path) -> None:
    # big probes (many requests) make each trial take a while, so the kill lands inside one
    sweep = write_sweep(tmp_path / "s.yaml", name="killed", budget={"gpus": 4, "trials": 30},
                        load={"limit": 128, "requests_per_slot": 96})
    out = tmp_path / "killed"
    db = out / "study.db"
    proc = subprocess.Popen([*CLI, "tune", str(sweep), "--out", str(out)],
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    done = running = 0
    while (done < 6 or not running) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.01)
        done, running = _finished(db)
    if done < 6 or not running:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        pytest.fail(f"waited 240 s for 6 finished trials and one running: {done} finished, "
                    f"{running} running")
    os.killpg(proc.pid, signal.SIGKILL)  # inside the running trial's evaluation
    proc.wait(timeout=30)
    done_at_kill, running_at_kill = _finished(db)
    assert 6 <= done_at_kill < 30 and running_at_kill == 1
    resumed = subprocess.run([*CLI, "tune", str(sweep), "--out", str(out)],
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    s = optuna.load_study(study_name="killed.batch", storage=f"sqlite:///{db}")
    trials = s.trials
    assert not [t for t in trials if t.state in (optuna.trial.TrialState.RUNNING,
                                                 optuna.trial.TrialState.WAITING)]
    assert [t.number for t in trials] == list(range(len(trials)))
    interrupted = [t for t in trials if str(t.user_attrs.get("reason", "")).startswith(
        "interrupted")]
    assert len(interrupted) == 1 and interrupted[0].state == optuna.trial.TrialState.FAIL
    retry = [t for t in trials if t.user_attrs.get("retry_of") == interrupted[0].number]
    assert len(retry) == 1 and retry[0].params == interrupted[0].params
    assert retry[0].state == optuna.trial.TrialState.COMPLETE
    # the budget counts distinct evaluations, not the interrupted attempt nor a re-proposal
    # answered from its twin: 30, none lost
    assert len([t for t in trials if "duplicate_of" not in t.user_attrs]) - 1 == 30
    assert len({t.user_attrs["tuner"] for t in trials}) == 2  # first run, then the resume



def _stack_children(pid: int) -> list[psutil.Process]:
    """The tuner's descendants that belong to a stack under evaluation (frontend, workers)."""
    out = []
    for p in psutil.Process(pid).children(recursive=True):
        try:
            if "dynamo." in " ".join(p.cmdline()):
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_an_interrupted_tuner_tears_down_re_queues_and_resumes(tmp_path: Path,
                                                               sig: signal.Signals) -> None:
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump(LIVE_SWEEP))
    out = tmp_path / "stopped"
    db = out / "study.db"
    cmd = [*CLI, "tune", str(sweep), "--out", str(out)]
    proc = subprocess.Popen(cmd, start_new_session=True, preexec_fn=sigint_default,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        # wait for the first trial's stack: the trial is being evaluated, its processes up
        deadline = time.monotonic() + 300
        children: list[psutil.Process] = []
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            _, running = _finished(db)
            children = _stack_children(proc.pid)
            if running and any("dynamo.mocker" in " ".join(c.cmdline()) for c in children):
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"waited 300 s for a running trial with its stack up: "
                        f"{_finished(db)[1]} running, {len(children)} stack processes")
        pids = [proc.pid, *(p.pid for p in psutil.Process(proc.pid).children(recursive=True))]
        time.sleep(2.0)  # inside the evaluation, not at its first step
        os.kill(proc.pid, sig)  # the tuner only, as a terminal's Ctrl-C or `kill` would
        try:
            _, err = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            pytest.fail(f"waited 180 s for the tuner to exit after {sig.name}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted; rerun the same command to resume (0 trials kept)" in err, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    left = wait_gone(pids, timeout_s=60)
    assert not left, f"processes left after {sig.name}: " + ", ".join(
        f"{p} {' '.join(psutil.Process(p).cmdline())}" for p in left)
    storage = f"sqlite:///{db}"
    trials = optuna.load_study(study_name="stopped.loose", storage=storage).trials
    (stopped,) = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    why = "Ctrl-C" if sig == signal.SIGINT else "SIGTERM"
    assert stopped.user_attrs["reason"] == f"interrupted: {why} (re-queued)"
    (queued,) = [t for t in trials if t.state == optuna.trial.TrialState.WAITING]
    assert queued.user_attrs["retry_of"] == stopped.number
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = optuna.load_study(study_name="stopped.loose", storage=storage).trials
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE
            and "duplicate_of" not in t.user_attrs]  # a re-proposal is no evaluation
    assert len(done) == 2, [(t.number, t.state.name, t.user_attrs.get("reason"))
                            for t in trials]
    # the interrupted attempt, its retry, the second trial (and any re-proposals)
    assert len([t for t in trials if "duplicate_of" not in t.user_attrs]) == 3
    (retry,) = [t for t in trials if t.user_attrs.get("retry_of") == stopped.number]
    assert retry.state == optuna.trial.TrialState.COMPLETE and retry.params == stopped.params


def test_two_tuners_share_one_study_on_postgresql(tmp_path: Path) -> None:
    # enough trials that both tuners are still running when the second one has started
    sweep = write_sweep(tmp_path / "s.yaml", budget={"gpus": 4, "trials": 40})
    with postgres_server() as url:
        procs = [subprocess.Popen([*CLI, "tune", str(sweep), "--out", str(tmp_path / name),
                                   "--storage", url], start_new_session=True,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for name in ("a", "b")]
        for p in procs:
            _, err = p.communicate(timeout=600)
            assert p.returncode == 0, err[-3000:]
        s = optuna.load_study(study_name="shared.batch", storage=url)
        trials = s.trials
        report = subprocess.run([*CLI, "report", str(tmp_path / "a")], capture_output=True,
                                text=True, timeout=300)
        assert report.returncode == 0, report.stderr
    states = {t.state for t in trials}
    assert states <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL}
    assert [t.number for t in trials] == list(range(len(trials)))
    # each process checks the shared budget (distinct evaluations) after its own trial: at
    # most one extra
    assert 40 <= len([t for t in trials if "duplicate_of" not in t.user_attrs]) <= 41
    tuners = {t.user_attrs["tuner"] for t in trials}
    assert len(tuners) == 2, "both tuners must have evaluated trials"
    assert all("evaluation" in t.user_attrs for t in trials)
    # the performance model's start points (search.start_points by the estimate, and the
    # closed form's favourite of each mode if not among them) were enqueued once and each
    # evaluated once
    starts = [t for t in trials if t.user_attrs.get("start_point")]
    assert 3 <= len(starts) <= 3 + 2
    assert len({tuple(sorted(t.params.items())) for t in starts}) == len(starts)
    # a configuration already finished when another trial proposed it is reused, not re-run
    for later in trials:
        earlier = [t for t in trials if t.params == later.params and t.number < later.number
                   and t.datetime_complete is not None
                   and t.datetime_complete <= later.datetime_start]
        if earlier and "duplicate_of" not in later.user_attrs:
            pytest.fail(f"trial {later.number} re-evaluated trial {earlier[0].number}")
    assert (tmp_path / "a" / "best" / "batch" / "deployment.yaml").is_file()


def test_a_database_password_stays_out_of_the_study_folder(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path / "s.yaml", name="secret", budget={"gpus": 4, "trials": 4})
    out = tmp_path / "secret"
    with postgres_server() as url:
        with_password = url.replace("tester@", "tester:s3cret@")  # trust auth ignores it
        first = subprocess.run([*CLI, "tune", str(sweep), "--out", str(out), "--storage",
                                with_password], capture_output=True, text=True, timeout=600)
        assert first.returncode == 0, first.stderr[-3000:]
        doc = yaml.safe_load((out / "study.yaml").read_text())
        assert doc["storage"] == url
        # resume and report from the folder alone: the password comes from the environment
        env = {**os.environ, "DYNAMO_BENCH_STORAGE_PASSWORD": "s3cret"}
        resumed = subprocess.run([*CLI, "tune", str(sweep), "--out", str(out), "--trials", "5"],
                                 capture_output=True, text=True, timeout=600, env=env)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        report = subprocess.run([*CLI, "report", str(out)], capture_output=True, text=True,
                                timeout=300)
        assert report.returncode == 0, report.stderr[-3000:]
        rows = api.load_study(out).trials()  # the budget counts distinct evaluations
        assert int(rows["duplicate_of"].isna().sum()) == 5, rows[["trial", "duplicate_of"]]
    for p in out.rglob("*"):
        if p.is_file() and p.suffix in (".yaml", ".json", ".csv", ".md", ".html", ".sh"):
            assert "s3cret" not in p.read_text(errors="replace"), p
    for proc in (first, resumed, report):
        assert "s3cret" not in proc.stdout + proc.stderr

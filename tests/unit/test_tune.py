"""Tuning in replay (no processes): studies, constraints, resume, budgets, reports."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
import yaml

from dynamo_bench import api
from dynamo_bench.cli import main
from dynamo_bench.errors import SpecError
from dynamo_bench.specs import load_deployment
from dynamo_bench.tune.sweep_file import parse_sweep
from dynamo_bench.tune.tuner import TuneEvent, TuneOptions, Tuner, since_improvement

SWEEP: dict[str, Any] = {
    "name": "unit", "deployment": {"model": "Qwen3-8B", "gpu": "h100_sxm"},
    "budget": {"gpus": 2, "trials": 12},
    "space": {"mode": ["agg", "disagg"], "tp": [1, 2], "max_num_seqs": [16, 64],
              "router": {"mode": ["kv", "round-robin"]}},
    "workload": {"isl": {"mean": 512}, "osl": {"mean": 64}, "concurrency": 1,
                 "request_count": 32},
    "sla": {"interactive": "ttft_ms.p90<=200,itl_ms.p90<=6",
            "batch": "ttft_ms.p90<=2000,itl_ms.p90<=40"},
    "load": {"limit": 64},
    "fidelity": {"verify": "none"},
    "peer": "none",  # tests/unit/test_peer.py covers the side by side
}


def sweep_with(**changes: Any):
    data = copy.deepcopy(SWEEP)
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = data
        for p in parents:
            node = node[p]
        node[last] = value
    return parse_sweep(data)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> api.TuningStudy:
    return api.tune(sweep_with(), tmp_path_factory.mktemp("study") / "unit")


def test_a_study_folder_holds_every_file(study: api.TuningStudy) -> None:
    f = study.folder
    for name in ("study.yaml", "study.db", "trials.parquet", "trials.csv", "pareto.csv",
                 "pareto.png", "report.json"):
        assert (f / name).is_file(), name
    assert (f / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    trials = study.trials()
    explore = trials[trials["kind"] == "explore"]
    distinct = explore[explore["duplicate_of"].isna()]  # the budget counts these
    assert distinct.groupby("tier").size().to_dict() == {"interactive": 12, "batch": 12}
    assert set(explore["fidelity"]) == {"replay"}
    assert set(explore["status"]) <= {"complete", "infeasible", "failed", "pruned"}
    for _, trials_of_tier in explore.groupby("tier"):
        assert sorted(trials_of_tier["trial"]) == list(range(len(trials_of_tier)))
        assert trials_of_tier.drop_duplicates([c for c in trials_of_tier
                                               if c.startswith("param_")]).shape[0] == 12
    for tier in ("interactive", "batch"):
        d = f / "best" / tier
        spec = load_deployment(d / "deployment.yaml")
        assert spec.gpus <= 2 and spec.name == f"unit-{tier}"
        assert subprocess.run(["bash", "-n", str(d / "launch.sh")]).returncode == 0
        manifest = yaml.safe_load((d / "k8s.yaml").read_text())
        assert manifest["kind"] == "DynamoGraphDeployment"
        assert list((d / "tables").glob("*.npz"))
        text = (d / "summary.md").read_text()
        assert "## Answer" in text and study.best(tier).best.row["config"] in text


def test_best_is_the_highest_feasible_value(study: api.TuningStudy) -> None:
    for tier in study.tiers:
        t = study.trials(tier)
        ok = t[(t["kind"] == "explore") & (t["status"] == "complete")]
        choice = study.best(tier)
        assert choice.best.predicted == ok["value"].max()
        # the answer's own load point meets the SLA
        sla = study.record().slas[tier]
        row = choice.best.row
        assert row["best_ttft_ms_p90"] <= sla.constraints[0].threshold
        assert row["best_itl_ms_p90"] <= sla.constraints[1].threshold


def test_constraints_are_recorded_for_feasible_and_infeasible_trials(
        study: api.TuningStudy) -> None:
    storage = f"sqlite:///{study.folder / 'study.db'}"
    s = optuna.load_study(study_name="unit.interactive", storage=storage)
    statuses = set()
    for t in s.trials:
        c = t.constraints if hasattr(t, "constraints") else None
        c = c or {k.split(":", 1)[1]: v for k, v in t.system_attrs.items()
                  if k.startswith("constraints:")}
        assert set(c) == {"ttft_ms_p90", "itl_ms_p90", "memory"}
        status = t.user_attrs["status"]
        statuses.add(status)
        if status == "complete":
            assert max(c.values()) <= 0
        elif status == "pruned":  # cut short: feasible so far only if a lower load met the SLA
            best = t.user_attrs["evaluation"]["best"]
            assert (max(c.values()) <= 0) == (best is not None)
            # Optuna keeps the last report as a pruned trial's value: the lower bound found
            assert t.values == [best["output_tok_s_per_gpu"] if best else 0.0]
        else:
            assert max(c.values()) > 0 and t.values == [0.0]
    assert "complete" in statuses and statuses & {"infeasible", "pruned"}  # both kinds


def test_report_regenerates_from_the_storage_alone(study: api.TuningStudy) -> None:
    f = study.folder
    before = pd.read_csv(f / "trials.csv")
    best_before = (f / "best" / "batch" / "deployment.yaml").read_text()
    for name in ("trials.parquet", "trials.csv", "pareto.csv", "pareto.png", "report.json"):
        (f / name).unlink()
    import shutil
    shutil.rmtree(f / "best")
    with pytest.raises(SystemExit) as code:
        main(["report", str(f)])
    assert code.value.code == 0
    pd.testing.assert_frame_equal(pd.read_csv(f / "trials.csv"), before)
    assert (f / "best" / "batch" / "deployment.yaml").read_text() == best_before
    assert pd.read_parquet(f / "trials.parquet").shape[0] == before.shape[0]


def test_memory_misfits_are_infeasible_before_anything_runs(tmp_path: Path) -> None:
    sweep = parse_sweep({**copy.deepcopy(SWEEP), "name": "fit",
                         "deployment": {"model": "Llama-3.1-70B", "gpu": "h100_sxm"},
                         "budget": {"gpus": 4, "trials": 8},
                         "space": {"mode": ["agg"], "tp": [1, 4]},
                         "search": {"sampler": "random", "seed": 1},
                         "sla": {"batch": "ttft_ms.p90<=5000,itl_ms.p90<=100"}})
    study = api.tune(sweep, tmp_path / "fit")
    t = study.trials()
    misfit = t[t["reason"].fillna("").str.startswith("does not fit")]
    assert len(misfit) > 0
    assert set(misfit["config"].str.extract(r"tp(\d)")[0]) == {"1"}
    assert (misfit["constraint_memory"] > 0).all()
    assert misfit["best_load"].isna().all()  # no probe ran
    assert "weights" in misfit["reason"].iloc[0] or "GB" in misfit["reason"].iloc[0]


def test_no_feasible_point_is_an_answer_not_a_crash(tmp_path: Path, capsys) -> None:
    path = tmp_path / "impossible.yaml"
    data = copy.deepcopy(SWEEP)
    data["sla"] = {"impossible": "ttft_ms.p90<=0.01"}
    data["budget"]["trials"] = 5
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SystemExit) as code:
        main(["tune", str(path), "--out", str(tmp_path / "out")])
    assert code.value.code == 0
    assert "no configuration meets the SLA" in capsys.readouterr().out
    summary = (tmp_path / "out" / "best" / "impossible" / "summary.md").read_text()
    assert "No configuration met this SLA" in summary and "Closest: trial" in summary
    assert not (tmp_path / "out" / "best" / "impossible" / "deployment.yaml").exists()


def test_a_second_run_resumes_the_study(tmp_path: Path) -> None:
    sweep = sweep_with(sla={"batch": "ttft_ms.p90<=2000,itl_ms.p90<=40"})
    api.tune(sweep, tmp_path / "s", trials=4, report=False)
    study = api.tune(sweep, tmp_path / "s", trials=9)
    t = study.trials()
    assert sorted(t["trial"]) == list(range(len(t)))
    assert t["duplicate_of"].isna().sum() == 9  # distinct evaluations: the budget
    assert t["start_point"].sum() == 3  # enqueued once, on the first run only
    other = sweep_with(sla={"batch": "ttft_ms.p90<=2000,itl_ms.p90<=40"},
                       space__tp=[1])
    with pytest.raises(SpecError) as err:
        api.tune(other, tmp_path / "s")
    assert "different settings (space.tp differs)" in str(err.value)


def test_patience_stops_a_tier_early(tmp_path: Path) -> None:
    sweep = sweep_with(budget__trials=40, budget__patience=4,
                       sla={"batch": "ttft_ms.p90<=2000,itl_ms.p90<=40"})
    study = api.tune(sweep, tmp_path / "p", report=False)
    t = study.trials()
    assert len(t) < 40
    storage = f"sqlite:///{tmp_path / 'p' / 'study.db'}"
    s = optuna.load_study(study_name="unit.batch", storage=storage)
    values = [t.values[0] if t.user_attrs["status"] == "complete" else float("-inf")
              for t in sorted(s.trials, key=lambda t: t.number)
              if "duplicate_of" not in t.user_attrs]  # patience counts distinct evaluations
    first_best = values.index(max(values))
    assert len(values) - 1 - first_best == 4  # stopped exactly 4 trials after the best
    assert since_improvement(s.trials) == 4


def test_pareto_objective_and_journal_storage(tmp_path: Path) -> None:
    sweep = sweep_with(objective="pareto", storage="journal", budget__trials=6,
                       sla={"batch": "ttft_ms.p90<=2000,itl_ms.p90<=40"})
    study = api.tune(sweep, tmp_path / "j")
    assert (tmp_path / "j" / "study.journal").is_file()
    assert not (tmp_path / "j" / "study.db").exists()
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(tmp_path / "j" / "study.journal")))
    s = optuna.load_study(study_name="unit.batch", storage=storage)
    assert len(s.directions) == 2
    assert all(len(t.values) == 2 for t in s.trials if t.values)
    assert not study.pareto("batch").empty


def test_a_crashed_trial_is_recorded_and_the_study_goes_on(tmp_path: Path) -> None:
    from dynamo_bench.tune.evaluate import Evaluation, ReplayEvaluator

    sweep = sweep_with(budget__trials=5, sla={"batch": "ttft_ms.p90<=2000,itl_ms.p90<=40"})

    class Flaky(ReplayEvaluator):
        calls = 0

        def evaluate(self, spec, sla, out_dir, incumbent=None):  # type: ignore[no-untyped-def]
            Flaky.calls += 1
            if Flaky.calls == 2:
                return Evaluation("failed", "replay", reason="worker died: agg-0 exited -9")
            return super().evaluate(spec, sla, out_dir, incumbent)

    Tuner(sweep, tmp_path / "c", options=TuneOptions(
        explore_evaluator=Flaky(sweep.workload, sweep.load))).run()
    t = api.load_study(tmp_path / "c").trials()
    failed = t[t["state"] == "FAIL"]
    assert len(failed) == 1 and failed["reason"].iloc[0] == "worker died: agg-0 exited -9"
    assert (t["state"].isin(["COMPLETE", "PRUNED"]) & t["duplicate_of"].isna()).sum() == 4


def test_a_repeated_configuration_is_reused_not_re_evaluated(tmp_path: Path) -> None:
    """A re-proposal is answered from its twin and does not count: the next trial is a local
    move, so a budget larger than the space evaluates every configuration once, then stops."""
    from dynamo_bench.tune.evaluate import ReplayEvaluator

    sweep = sweep_with(budget__trials=8, space={"mode": ["agg"], "tp": [1, 2],
                                                "max_num_seqs": [16, 64]},
                       sla={"batch": "ttft_ms.p90<=2000,itl_ms.p90<=40"},
                       search={"start_points": 0})

    class Counting(ReplayEvaluator):
        seen: list[str] = []

        def evaluate(self, spec, sla, out_dir, incumbent=None):  # type: ignore[no-untyped-def]
            Counting.seen.append(spec.model_dump_json())
            return super().evaluate(spec, sla, out_dir, incumbent)

    events: list[TuneEvent] = []
    Tuner(sweep, tmp_path / "d", options=TuneOptions(
        explore_evaluator=Counting(sweep.workload, sweep.load), on_trial=events.append)).run()
    records = {r.number: r for r in api.load_study(tmp_path / "d").record().records}
    distinct = len({r.deployment_key for r in records.values()})
    assert distinct == 6  # the whole space, each configuration evaluated once
    assert len(Counting.seen) == len(set(Counting.seen)) == 6
    repeats = [r for r in records.values() if r.duplicate_of is not None]
    assert len(repeats) == len(records) - 6
    ends = [e.finished for e in events if e.stage == "explore" and e.finished]
    assert ends == ["every configuration of the space evaluated"]
    for r in repeats:
        twin = records[r.duplicate_of]
        assert twin.deployment == r.deployment and twin.value == r.value


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


class _Counting:
    """An explore evaluator that counts its calls and delegates to replay."""

    def __init__(self, sweep, interrupt_at: int | None = None, signal_at: int | None = None):
        from dynamo_bench.tune.evaluate import ReplayEvaluator

        self.inner = ReplayEvaluator(sweep.workload, sweep.load)
        self.fidelity = self.inner.fidelity
        self.calls, self.interrupt_at, self.signal_at = 0, interrupt_at, signal_at

    def evaluate(self, spec, sla, out_dir, incumbent=None):  # type: ignore[no-untyped-def]
        import os
        import signal

        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        if self.calls == self.signal_at:
            os.kill(os.getpid(), signal.SIGTERM)
            import time
            time.sleep(5)  # the handler raises here
            raise AssertionError("SIGTERM was not turned into an exception")
        return self.inner.evaluate(spec, sla, out_dir, incumbent)

    def estimates(self, specs, sla):  # type: ignore[no-untyped-def]
        return self.inner.estimates(specs, sla)


ONE_TIER = {"batch": "ttft_ms.p90<=2000,itl_ms.p90<=40"}


def test_another_sweep_is_refused_before_anything_runs_or_changes(tmp_path: Path,
                                                                 capsys) -> None:
    folder = tmp_path / "s"
    api.tune(sweep_with(budget__trials=3, sla=ONE_TIER), folder)
    before = _snapshot(folder)
    other = sweep_with(name="other", budget__trials=3)
    ev = _Counting(other)
    with pytest.raises(SpecError) as err:
        Tuner(other, folder, options=TuneOptions(explore_evaluator=ev)).run()
    msg = str(err.value)
    assert "holds the study of sweep 'unit'" in msg and "another --out" in msg, msg
    assert "\n" not in msg and ev.calls == 0
    assert _snapshot(folder) == before
    # the CLI: one line, exit 2
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump({**copy.deepcopy(SWEEP), "name": "other"}))
    with pytest.raises(SystemExit) as code:
        main(["tune", str(path), "--out", str(folder)])
    assert code.value.code == 2
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert len(err_lines) == 1 and err_lines[0].startswith("dynamo-bench: error: "), err_lines
    assert _snapshot(folder) == before
    # a folder whose study.yaml is gone still belongs to its study (its database says whose)
    (folder / "study.yaml").unlink()
    before = _snapshot(folder)
    with pytest.raises(SpecError, match="holds the study of sweep 'unit'"):
        Tuner(other, folder, options=TuneOptions(explore_evaluator=ev)).run()
    assert ev.calls == 0 and _snapshot(folder) == before


def test_a_changed_sweep_is_refused_before_any_trial_of_any_tier(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    api.tune(sweep_with(budget__trials=3, sla=ONE_TIER), folder, report=False)
    before = _snapshot(folder)
    # a tier added in front: the new tier would be created and explored before the old one
    changed = sweep_with(budget__trials=3, sla={"interactive": "ttft_ms.p90<=200",
                                                **ONE_TIER})
    ev = _Counting(changed)
    with pytest.raises(SpecError) as err:
        Tuner(changed, folder, options=TuneOptions(explore_evaluator=ev)).run()
    assert "different settings (sla.interactive differs)" in str(err.value), str(err.value)
    assert "another --out" in str(err.value)
    assert ev.calls == 0 and _snapshot(folder) == before
    names = {s.study_name for s in optuna.get_all_study_summaries(
        f"sqlite:///{folder / 'study.db'}", include_best_trial=False)}
    assert names == {"unit.batch"}


def test_a_password_never_reaches_study_yaml_or_a_message(tmp_path: Path, capsys) -> None:
    from dynamo_bench.tune.storage import recorded_url, redact

    url = "postgresql://bench:s3cret@127.0.0.1:1/tune?sslmode=disable&password=s3cret"
    assert recorded_url(url, tmp_path) == "postgresql://bench@127.0.0.1:1/tune?sslmode=disable"
    assert "s3cret" not in redact(url)
    folder = tmp_path / "pg"
    with pytest.raises(SpecError) as err:
        api.tune(sweep_with(budget__trials=3, sla=ONE_TIER), folder, storage=url)
    assert "s3cret" not in str(err.value) and "cannot open postgresql://bench:***@" in \
        str(err.value), str(err.value)
    # nothing is left that blocks the folder: the next run with the default storage works
    assert not (folder / "study.yaml").exists()
    study = api.tune(sweep_with(budget__trials=3, sla=ONE_TIER), folder, report=False)
    assert len(study.trials()) == 3
    # asking for the database now is refused (the folder's study is in SQLite), redacted
    with pytest.raises(SystemExit) as code:
        path = tmp_path / "s.yaml"
        path.write_text(yaml.safe_dump({**copy.deepcopy(SWEEP), "sla": ONE_TIER}))
        main(["tune", str(path), "--out", str(folder), "--storage", url])
    assert code.value.code == 2
    assert "s3cret" not in capsys.readouterr().err
    assert "s3cret" not in (folder / "study.yaml").read_text()


def test_a_moved_study_folder_reports_and_resumes(tmp_path: Path) -> None:
    import shutil

    sweep = sweep_with(budget__trials=3, sla=ONE_TIER)
    api.tune(sweep, tmp_path / "a", report=False)
    doc = yaml.safe_load((tmp_path / "a" / "study.yaml").read_text())
    assert doc["storage"] == "sqlite:///study.db"
    shutil.move(tmp_path / "a", tmp_path / "b")
    with pytest.raises(SystemExit) as code:
        main(["report", str(tmp_path / "b")])
    assert code.value.code == 0
    assert (tmp_path / "b" / "best" / "batch" / "summary.md").is_file()
    assert len(api.load_study(tmp_path / "b").trials()) == 3
    study = api.tune(sweep, tmp_path / "b", trials=5, report=False)  # resumes where it is
    assert sorted(study.trials()["trial"]) == list(range(5))
    assert not (tmp_path / "a").exists()


def test_journal_storage_end_to_end(tmp_path: Path) -> None:
    import shutil

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**copy.deepcopy(SWEEP), "sla": ONE_TIER,
                                    "budget": {"gpus": 2, "trials": 3}}))
    folder = tmp_path / "j"
    with pytest.raises(SystemExit) as code:
        main(["tune", str(path), "--out", str(folder), "--storage", "journal"])
    assert code.value.code == 0
    assert (folder / "study.journal").is_file() and not (folder / "study.db").exists()
    assert yaml.safe_load((folder / "study.yaml").read_text())["storage"] == \
        "journal:study.journal"
    shutil.move(folder, tmp_path / "moved")
    with pytest.raises(SystemExit) as code:
        main(["report", str(tmp_path / "moved")])
    assert code.value.code == 0
    assert len(api.load_study(tmp_path / "moved").trials()) == 3
    assert len(api.load_study(tmp_path / "moved", storage="journal").trials()) == 3
    study = api.tune(sweep_with(budget__trials=4, sla=ONE_TIER), tmp_path / "moved",
                     storage="journal")
    assert len(study.trials()) == 4


def test_an_unwritable_journal_path_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(SpecError) as err:
        api.tune(sweep_with(budget__trials=2, sla=ONE_TIER), tmp_path / "j",
                 storage=f"journal:{tmp_path / 'file' / 'x.journal'}")
    assert str(err.value).startswith("storage: cannot open the journal") and \
        "\n" not in str(err.value)
    assert not (tmp_path / "j" / "study.yaml").exists()


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_an_interrupted_trial_is_re_queued_and_not_counted(tmp_path: Path, how: str) -> None:
    from dynamo_bench.tune.tuner import Interrupted

    sweep = sweep_with(budget__trials=5, sla=ONE_TIER)
    ev = _Counting(sweep, **({"interrupt_at": 3} if how == "ctrl-c" else {"signal_at": 3}))
    with pytest.raises(Interrupted) as err:
        Tuner(sweep, tmp_path / "i", options=TuneOptions(explore_evaluator=ev)).run()
    assert str(err.value) == "interrupted; rerun the same command to resume (2 trials kept)"
    s = optuna.load_study(study_name="unit.batch", storage=f"sqlite:///{tmp_path / 'i/study.db'}")
    (stopped,) = [t for t in s.trials if t.state == optuna.trial.TrialState.FAIL]
    assert stopped.user_attrs["reason"] == \
        f"interrupted: {'Ctrl-C' if how == 'ctrl-c' else 'SIGTERM'} (re-queued)"
    (copy_,) = [t for t in s.trials if t.state == optuna.trial.TrialState.WAITING]
    assert copy_.user_attrs["retry_of"] == stopped.number
    import signal
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored
    Tuner(sweep, tmp_path / "i", options=TuneOptions(explore_evaluator=_Counting(sweep))).run()
    s = optuna.load_study(study_name="unit.batch", storage=f"sqlite:///{tmp_path / 'i/study.db'}")
    assert sum(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
               for t in s.trials) == 5
    retry = [t for t in s.trials if t.user_attrs.get("retry_of") == stopped.number]
    assert len(retry) == 1 and retry[0].params == stopped.params

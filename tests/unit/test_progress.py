"""What `tune` tells the user while it runs and at the end (off a terminal: plain lines)."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
import yaml

from dynamo_bench.cli import main
from dynamo_bench.tune.tuner import TuneEvent, TuneOptions, Tuner
from tests.unit.test_tune import sweep_with


def test_events_pair_the_best_value_with_its_own_configuration(tmp_path: Path) -> None:
    events: list[TuneEvent] = []
    sweep = sweep_with(budget__trials=10, sla={"batch": "ttft_ms.p90<=2000,itl_ms.p90<=40"})
    Tuner(sweep, tmp_path / "s", options=TuneOptions(on_trial=events.append)).run()
    study = optuna.load_study(study_name="unit.batch",
                              storage=f"sqlite:///{tmp_path / 's' / 'study.db'}")
    by_config = {t.user_attrs["config"]: t.values[0] for t in study.trials
                 if t.values and t.user_attrs.get("status") == "complete"}
    finished = [e for e in events if e.stage == "explore" and not e.current]
    duplicates = sum(1 for t in study.trials if "duplicate_of" in t.user_attrs)
    # one event per finished trial; `done` counts distinct evaluations, so a re-proposal
    # answered from its twin repeats the count before it
    assert len(finished) == 10 + duplicates
    assert sorted(e.done for e in finished) == [e.done for e in finished]
    assert sorted({e.done for e in finished}) == list(range(1, 11))
    for e in finished:
        if e.best is not None:  # the value shown is the one its configuration scored
            assert by_config[e.best_config] == pytest.approx(e.best)
    assert finished[-1].finished == "trial budget (10 distinct evaluations)"


def test_plain_progress_and_the_end_of_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    sweep = sweep_with(budget__trials=40, budget__patience=4,
                       sla={"batch": "ttft_ms.p90<=2000,itl_ms.p90<=40"})
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep.model_dump(mode="json", exclude_none=True)))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["tune", str(path), "--out", "study"])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 0, err
    trial_lines = [line for line in err.splitlines() if re.search(r"batch explore \d+/40", line)]
    assert len(trial_lines) >= 5  # one line per finished trial, nothing drawn in place
    assert "stopped: patience: 4 trials without a better feasible value" in trial_lines[-1]
    assert "\r" not in err and "\x1b[" not in err
    assert f"report: {Path('study') / 'report.html'}" in out
    assert f"next: dynamo-bench serve {Path('study') / 'best' / 'batch'}/deployment.yaml" in out

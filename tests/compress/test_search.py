"""The search engine on a cheap deterministic objective: real optuna studies in temporary folders,
a real killed process for resuming, and the space checks against the real stage options."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from pydantic import ValidationError, model_validator

from harness.compress.options import DistillOptions, PruneOptions
from harness.compress.search import run_study
from harness.compress.search_options import SearchOptions, validate_space
from harness.compress.search_report import BEST_MARK, history_png, running_best, trials_table
from harness.suite_rules import key_path, message

SPACE = {
    "temperature": {"low": 1.0, "high": 8.0},
    "layers": {"choices": [[0, 2], [1, 3], [0, 1, 3]]},
    "epochs": {"low": 1, "high": 4, "step": 1},
}


def search(**overrides) -> SearchOptions:
    return SearchOptions.model_validate({"trials": 8, "seed": 7, "space": SPACE, **overrides})


def score(params: dict) -> float:
    """Best at temperature 4 with layers [1, 3]: a quadratic, so equal params score equal."""
    return 0.9 - 0.01 * (params["temperature"] - 4) ** 2 - 0.05 * (params["layers"] != [1, 3]) - 0.01 * params["epochs"]


class Quadratic:
    """The objective: reports a rising curve towards ``score`` at steps 0..3 and counts its calls."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, params: dict, report) -> float:
        self.calls.append(params)
        for step in range(4):
            report(step, score(params) * (step + 1) / 4)
        return score(params)


def finished(result) -> list[dict]:
    return [t for t in result.trials if t["state"] in ("COMPLETE", "PRUNED")]


def test_same_seed_proposes_the_same_params(tmp_path: Path) -> None:
    first, second, other = Quadratic(), Quadratic(), Quadratic()
    a = run_study(first, search(), tmp_path / "a", "stage", progress=False)
    b = run_study(second, search(), tmp_path / "b", "stage", progress=False)
    run_study(other, search(seed=8), tmp_path / "c", "stage", progress=False)
    assert first.calls == second.calls and len(first.calls) == 8
    assert [t["params"] for t in a.trials] == [t["params"] for t in b.trials]
    assert other.calls != first.calls  # the seed, not a fixed sequence, decides
    assert a.best_value == max(score(p) for p in first.calls)
    assert a.best_params in first.calls and score(a.best_params) == a.best_value
    assert all(isinstance(p["layers"], list) for p in first.calls)  # a list choice comes back a list
    assert all(isinstance(p["epochs"], int) and isinstance(p["temperature"], float) for p in first.calls)
    assert json.loads(json.dumps(a.to_json())) == a.to_json()
    assert a.resumed_trials == 0 and Path(a.storage).is_file()


def test_median_pruner_stops_a_clearly_bad_trial(tmp_path: Path) -> None:
    steps_reached: list[list[int]] = []

    def objective(params: dict, report) -> float:
        value = 0.9 if len(steps_reached) < 4 else 0.1  # the fifth trial is far below the others
        steps_reached.append([])
        for step in range(5):
            report(step, value)
            steps_reached[-1].append(step)
        return value

    pruner = {"n_startup_trials": 4, "n_warmup_steps": 2}
    result = run_study(objective, search(trials=5, pruner=pruner), tmp_path, "stage", progress=False)
    states = [t["state"] for t in result.trials]
    assert states == ["COMPLETE"] * 4 + ["PRUNED"]
    assert steps_reached[-1] == [0, 1]  # warm-up steps 0 and 1 pass; reporting step 2 prunes
    assert result.trials[-1]["intermediate_values"] == 3 and result.trials[-1]["value"] == 0.1

    steps_reached.clear()
    unpruned = run_study(objective, search(trials=5, pruner=None), tmp_path / "none", "stage", progress=False)
    assert [t["state"] for t in unpruned.trials] == ["COMPLETE"] * 5


KILLED_RUN = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    from harness.compress.search import run_study
    from harness.compress.search_options import SearchOptions
    options = SearchOptions.model_validate(json.loads(sys.argv[1]))
    log = Path(sys.argv[3])

    def objective(params, report):
        with log.open("a") as f:
            f.write(json.dumps(params) + "\\n")
        report(0, 0.5)
        if len(log.read_text().splitlines()) == 3:
            os._exit(9)  # killed mid-trial: no cleanup, no tell, the trial stays RUNNING
        return 0.9 - 0.01 * (params["temperature"] - 4) ** 2

    run_study(objective, options, Path(sys.argv[2]), "stage", progress=False)
    """
)


def test_a_killed_study_resumes_without_repeating_finished_trials(tmp_path: Path) -> None:
    options = search(trials=6, space={"temperature": SPACE["temperature"]})
    log = tmp_path / "calls.jsonl"
    args = [sys.executable, "-c", KILLED_RUN, options.model_dump_json(), str(tmp_path / "study"), str(log)]
    killed = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2])
    assert killed.returncode == 9, killed.stderr
    before = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(before) == 3  # two trials finished, the third was killed

    objective = Quadratic()
    resumed = run_study(
        lambda params, report: objective({**params, "layers": [1, 3], "epochs": 0}, report),
        options,
        tmp_path / "study",
        "stage",
        progress=False,
    )
    trials = resumed.trials
    assert resumed.resumed_trials == 2
    assert [t["params"] for t in trials[:2]] == before[:2]  # finished trials kept as they were
    assert [t["value"] for t in trials[:2]] == [0.9 - 0.01 * (p["temperature"] - 4) ** 2 for p in before[:2]]
    assert trials[2]["state"] == "FAIL" and trials[2]["params"] == before[2]
    assert trials[3]["retry_of"] == 2 and objective.calls[0]["temperature"] == before[2]["temperature"]
    assert len(objective.calls) == 4  # 6 - 2 finished before: nothing finished ran twice
    assert len(finished(resumed)) == 6 and [t["number"] for t in trials] == list(range(7))

    again = Quadratic()
    rerun = run_study(again, options, tmp_path / "study", "stage", progress=False)
    assert again.calls == [] and rerun.resumed_trials == 6 and rerun.best_value == resumed.best_value


def test_a_trial_interrupted_twice_is_not_retried_again(tmp_path: Path) -> None:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    options = search(trials=3, space={"temperature": SPACE["temperature"]})
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "stage.journal")))
    study = optuna.create_study(storage=storage, study_name="stage", direction="maximize")
    # what a killed retry leaves in the storage: a RUNNING trial that was itself a retry
    study.enqueue_trial({"temperature": 2.5}, user_attrs={"retry_of": 0})
    study.ask().suggest_float("temperature", 1.0, 8.0)

    objective = Quadratic()
    result = run_study(lambda p, r: objective({**p, "layers": [1, 3], "epochs": 0}, r), options, tmp_path, "stage")
    assert result.trials[0]["state"] == "FAIL"
    assert 2.5 not in [call["temperature"] for call in objective.calls]
    assert len(objective.calls) == 3


def test_the_budget_stops_the_study_and_holds_on_resume(tmp_path: Path) -> None:
    def slow(params: dict, report) -> float:
        time.sleep(0.1)
        return score({**params, "layers": [1, 3], "epochs": 0})

    options = search(trials=50, timeout_minutes=0.45 / 60, space={"temperature": SPACE["temperature"]})
    result = run_study(slow, options, tmp_path, "stage", progress=False)
    durations = [t["duration_s"] for t in finished(result)]
    assert 1 <= len(durations) <= 5  # trials of 0.1 s at least: the fifth reaches the budget, if not earlier
    assert sum(durations) >= 0.45 > sum(durations[:-1])  # stopped at the first trial past the budget

    calls = []
    again = run_study(lambda p, r: calls.append(p) or 0.0, options, tmp_path, "stage", progress=False)
    assert calls == [] and len(finished(again)) == len(durations)


def test_an_objective_error_fails_its_trial_and_propagates(tmp_path: Path) -> None:
    def broken(params: dict, report) -> float:
        raise RuntimeError("out of disk")

    with pytest.raises(RuntimeError, match="out of disk"):
        run_study(broken, search(), tmp_path, "stage", progress=False)
    objective = Quadratic()
    result = run_study(objective, search(trials=2), tmp_path, "stage", progress=False)
    assert result.trials[0]["state"] == "FAIL" and len(objective.calls) == 2  # failed: not retried, not counted


class SearchedDistill(DistillOptions):
    """How a stage takes a search block: its space is checked against the stage's own options."""

    search: SearchOptions | None = None

    @model_validator(mode="after")
    def _space(self) -> SearchedDistill:
        if self.search is not None:
            validate_space(self.search.space, type(self), self)
        return self


def problems(model: type, raw: dict) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(raw)
    return {key_path(e["loc"], raw): message(e) for e in caught.value.errors()}


def test_validate_space_names_the_key_path_and_suggests_the_option() -> None:
    space = {
        "temprature": {"low": 1.0, "high": 4.0},
        "alpha": {"low": 0.1, "high": 1.5},
        "layers": {"choices": [[0, 2], [3, 1]]},
        "seed": {"choices": [1, 2]},
        "batch_size": {"low": 8.0, "high": 64.0},
        "hidden_loss_weight": {"low": 0, "high": 3},
    }
    found = problems(SearchedDistill, {"search": {"trials": 2, "space": space}})
    assert found == {
        "search.space.temprature": "unknown option 'temprature' (did you mean 'temperature'?)",
        "search.space.alpha.high": "must be at most 1 (got 1.5)",
        "search.space.layers.choices[1]": "layers must be in increasing order (as in the teacher), e.g. [1, 3]",
        "search.space.seed": "'seed' cannot be searched",
        "search.space.batch_size.low": "Input should be a valid integer (got 8.0)",
        "search.space.batch_size.high": "Input should be a valid integer (got 64.0)",
        "search.space.hidden_loss_weight": (
            "'hidden_loss_weight' takes fractional values but the range ends are whole numbers, so only whole "
            "numbers would be tried: write them as 0.0 and 3.0, or add `step: 1` to mean it"
        ),
    }
    good = {"temperature": {"low": 1.0, "high": 4.0}, "batch_size": {"low": 8, "high": 64, "step": 8}}
    assert SearchedDistill.model_validate({"search": {"trials": 2, "space": good}}).search.space["batch_size"].integer


def test_validate_space_checks_values_together() -> None:
    space = SearchOptions.model_validate(
        {"trials": 2, "space": {"head_fraction": {"choices": [0.0, 0.5]}, "ffn_fraction": {"low": 0.0, "high": 0.5}}}
    ).space
    with pytest.raises(ValidationError) as caught:
        validate_space(space, PruneOptions, PruneOptions())
    (error,) = caught.value.errors()
    assert key_path(error["loc"], {}) == "search.space"
    assert "head_fraction=0.0, ffn_fraction=0.0 are rejected together: head_fraction and ffn_fraction" in error["msg"]
    validate_space({"head_fraction": space["head_fraction"]}, PruneOptions, PruneOptions())  # alone it is fine


def test_a_space_is_a_range_or_choices() -> None:
    space = {
        "a": {"low": 0.0, "high": 1.0, "log": True},
        "b": {"low": 2.0, "high": 1.0},
        "c": {"choices": [[0, 2], [0, 2], 1, 1.0, True]},
        "d": {"choices": [1], "low": 0},
        "e": {"low": 0.0, "high": 1.0, "step": 0.3},
        "f": {"low": True, "high": 2},
    }
    found = problems(SearchOptions, {"trials": 1, "space": space})
    assert found["space.a.low"] == "must be greater than 0 for a log range"
    assert found["space.b.high"] == "must be greater than low (2.0)"
    assert found == {**found, "space.c.choices[1]": "[0, 2] appears twice (first at [0])"}
    assert "space.c.choices[3]" not in found and "space.c.choices[4]" not in found  # 1, 1.0, true differ
    assert found["space.d.low"] == "give either choices or a range (low, high), not both"
    assert found["space.e.step"].startswith("high - low (1.0) must be a whole number of steps")
    assert "space.f.low" in found  # a boolean is no number
    assert problems(SearchOptions, {"space": {"a": {"choices": [1]}}}) == {"trials": "required key is missing"}


def row(number: int, state: str, t: object, value: float | None, duration_s: float | None, checkpoints: int) -> dict:
    return {
        "number": number,
        "state": state,
        "params": {"t": t},
        "value": value,
        "duration_s": duration_s,
        "intermediate_values": checkpoints,
    }


ROWS = [
    row(3, "COMPLETE", 2.0, 0.80, 4.0, 4),
    row(0, "COMPLETE", 1.0, 0.70, 5.0, 4),
    row(1, "PRUNED", 9.0, 0.95, 1.0, 1),
    row(2, "FAIL", "a|b", None, None, 0),
    row(4, "COMPLETE", 3.0, 0.80, 4.5, 4),
]


def test_trials_table_marks_the_best_complete_trial() -> None:
    lines = trials_table(ROWS).splitlines()
    cells = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines[2:]]
    assert [c[0] for c in cells] == ["0", "1", "2", "3", "4"]
    # a pruned trial's checkpoint value is no result; of equal values the earlier trial is optuna's best
    assert [c[1] for c in cells] == ["", "", "", BEST_MARK, ""]
    assert cells[3] == ["3", BEST_MARK, "COMPLETE", "80.00", "4", "4.0", "2.0"]
    assert cells[2][-1] == "a\\|b" and len(lines[0].split(" | ")) == 7  # a | in a value does not split its cell


def test_history_png_draws_the_running_best(tmp_path: Path) -> None:
    assert running_best(ROWS) == [(0, 0.70), (3, 0.80), (4, 0.80)]
    path = history_png(ROWS, tmp_path / "history.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert os.path.getsize(history_png([], tmp_path / "empty.png")) > 1_000

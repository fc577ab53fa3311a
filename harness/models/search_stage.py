"""A `distill` or `prune` stage with a `search:` block: an Optuna study over the stage's own options.

Every trial is the ordinary stage with some options replaced, scored on the train split's held-out
validation slice (checkpoints feed the median pruner); the eval split is never seen. The study and
the best trial's model live in the artifact cache beside the stage, so a killed search resumes
without repeating finished trials. The stage's model is the best trial's.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("harness")
BEST_DIR = "best-model"
BEST_RECORD = "best.json"
SEARCH_FILE = "search.json"
CHECKPOINTS = 4  # validation scores per trial, evenly spaced, the last after training

# (options for one trial, output folder, checkpoint or None) -> the stage's report
TrainStage = Callable[[Any, Path, Any], dict[str, Any]]


def searched_stage(
    options: Any,
    train: TrainStage,
    validation_accuracy: Callable[[Any], float],
    study_dir: Path,
    out: Path,
) -> dict[str, Any]:
    """Run (or resume) the study in ``study_dir``, then publish the best trial's model to ``out``.

    ``validation_accuracy(model)`` scores a model in training at a checkpoint.
    """
    from harness.compress.search import run_study
    from harness.compress.training import Checkpoint

    search = options.search
    study_dir.mkdir(parents=True, exist_ok=True)

    def objective(params: dict[str, Any], report: Callable[[int, float], None]) -> float:
        trial_options = trial_options_for(options, params)
        reached = iter(range(CHECKPOINTS))
        # the median pruner compares trials at the same reported step: report the checkpoint's
        # index, since training steps differ between trials of other epochs or batch sizes
        checkpoint = Checkpoint(lambda model, _step: report(next(reached), validation_accuracy(model)), CHECKPOINTS)
        folder = Path(tempfile.mkdtemp(prefix="trial-", dir=study_dir))
        try:
            result = train(trial_options, folder, checkpoint)
            value = float(result["validation_accuracy"])
            _keep_if_best(folder, value, params, study_dir)
            return value
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    study = run_study(objective, search, study_dir, "stage")
    best = _best_record(study_dir)
    if best is None or best["value"] < study.best_value:
        # the best trial's model was lost (killed between the study's record and ours): train it again
        log.info("search: retraining the best trial's options %s", study.best_params)
        objective(study.best_params, lambda step, value: None)
    shutil.copytree(study_dir / BEST_DIR, out, dirs_exist_ok=True)
    summary = study.to_json()
    (out / SEARCH_FILE).write_text(json.dumps(summary, indent=1), encoding="utf-8")
    report = json.loads((out / "compress_report.json").read_text(encoding="utf-8"))
    return {**report, "search": summary}


def trial_options_for(options: Any, params: dict[str, Any]) -> Any:
    """The stage's options with a trial's values, validated again (a searched value obeys the same
    rules as a written one) and without the search block, so the trial is an ordinary stage."""
    return type(options).model_validate({**options.model_dump(exclude_unset=True), **params, "search": None})


def _keep_if_best(folder: Path, value: float, params: dict[str, Any], study_dir: Path) -> None:
    best = _best_record(study_dir)
    if best is not None and best["value"] >= value:
        return
    target = study_dir / BEST_DIR
    staging = study_dir / f"{BEST_DIR}.new"
    shutil.rmtree(staging, ignore_errors=True)
    folder.rename(staging)  # the trial's folder is dropped afterwards anyway: move, do not copy
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    record = study_dir / BEST_RECORD
    record.with_suffix(".tmp").write_text(json.dumps({"value": value, "params": params}), encoding="utf-8")
    record.with_suffix(".tmp").replace(record)


def _best_record(study_dir: Path) -> dict[str, Any] | None:
    path = study_dir / BEST_RECORD
    if not path.is_file() or not (study_dir / BEST_DIR).is_dir():
        return None
    return json.loads(path.read_text(encoding="utf-8"))

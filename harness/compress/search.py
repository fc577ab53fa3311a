"""The Optuna study behind a stage's ``search:`` block: seeded TPE, median pruning, resumable.

The study lives in a journal file in the artifact cache, so a killed search resumes where it
stopped: finished trials (complete or pruned) are never repeated, and the trial the kill
interrupted is tried once more. Optuna is imported here only, never when a suite is validated.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.compress.search_options import ParamSpace, SearchOptions, choice_key

log = logging.getLogger("harness")

# (params, report) -> validation accuracy; report(step, accuracy) raises optuna.TrialPruned to stop
Report = Callable[[int, float], None]
Objective = Callable[[dict[str, Any], Report], float]
RETRY_ATTR = "retry_of"  # user attribute of a trial re-run because a killed process left it unfinished
_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class StudyResult:
    """What a study found; ``to_json`` is stored beside the stage's model."""

    best_params: dict[str, Any]
    best_value: float
    trials: list[dict[str, Any]] = field(default_factory=list)
    resumed_trials: int = 0  # finished trials found in the storage when this run started
    storage: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def run_study(
    objective: Objective, options: SearchOptions, storage_dir: Path, study_name: str, progress: bool = True
) -> StudyResult:
    """Run (or resume) the study ``study_name`` in ``storage_dir`` until ``options.trials`` trials
    have finished or their summed duration reaches ``options.timeout_minutes``."""
    import optuna

    if not _STUDY_NAME.match(study_name):
        raise ValueError(f"study name {study_name!r} is not a plain file name")
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress bar says what its INFO lines would
    storage_dir.mkdir(parents=True, exist_ok=True)
    path = storage_dir / f"{study_name}.journal"
    with _exclusive(storage_dir / f"{study_name}.lock"):
        study = _open_study(options, path, study_name)
        _recover_interrupted(study)
        resumed = len(_finished(study))
        with _progress_bar(options, study_name, resumed, progress) as bar:
            while _should_continue(study, options):
                _run_trial(study, objective, options.space)
                bar.update(1)
                bar.set_postfix(best=_best_text(study))
        return _result(study, options.space, resumed, path)


def _open_study(options: SearchOptions, path: Path, study_name: str) -> Any:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    # TPE's default of 10 random trials would leave a short search all random
    startup = min(10, max(2, options.trials // 3))
    sampler = optuna.samplers.TPESampler(seed=options.seed, n_startup_trials=startup)
    pruner: Any = optuna.pruners.NopPruner()
    if options.pruner is not None:
        pruner = optuna.pruners.MedianPruner(
            n_startup_trials=options.pruner.n_startup_trials, n_warmup_steps=options.pruner.n_warmup_steps
        )
    return optuna.create_study(
        storage=JournalStorage(JournalFileBackend(str(path))),
        sampler=sampler,
        pruner=pruner,
        study_name=study_name,
        direction="maximize",
        load_if_exists=True,
    )


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold ``lock_path`` while the study runs: a second harness on the same cache waits, then finds
    the trials done. Because the lock dies with its process (even on SIGKILL), a trial still
    RUNNING in the storage while we hold it is certainly left over from a killed run."""
    try:
        import fcntl
    except ImportError:  # not POSIX: one harness per cache is then the user's to ensure
        yield
        return
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("search: another process is running the study in %s; waiting for it", lock_path.parent)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _recover_interrupted(study: Any) -> None:
    """Fail the trials a killed run left RUNNING, so they neither count as finished nor block.

    Each is enqueued once more with the same params: it was killed from outside (Ctrl-C, a lost
    machine), not judged, and the sampler chose those params for a reason. A retry that is killed
    too is not enqueued again, so params that crash the process (out of memory) cannot loop forever.
    """
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)
        if RETRY_ATTR in trial.user_attrs:
            log.warning("search: trial %d was interrupted twice; not trying %s again", trial.number, trial.params)
            continue
        log.info("search: trial %d was interrupted; trying its params again", trial.number)
        study.enqueue_trial(trial.params, user_attrs={RETRY_ATTR: trial.number})


def _finished(study: Any) -> list[Any]:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def _should_continue(study: Any, options: SearchOptions) -> bool:
    finished = _finished(study)
    if len(finished) >= options.trials:
        return False
    if options.timeout_minutes is None:
        return True
    spent = sum(t.duration.total_seconds() for t in finished if t.duration is not None)
    if spent >= options.timeout_minutes * 60:
        log.info("search: the budget of %g minutes is spent after %d trials", options.timeout_minutes, len(finished))
        return False
    return True


def _run_trial(study: Any, objective: Objective, space: dict[str, ParamSpace]) -> None:
    """One trial through ask and tell; the objective's own errors fail the trial and propagate."""
    import optuna
    from optuna.trial import TrialState

    trial = study.ask()
    # every param is drawn before training, so an interrupted trial's params are in the storage
    params = {name: _suggest(trial, name, param) for name, param in space.items()}

    def report(step: int, value: float) -> None:
        trial.report(float(value), step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step} with {value:.4f}")

    try:
        value = float(objective(params, report))
    except optuna.TrialPruned:
        study.tell(trial, state=TrialState.PRUNED)
        return
    except Exception:
        # an interrupt (Ctrl-C) is no verdict on the params: the trial stays RUNNING, to be retried
        # on resume like one whose process was killed
        study.tell(trial, state=TrialState.FAIL)
        raise
    if not math.isfinite(value):
        study.tell(trial, state=TrialState.FAIL)
        raise ValueError(f"the search objective returned {value} for {params}")
    study.tell(trial, value)


def _suggest(trial: Any, name: str, param: ParamSpace) -> Any:
    if param.choices is not None:
        # optuna's categorical values must be scalars: it stores each choice's JSON text
        by_key = {choice_key(value): value for value in param.choices}
        return by_key[trial.suggest_categorical(name, list(by_key))]
    if param.integer:
        return trial.suggest_int(name, param.low, param.high, step=param.step or 1, log=param.log)
    return trial.suggest_float(name, param.low, param.high, step=param.step, log=param.log)


def _decoded(params: dict[str, Any], space: dict[str, ParamSpace]) -> dict[str, Any]:
    """A stored trial's params as the objective saw them (a choice's JSON text back to its value)."""
    return {
        name: _choice(space[name], value) if name in space and space[name].choices is not None else value
        for name, value in params.items()
    }


def _choice(param: ParamSpace, stored: Any) -> Any:
    by_key = {choice_key(value): value for value in param.choices or []}
    return by_key.get(stored, stored)


@contextlib.contextmanager
def _progress_bar(options: SearchOptions, study_name: str, resumed: int, progress: bool) -> Iterator[Any]:
    from tqdm.auto import tqdm

    initial = min(resumed, options.trials)
    bar = tqdm(total=options.trials, initial=initial, desc=f"search {study_name}", unit="trial", disable=not progress)
    try:
        yield bar
    finally:
        bar.close()


def _best_text(study: Any) -> str:
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return f"{study.best_value:.4f}" if complete else "-"


def trial_rows(trials: list[Any], space: dict[str, ParamSpace]) -> list[dict[str, Any]]:
    """One JSON-able row per trial, by trial number: what the report and the history figure show."""
    return [
        {
            "number": t.number,
            "state": t.state.name,
            "params": _decoded(t.params, space),
            "value": t.value,
            "duration_s": t.duration.total_seconds() if t.duration is not None else None,
            "intermediate_values": len(t.intermediate_values),
            "retry_of": t.user_attrs.get(RETRY_ATTR),
        }
        for t in sorted(trials, key=lambda t: t.number)
    ]


def _result(study: Any, space: dict[str, ParamSpace], resumed: int, path: Path) -> StudyResult:
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise ValueError(f"no trial of the study in {path} ran to the end (all pruned or failed)")
    best = study.best_trial
    return StudyResult(
        best_params=_decoded(best.params, space),
        best_value=float(best.value),
        trials=trial_rows(study.get_trials(deepcopy=False), space),
        resumed_trials=resumed,
        storage=str(path),
    )

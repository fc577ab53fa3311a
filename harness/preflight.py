"""Cheap checks of what a suite points at, run before any expensive stage.

Model directories, packages, local data files, their rows and label ranges, the parents' depth and
position limits, the baseline's runtime and the output folders are all checked by reading a few
small files (or probing a folder), so a typo costs a second instead of a half-hour run. Each
problem is a ``SuiteError`` naming the suite file and the key path.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.data.splits import LOCAL_FORMATS, data_search_path, find_local_split, refusable_name_safe
from harness.data.tables import MissingColumnError, SplitScan, scan_split_file, warn_if_one_class
from harness.errors import HarnessError, SuiteError, SuiteErrors, quote
from harness.models.sources import BUILTINS, check_model_dir, package_files_dir, package_model_dir, read_model_config
from harness.suite import ModelConfig, Suite, TaskConfig

TRAINING_STAGES = ("finetune", "distill", "prune")  # the stages that read the train split


@dataclass(frozen=True)
class ModelFacts:
    """What a model's config says, where it can be read cheaply (None: unknown, e.g. a hub id)."""

    depth: int | None = None
    positions: int | None = None
    num_labels: int | None = None
    model_type: str | None = None


def preflight(
    suite: Suite,
    file: str,
    hub_reachable: bool = False,
    *,
    out_dir: Path | None = None,
    registries: tuple[Any, Any] | None = None,
    fleet: bool = False,
) -> None:
    """Raise every problem found with what the suite points at: a ``SuiteError``, or ``SuiteErrors``
    when there are several (each check stops at its own first problem; the checks are independent).

    ``out_dir`` is the run's output folder when ``--out`` overrides ``output.dir`` (which is then
    not checked); ``registries`` are the (exporters, backends) registries, discovered when omitted.
    ``fleet``: the cells run on a cluster's machines, which judge their own devices once probed.
    """
    problems: list[SuiteError] = []
    facts = _model_facts(suite, file, problems)
    checks = (
        lambda: _check_lineage(suite, file, facts),
        lambda: _check_architectures(suite, file, facts),
        lambda: _check_positions(suite, file, facts),
        lambda: _check_task(suite, file, hub_reachable, facts, registries),
        lambda: _check_baseline(suite, file, registries, fleet),
        lambda: _check_output(suite, file, out_dir),
    )
    for check in checks:
        try:
            check()
        except SuiteError as problem:
            problems.append(problem)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise SuiteErrors(problems)


def _model_facts(suite: Suite, file: str, problems: list[SuiteError]) -> dict[str, ModelFacts]:
    """What each model's config says; a source that cannot be read adds its problem and no facts."""
    facts: dict[str, ModelFacts] = {}
    for index, model in enumerate(suite.models):
        if model.source is not None:
            try:
                facts[model.name] = _source_facts(model, file, f"models[{index}].source")
            except SuiteError as problem:
                problems.append(problem)
                facts[model.name] = ModelFacts(num_labels=model.num_labels)
            continue
        parent = facts.get(model.parent or "", ModelFacts())
        depth = parent.depth
        if model.distill is not None:  # a lightweight student has no transformer layers to count
            depth = len(model.distill.layers) if model.distill.student is None else None
        facts[model.name] = ModelFacts(depth, parent.positions, model.num_labels, parent.model_type)
    return facts


def _source_facts(model: ModelConfig, file: str, key: str) -> ModelFacts:
    source = model.source or ""
    if source.startswith("builtin:"):
        name = source.removeprefix("builtin:")
        if name not in BUILTINS:
            raise SuiteError(file, key, f"unknown builtin model '{name}' (known: {', '.join(BUILTINS)})")
        from harness.models.tiny import TINY_CONFIGS

        architecture = name.removeprefix("tiny-")
        config = TINY_CONFIGS[architecture]
        return ModelFacts(
            _depth(config, architecture), config["max_position_embeddings"], model.num_labels, architecture
        )
    folder = _source_dir(source, file, key)
    if folder is None:
        return ModelFacts(num_labels=model.num_labels)  # a hub id: read when the run fetches it
    try:
        config = read_model_config(folder)
    except HarnessError as error:
        raise SuiteError(file, key, str(error)) from None
    # a fine-tuned model gets a fresh head of num_labels classes; otherwise the config's head counts
    labels = model.num_labels if model.finetune is not None else _config_num_labels(config) or model.num_labels
    return ModelFacts(_depth(config), config.get("max_position_embeddings"), labels, config.get("model_type"))


def _depth(config: dict[str, Any], model_type: str | None = None) -> int | None:
    from harness.compress.architectures import config_depth  # torch-free

    return config_depth(config, model_type)  # by the architecture's own key: DistilBERT says n_layers


def _source_dir(source: str, file: str, key: str) -> Path | None:
    """The checked model directory a source names, or None for a hub id."""
    try:
        if source.startswith("package:"):
            module = source.removeprefix("package:")
            if package_files_dir(module) is None:
                raise SuiteError(file, key, f"python package '{module}' is not installed (pip install it)")
            return package_model_dir(module)
        path = Path(source).expanduser()
        if not _exists(path):
            if source.startswith((".", "/", "~")) or source.count("/") != 1:
                raise SuiteError(file, key, f"no such model directory: {quote(str(path))}")
            return None
        return check_model_dir(path, source)
    except SuiteError:
        raise
    except HarnessError as error:
        raise SuiteError(file, key, str(error)) from None


def _config_num_labels(config: dict[str, Any]) -> int | None:
    if isinstance(config.get("id2label"), dict):
        return len(config["id2label"])
    return config.get("num_labels")


def _check_lineage(suite: Suite, file: str, facts: dict[str, ModelFacts]) -> None:
    """Distilled layers must exist in the parent (for a distilled parent: its own kept layers)."""
    for index, model in enumerate(suite.models):
        depth = facts.get(model.parent or "", ModelFacts()).depth
        if model.distill is None or model.distill.student is not None or depth is None:
            continue
        for position, layer in enumerate(model.distill.layers):
            if layer >= depth:
                raise SuiteError(
                    file,
                    f"models[{index}].distill.layers[{position}]",
                    f"layer {layer} is beyond the parent model '{model.parent}', which has {depth} "
                    f"layer{'s' if depth != 1 else ''} (0..{depth - 1})",
                )


def _check_architectures(suite: Suite, file: str, facts: dict[str, ModelFacts]) -> None:
    """Layer selection and pruning know each supported encoder's module names, and some cannot lose
    heads: said before anything trains."""
    from harness.compress.architectures import ARCHITECTURES

    for index, model in enumerate(suite.models):
        model_type = facts.get(model.parent or "", ModelFacts()).model_type
        transformer_stage = model.prune is not None or (model.distill is not None and model.distill.student is None)
        if model_type is None or not transformer_stage:
            continue
        if model_type not in ARCHITECTURES:
            raise SuiteError(
                file,
                f"models[{index}].{model.stage}",
                f"the parent model '{model.parent}' is a {model_type!r} model, which the compression stages do not "
                f"support (supported: {', '.join(sorted(ARCHITECTURES))})",
            )
        reason = ARCHITECTURES[model_type].no_head_pruning
        if model.prune is not None and model.prune.head_fraction > 0 and reason:
            raise SuiteError(file, f"models[{index}].prune.head_fraction", f"cannot prune {model_type} heads: {reason}")


def _check_positions(suite: Suite, file: str, facts: dict[str, ModelFacts]) -> None:
    """Fixed sequence lengths and truncation lengths must fit every model's position embeddings."""
    for index, model in enumerate(suite.models):
        positions = facts[model.name].positions
        if positions is None:
            continue
        lengths = [(f"shapes.seq_lens[{i}]", n) for i, n in enumerate(suite.shapes.seq_lens) if n != "dynamic"]
        lengths.append(("max_length", suite.max_length))
        if model.stage in TRAINING_STAGES:
            lengths.append((f"models[{index}].{model.stage}.max_length", getattr(model, model.stage).max_length))
        for key, length in lengths:
            if length > positions:
                raise SuiteError(
                    file,
                    key,
                    f"{length} tokens exceed the {positions} positions of model '{model.name}' "
                    "(max_position_embeddings in its config.json)",
                )


def _check_task(
    suite: Suite, file: str, hub_reachable: bool, facts: dict[str, ModelFacts], registries: tuple[Any, Any] | None
) -> None:
    task = suite.task  # task.dataset is a well-formed hub id: the schema checks it
    if task.source == "hub" or (task.source == "auto" and task.dataset and hub_reachable):
        return  # the hub copy is checked by datasets itself
    scan = _scan_split(task, file, task.split, "task.split")
    warn_if_one_class(str(scan.path), task.split, scan.labels[: task.max_samples])
    _check_label_range(file, "eval", scan, list(enumerate(suite.models)), facts)
    trained = [(index, m) for index, m in enumerate(suite.models) if m.stage in TRAINING_STAGES]
    calibrates = any(
        getattr(_exporters(registries).entries().get(e.name), "needs_calibration", False) for e in suite.exporters
    )
    if trained or calibrates:  # static quantization calibrates on the train split too
        scan = _scan_split(task, file, task.train_split, "task.train_split")
        warn_if_one_class(str(scan.path), task.train_split, scan.labels)
        _check_label_range(file, "train", scan, trained, facts)


def _exporters(registries: tuple[Any, Any] | None) -> Any:
    from harness.registry import exporters

    return registries[0] if registries else exporters()


def _scan_split(task: TaskConfig, file: str, split: str, key: str) -> SplitScan:
    path = find_local_split(task, split)
    if path is None:
        raise SuiteError(file, "task.local" if key == "task.split" else key, _missing_split(task, split))
    try:
        scan = scan_split_file(path, task.text_column, task.label_column, task.label_map)
    except MissingColumnError as error:
        column_key = "task.text_column" if error.column == task.text_column else "task.label_column"
        raise SuiteError(file, column_key, str(error)) from None
    except HarnessError as error:
        raise SuiteError(file, key, str(error)) from None
    if not scan.labels:
        raise SuiteError(file, key, f"{path}: the {split} split has a header but no rows")
    return scan


def _missing_split(task: TaskConfig, split: str) -> str:
    if task.local is None:
        return "the hub is unreachable (offline) and the suite names no local copy (task.local)"
    searched = ", ".join(str(p) for p in data_search_path())
    where = f"'{task.local}/{split}.{{{','.join(s[1:] for s in LOCAL_FORMATS)}}}'"
    return f"no {where} in {searched} (set HARNESS_DATA_PATH, or fix the path)"


def _check_label_range(
    file: str, which: str, scan: SplitScan, models: list[tuple[int, ModelConfig]], facts: dict[str, ModelFacts]
) -> None:
    present = set(scan.labels)
    for index, model in models:
        num_labels = facts[model.name].num_labels or model.num_labels
        bad = sorted(label for label in present if not 0 <= label < num_labels)
        if bad:
            raise SuiteError(
                file,
                f"models[{index}].num_labels",
                f"the {which} labels include {bad[0]} but model '{model.name}' has {num_labels} labels "
                f"(0..{num_labels - 1})",
            )


def _check_baseline(suite: Suite, file: str, registries: tuple[Any, Any] | None, fleet: bool = False) -> None:
    """The baseline cell must be runnable: every other cell is judged relative to it."""
    from harness.registry import BrokenAdapter, backends
    from harness.run.plan import local_reason

    exporter_registry, backend_registry = _exporters(registries), (registries[1] if registries else backends())
    entry = next((e for e in suite.exporters if e.display_name == suite.baseline.exporter), None)
    backend_entry = next((b for b in suite.backends if b.display_name == suite.baseline.backend), None)
    exporter = exporter_registry.entries().get(entry.name) if entry else None
    backend = backend_registry.entries().get(backend_entry.name) if backend_entry else None
    if entry is None or exporter is None or backend_entry is None or backend is None:
        return  # an unknown name is reported by the suite schema
    for kind, name, adapter in (("exporter", entry.name, exporter), ("backend", backend_entry.name, backend)):
        if isinstance(adapter, BrokenAdapter):
            reason = adapter.reason
        else:  # a fleet's backends run on its machines, which judge them there
            reason = None if fleet and kind == "backend" else adapter.unavailable_reason()
        if reason:
            raise SuiteError(file, f"baseline.{kind}", f"the baseline {kind} '{name}' is unavailable: {reason}")
    artifact_format = exporter.format_for(entry.options)
    if artifact_format not in backend.formats:
        raise SuiteError(
            file,
            "baseline.backend",
            f"backend '{backend.name}' cannot load the '{artifact_format}' format of exporter '{entry.name}' "
            f"(it loads {', '.join(sorted(backend.formats))})",
        )
    if fleet:
        return
    reasons = []
    for device in sorted(suite.devices, key=lambda d: d != "cpu"):  # cpu first: cuda checks import torch
        cell = {"model": suite.baseline_model, "exporter": entry.display_name, "backend": backend_entry.display_name}
        reason = ("excluded by the suite" if suite.excluded({**cell, "device": device}) else None) or local_reason(
            backend, backend_entry.options, artifact_format, device
        )
        if reason is None:
            return
        reasons.append(f"{device}: {reason}")
    raise SuiteError(
        file,
        "baseline",
        f"the baseline cell ({suite.baseline.exporter} on {backend_entry.display_name}) can run on none of the "
        "suite's devices "
        f"({'; '.join(reasons)})",
    )


def _check_output(suite: Suite, file: str, out_dir: Path | None) -> None:
    folders = [("output.cache_dir", suite.output.cache_dir)]
    if out_dir is None:
        folders.insert(0, ("output.dir", suite.output.dir))
    for key, folder in folders:
        reason = unwritable_reason(Path(folder).expanduser())
        if reason:
            raise SuiteError(file, key, f"{quote(folder)} {reason}")


def unwritable_reason(folder: Path) -> str | None:
    """Why ``folder`` cannot be created and written into, or None; leaves nothing behind.

    Missing folders are created only to probe them and removed again, innermost first.
    """
    created: list[Path] = []
    try:
        missing = []
        existing = folder
        while not _exists(existing) and existing != existing.parent:
            missing.append(existing)
            existing = existing.parent
        if not existing.is_dir():
            return f"cannot be a folder: {quote(str(existing))} is a file" if missing else "is a file, not a folder"
        for path in reversed(missing):
            path.mkdir()
            created.append(path)
        handle, probe = tempfile.mkstemp(prefix=".harness-write-test-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except (OSError, ValueError) as error:
        return f"is not writable: {getattr(error, 'strerror', None) or error}"
    finally:
        for path in reversed(created):
            with contextlib.suppress(OSError):  # something else wrote there meanwhile: theirs to keep
                path.rmdir()
    return None


def _exists(path: Path) -> bool:
    return refusable_name_safe(path.exists)

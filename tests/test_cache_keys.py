"""Cache keys: a trained stage is keyed by the train data's content, and an export by its exporter's code.

An edited train sentence or label must retrain rather than reuse a model trained on the old file;
an edited exporter module (or a ``_*.py`` helper beside it) must re-export rather than serve an
artifact the old code made.
"""

from __future__ import annotations

import json
import logging
import os
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness_testutil import TOY_ROWS, write_tsv

from harness.cache import COMPLETE_MARKER, ArtifactCache
from harness.models.pipeline import ModelPipeline
from harness.registry import BrokenAdapter, Registry, exporters
from harness.suite import parse_suite

TRAIN = [
    ("a warm , funny film .", 1),
    ("dull and far too long .", 0),
    ("i loved every minute", 1),
    ("a mess from start to finish", 0),
    ("charming performances throughout", 1),
    ("it never finds its footing", 0),
    ("sharp , witty writing", 1),
    ("nothing works here", 0),
]
FINETUNE = {"epochs": 1, "batch_size": 4, "max_length": 16, "bf16": False}


# --- trained stages: keyed by the train data's content ------------------------------------------


@dataclass(frozen=True)
class Build:
    key: str
    path: Path
    stage_logs: list[str]
    dir_mtime_ns: int
    marker: str  # the completion record, with its creation time


def _suite(data_dir: Path, cache_root: Path):
    raw = {
        "name": "keys",
        "task": {"local": str(data_dir), "source": "local"},
        "models": [{"name": "t", "source": "builtin:tiny-bert", "finetune": FINETUNE}],
        "exporters": ["eager-fp32"],
        "backends": ["pytorch"],
        "threads": 1,
        "output": {"cache_dir": str(cache_root)},
    }
    return parse_suite(raw, "x.yaml")


def _build(suite, caplog) -> Build:
    """One run's model stage: a fresh cache object and pipeline, as a new ``harness run`` makes."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="harness"):
        built = ModelPipeline(suite, ArtifactCache(Path(suite.output.cache_dir))).build_all()["t"]
    logs = [r.getMessage() for r in caplog.records if r.getMessage().startswith("t: finetune stage")]
    marker = (built.path / COMPLETE_MARKER).read_text(encoding="utf-8")
    return Build(built.key, built.path, logs, built.path.stat().st_mtime_ns, marker)


@pytest.fixture
def toy_task(tmp_path: Path):
    data = tmp_path / "data" / "toy"
    write_tsv(data / "train.tsv", TRAIN)
    write_tsv(data / "validation.tsv", TOY_ROWS)
    return data, _suite(data, tmp_path / "cache")


def _trained_models(cache_root: Path) -> list[str]:
    """Published model entries that hold a fine-tune stage report (not the builtin base model)."""
    return sorted(p.name for p in (cache_root / "models").iterdir() if (p / "harness_stage.json").is_file())


def test_edited_train_sentence_retrains(toy_task, tmp_path: Path, caplog) -> None:
    data, suite = toy_task
    cache_root = tmp_path / "cache"

    first = _build(suite, caplog)
    assert first.stage_logs == ["t: finetune stage training"]
    assert first.path == cache_root / "models" / first.key
    report = json.loads((first.path / "harness_stage.json").read_text(encoding="utf-8"))
    assert report["stage"] == "finetune" and report["train_samples"] == len(TRAIN)

    again = _build(suite, caplog)
    assert again.stage_logs == ["t: finetune stage cached"]
    assert (again.key, again.path) == (first.key, first.path)
    # the very same directory: not rebuilt and renamed over the old one
    assert again.dir_mtime_ns == first.dir_mtime_ns and again.marker == first.marker
    assert _trained_models(cache_root) == [first.key]

    edited = list(TRAIN)
    edited[2] = ("i loathed every minute", 1)  # one sentence, same label
    write_tsv(data / "train.tsv", edited)
    changed = _build(suite, caplog)
    assert changed.stage_logs == ["t: finetune stage training"]
    assert changed.key != first.key and changed.path != first.path
    assert sorted(_trained_models(cache_root)) == sorted([first.key, changed.key])
    assert first.marker == (first.path / COMPLETE_MARKER).read_text(encoding="utf-8")  # the old entry is untouched

    # keyed by content, not by the file: writing the original sentences back finds the first model
    write_tsv(data / "train.tsv", TRAIN)
    restored = _build(suite, caplog)
    assert restored.stage_logs == ["t: finetune stage cached"]
    assert (restored.key, restored.marker) == (first.key, first.marker)


def test_changed_label_alone_changes_the_key(toy_task, tmp_path: Path, caplog) -> None:
    data, suite = toy_task
    first = _build(suite, caplog)
    relabelled = list(TRAIN)
    relabelled[0] = (TRAIN[0][0], 1 - TRAIN[0][1])  # the same sentences, one label flipped
    write_tsv(data / "train.tsv", relabelled)
    changed = _build(suite, caplog)
    assert changed.stage_logs == ["t: finetune stage training"]
    assert changed.key != first.key
    assert _trained_models(tmp_path / "cache") == sorted([first.key, changed.key])


def test_edit_that_keeps_the_mtime_still_retrains(toy_task, caplog) -> None:
    # e.g. a copy made with `cp -p`, `rsync -a` or `tar x`, or two writes within a coarse timestamp tick
    data, suite = toy_task
    train = data / "train.tsv"
    first = _build(suite, caplog)
    stat = train.stat()
    edited = list(TRAIN)
    edited[2] = ("i LOVED every minute", 1)  # same length, so even the size is unchanged
    write_tsv(train, edited)
    os.utime(train, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert train.stat().st_size == stat.st_size
    changed = _build(suite, caplog)
    assert changed.key != first.key


# --- exports: keyed by the exporter's code version -----------------------------------------------

MINE = textwrap.dedent(
    '''
    """A drop-in exporter: the source model saved unchanged."""
    from exporters._common import copy_tokenizer, load_hf_classifier
    from harness.adapters import Exporter


    class Mine(Exporter):
        name = "mine"
        format = "transformers"
        requires = ("torch", "transformers")

        def export(self, source, out_dir, options):
            load_hf_classifier(source).save_pretrained(out_dir, safe_serialization=True)
            copy_tokenizer(source, out_dir)


    EXPORTER = Mine()
    '''
)
HEX16 = re.compile(r"[0-9a-f]{16}")


def _registry(folder: Path) -> Registry:
    """A new registry, as a new run builds: it imports the plugin files again."""
    return Registry("exporter", "EXPORTER", "exporters", [folder])


def test_code_version_follows_the_module_file_and_its_helpers(tmp_path: Path) -> None:
    folder = tmp_path / "exporters"
    folder.mkdir()
    module = folder / "mine.py"
    module.write_text(MINE, encoding="utf-8")

    first = _registry(folder).get("mine")
    original = first.code_version()
    assert HEX16.fullmatch(original), original
    assert _registry(folder).get("mine").code_version() == original  # a re-import of the same bytes
    (folder / "NOTES.txt").write_text("not code\n", encoding="utf-8")
    assert _registry(folder).get("mine").code_version() == original

    module.write_text(MINE + "# a comment changes the bytes, not the behaviour\n", encoding="utf-8")
    edited = _registry(folder).get("mine")
    assert type(edited) is not type(first)  # the registry really re-imported the file
    assert edited.code_version() != original
    edited_version = edited.code_version()

    helper = folder / "_helper.py"
    helper.write_text("SCALE = 1\n", encoding="utf-8")
    with_helper = _registry(folder).get("mine").code_version()
    assert with_helper not in (original, edited_version)
    helper.write_text("SCALE = 2\n", encoding="utf-8")
    altered_helper = _registry(folder).get("mine").code_version()
    assert altered_helper not in (original, edited_version, with_helper)

    # a pure function of the bytes: undoing both edits gives the first version back
    helper.unlink()
    module.write_text(MINE, encoding="utf-8")
    assert _registry(folder).get("mine").code_version() == original


def test_code_version_is_the_imported_code_not_a_later_edit(tmp_path: Path) -> None:
    folder = tmp_path / "exporters"
    folder.mkdir()
    module = folder / "mine.py"
    module.write_text(MINE, encoding="utf-8")
    loaded = _registry(folder).get("mine")
    imported = loaded.code_version()
    # edited while a run is under way: the loaded (old) code must not claim the new version
    module.write_text(MINE + "# edited during the run\n", encoding="utf-8")
    assert loaded.code_version() == imported
    assert _registry(folder).get("mine").code_version() != imported  # the next run sees the edit


def test_builtin_exporter_versions_are_stable_and_distinct() -> None:
    one, two = exporters(), exporters()
    versions = {}
    for name, adapter in one.entries().items():
        if isinstance(adapter, BrokenAdapter):
            continue
        version = adapter.code_version()
        assert HEX16.fullmatch(version), (name, version)
        assert adapter.code_version() == version == two.get(name).code_version(), name
        versions[name] = version
    assert {"eager-fp32", "onnx-fp32"} <= set(versions)
    assert len(set(versions.values())) == len(versions), versions  # each exporter has its own file


def test_edited_exporter_is_exported_again(tmp_path: Path, toy_data_root: Path) -> None:
    """End to end: a run after the exporter file changed publishes a new export instead of reusing one."""
    from harness.registry import backends
    from harness.run.runner import Runner

    folder = tmp_path / "plugins" / "exporters"
    folder.mkdir(parents=True)
    (folder / "mine.py").write_text(MINE, encoding="utf-8")
    cache_root = tmp_path / "cache"
    raw = {
        "name": "exportkey",
        "task": {"local": str(toy_data_root / "toy"), "source": "local"},
        "models": [{"name": "tiny", "source": "builtin:tiny-bert"}],
        "exporters": ["mine"],
        "backends": ["pytorch"],
        "devices": ["cpu"],
        "shapes": {"batch_sizes": [4], "seq_lens": ["dynamic"]},
        "threads": 1,
        "timing": {"rounds": 1, "seconds_per_cell": 0.01, "min_batches": 1, "peak_gemm_size": 64},
        "isolation": {"mode": "none"},
        "baseline": {"exporter": "mine"},
        "output": {"cache_dir": str(cache_root)},
    }

    def run() -> list[str]:
        registry = _registry(folder)
        suite = parse_suite(raw, "exportkey.yaml", registry, backends())
        runner = Runner(suite, registry, backends(), tmp_path / "out" / "r.jsonl", progress=False, fresh=True)
        rows = runner.run()
        assert [r.status for r in rows] == ["ok"], [r.reason for r in rows]
        return sorted(p.name for p in (cache_root / "exports").iterdir())

    first = run()
    assert len(first) == 1
    assert run() == first  # unchanged code: the export is reused
    with (folder / "mine.py").open("a", encoding="utf-8") as handle:
        handle.write("# edited\n")
    second = run()
    assert len(second) == 2 and set(first) < set(second)

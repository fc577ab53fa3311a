"""Hostile files: malformed data, model configs, weights headers, model folders and packages, output
folders, and cross-checks that need I/O (positions, distilled depth, a runnable baseline). Each one
is a single line naming the file and the place, exit 2 and no traceback, from ``validate``; the
loader (``load_split``) turns the same files, and any failure of ``datasets`` below it, into one
line too."""

from __future__ import annotations

import copy
import json
import logging
import struct
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from harness_testutil import REPO, TOY_ROWS, cli_env, write_tsv
from harness_testutil import run_cli_guarded as run_cli

from harness.data.splits import load_split
from harness.errors import HarnessError
from harness.suite import TaskConfig

SMOKE = yaml.safe_load((REPO / "suites" / "smoke.yaml").read_text(encoding="utf-8"))
TINY_CONFIG = {
    "model_type": "bert",
    "architectures": ["BertForSequenceClassification"],
    "hidden_size": 4,
    "num_hidden_layers": 2,
    "num_attention_heads": 1,
    "intermediate_size": 8,
    "max_position_embeddings": 512,
    "vocab_size": 10,
    "id2label": {"0": "LABEL_0", "1": "LABEL_1"},
    "label2id": {"LABEL_0": 0, "LABEL_1": 1},
}
GOOD_TSV = "sentence\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in TOY_ROWS)


def _suite(tmp_path: Path, data: Path | None = None, task: dict | None = None, **changes: object) -> Path:
    """suites/smoke.yaml on local toy data (``task`` updates it), writing only under ``tmp_path``,
    with the top-level ``changes`` applied."""
    raw = copy.deepcopy(SMOKE)
    if data is None:
        data = write_tsv(tmp_path / "data" / "validation.tsv", TOY_ROWS).parent
    raw["task"] = {"local": str(data), "source": "local", **(task or {})}
    raw["output"] = {"dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache")}
    raw.update(changes)
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def _data(tmp_path: Path, name: str, content: str | bytes) -> Path:
    folder = tmp_path / "data"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return folder


def _model_dir(tmp_path: Path, config: object = None, weights: bytes | None = None) -> Path:
    """A model folder: config.json (``TINY_CONFIG``, or the given object, text or bytes) and a real
    (or the given) model.safetensors."""
    import numpy as np
    from safetensors.numpy import save_file

    folder = tmp_path / "model"
    folder.mkdir(parents=True, exist_ok=True)
    if not isinstance(config, str | bytes):
        config = json.dumps(TINY_CONFIG if config is None else config)
    (folder / "config.json").write_bytes(config if isinstance(config, bytes) else config.encode("utf-8"))
    if weights is None:
        save_file({"classifier.weight": np.zeros((2, 4), dtype=np.float32)}, str(folder / "model.safetensors"))
    else:
        (folder / "model.safetensors").write_bytes(weights)
    return folder


def _with_model(tmp_path: Path, folder: Path, **changes: object) -> Path:
    return _suite(tmp_path, models=[{"name": "tiny", "source": str(folder)}], **changes)


def _config(**changes: object) -> dict:
    config = {**TINY_CONFIG, **changes}
    return {k: v for k, v in config.items() if v is not None}


def _fake_package(tmp_path: Path, name: str) -> Path:
    """An installed distribution ``name`` (found on PYTHONPATH) whose package holds no model."""
    site = tmp_path / "site"
    (site / name).mkdir(parents=True)
    (site / name / "__init__.py").write_text("", encoding="utf-8")
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n", encoding="utf-8")
    (info / "top_level.txt").write_text(f"{name}\n", encoding="utf-8")
    (info / "RECORD").write_text(f"{name}/__init__.py,,\n", encoding="utf-8")
    return site


def _distill(layers: list[int], parent: str = "tiny", name: str = "student") -> dict:
    return {"name": name, "parent": parent, "distill": {"layers": layers}}


TINY = {"name": "tiny", "source": "builtin:tiny-bert"}
ABSURD_HEADER_LENGTH = struct.pack("<Q", 2**62)  # refused without allocating it

# case -> builder(tmp_path) returning (suite file, [texts the one error line must contain])
Case = Callable[[Path], tuple[Path, list[str]]]
CASES: dict[str, Case] = {
    # eval and train data
    "tsv-not-utf8": lambda t: (
        _suite(t, _data(t, "validation.tsv", b"sentence\tlabel\nfine\t1\nbad \xff\t0\n")),
        ["task.split: ", "validation.tsv: line 3: not UTF-8", "byte offset 26"],
    ),
    "csv-stray-delimiter": lambda t: (
        _suite(t, _data(t, "validation.csv", "sentence,label\nfine,1\nwell, no,0\n")),
        ["task.split: ", "validation.csv: line 3: 3 fields, but the header has 2"],
    ),
    "jsonl-truncated-line": lambda t: (
        _suite(t, _data(t, "validation.jsonl", '{"sentence": "a", "label": 1}\n{"sentence": "b", "lab')),
        ["task.split: ", "validation.jsonl: line 2: not valid JSON"],
    ),
    "jsonl-row-not-object": lambda t: (
        _suite(t, _data(t, "validation.jsonl", '{"sentence": "a", "label": 1}\n[1, 2]\n')),
        ["validation.jsonl: line 2: a row must be a JSON object, got an array"],
    ),
    "jsonl-missing-text": lambda t: (
        _suite(t, _data(t, "validation.jsonl", '{"sentence": "a", "label": 1}\n\n{"label": 0}\n')),
        ["validation.jsonl: line 3: no value for the text column 'sentence'"],
    ),
    "jsonl-text-not-string": lambda t: (
        _suite(t, _data(t, "validation.jsonl", '{"sentence": "a", "label": 1}\n{"sentence": 5, "label": 0}\n')),
        ["validation.jsonl: line 2: the text 'sentence' must be a string, got a number"],
    ),
    "tsv-missing-label": lambda t: (
        _suite(t, _data(t, "validation.tsv", "sentence\tlabel\nfine\t1\njust a sentence\n")),
        ["validation.tsv: line 3: no value for the label column 'label'"],
    ),
    "tsv-string-label": lambda t: (
        _suite(t, _data(t, "validation.tsv", "sentence\tlabel\nfine\t1\nawful\tnegative\n")),
        ["task.split: ", "validation.tsv: line 3: label 'negative' in column 'label' is not an integer"],
    ),
    "jsonl-boolean-label": lambda t: (
        _suite(t, _data(t, "validation.jsonl", '{"sentence": "a", "label": true}\n')),
        ["validation.jsonl: line 1: label True in column 'label' is not an integer"],
    ),
    "tsv-long-label-is-cut": lambda t: (
        _suite(t, _data(t, "validation.tsv", "sentence\tlabel\nfine\t" + "x" * 10_000 + "\n")),
        ["line 2: label 'xxxx", "x... in column 'label' is not an integer"],
    ),
    "tsv-header-only": lambda t: (
        _suite(t, _data(t, "validation.tsv", "sentence\tlabel\n")),
        ["task.split: ", "validation.tsv: the validation split has a header but no rows"],
    ),
    "tsv-empty-file": lambda t: (
        _suite(t, _data(t, "validation.tsv", "")),
        ["task.split: ", "validation.tsv: the file is empty"],
    ),
    "json-array-with-a-number": lambda t: (
        _suite(t, _data(t, "validation.json", '[{"sentence": "a", "label": 1}, 3]')),
        ["validation.json: item 1: a row must be a JSON object, got a number"],
    ),
    "train-split-misspelt": lambda t: (
        _suite(t, task={"train_split": "trian"}, models=[{**TINY, "finetune": {"epochs": 1}}]),
        ["task.train_split: no ", "/trian.{tsv,csv,jsonl,json}"],
    ),
    "train-split-bad-label": lambda t: (
        _suite(t, _train_data(t, "sentence\tlabel\nfine\tpositive\n"), models=[TINY, _distill([0, 1])]),
        ["task.train_split: ", "train.tsv: line 2: label 'positive'"],
    ),
    # model config.json
    "config-not-json": lambda t: (
        _with_model(t, _model_dir(t, "{'model_type': 'bert'}")),
        ["models[0].source: ", "config.json: line 1 column 2: not valid JSON"],
    ),
    "config-not-an-object": lambda t: (
        _with_model(t, _model_dir(t, "[1, 2]")),
        ["config.json: top level: expected a JSON object, got an array"],
    ),
    "config-not-utf8": lambda t: (
        _with_model(t, _model_dir(t, b'{"model_type": "\xfe"}')),
        ["config.json: line 1: not UTF-8"],
    ),
    "config-num-labels-string": lambda t: (
        _with_model(t, _model_dir(t, _config(num_labels="2", id2label=None, label2id=None))),
        ["models[0].source: ", "config.json: num_labels: must be a positive integer, got '2'"],
    ),
    "config-id2label-list": lambda t: (
        _with_model(t, _model_dir(t, _config(id2label=["neg", "pos"]))),
        ["config.json: id2label: must be a mapping, got an array"],
    ),
    "config-no-model-type": lambda t: (
        _with_model(t, _model_dir(t, _config(model_type=None))),
        ["config.json: model_type: missing"],
    ),
    "config-depth-boolean": lambda t: (
        _with_model(t, _model_dir(t, _config(num_hidden_layers=True))),
        ["config.json: num_hidden_layers: must be a positive integer, got True"],
    ),
    # weights headers
    "safetensors-truncated": lambda t: (
        _with_model(t, _truncated_weights(t)),
        ["models[0].source: ", "model.safetensors: header: not a valid safetensors file"],
    ),
    "safetensors-absurd-header-length": lambda t: (
        _with_model(t, _model_dir(t, weights=ABSURD_HEADER_LENGTH + b"{}")),
        ["model.safetensors: header: not a valid safetensors file: header too large"],
    ),
    "safetensors-garbage": lambda t: (
        _with_model(t, _model_dir(t, weights=b"hello")),
        ["model.safetensors: header: not a valid safetensors file: header too small"],
    ),
    "safetensors-index-missing-shard": lambda t: (
        _with_model(t, _sharded(t)),
        ["model.safetensors.index.json: weight_map: names the shard 'model-00002.safetensors', which is missing"],
    ),
    # model folders and packages that are not models
    "model-dir-without-config": lambda t: (
        _with_model(t, _without(_model_dir(t) / "config.json")),
        ["models[0].source: ", "has no config.json"],
    ),
    "model-path-is-a-file": lambda t: (
        _with_model(t, _model_dir(t) / "model.safetensors"),
        ["models[0].source: ", "is not a directory"],
    ),
    # cross-checks that need I/O
    "seq-len-beyond-positions": lambda t: (
        _with_model(t, _model_dir(t, _config(max_position_embeddings=32)), max_length=32),
        ["shapes.seq_lens[1]: 64 tokens exceed the 32 positions of model 'tiny'"],
    ),
    "max-length-beyond-positions": lambda t: (
        _with_model(t, _model_dir(t, _config(max_position_embeddings=32)), shapes={"seq_lens": ["dynamic"]}),
        ["max_length: 128 tokens exceed the 32 positions of model 'tiny'"],
    ),
    "distill-layer-beyond-parent": lambda t: (
        _suite(t, _train_data(t), models=[TINY, _distill([0, 5])]),
        ["models[1].distill.layers[1]: layer 5 is beyond the parent model 'tiny', which has 2 layers (0..1)"],
    ),
    "distill-layer-beyond-distilled-parent": lambda t: (
        _suite(t, _train_data(t), models=[TINY, _distill([1]), _distill([0, 1], "student", "pupil")]),
        ["models[2].distill.layers[1]: layer 1 is beyond the parent model 'student', which has 1 layer (0..0)"],
    ),
    "distill-layer-beyond-config-depth": lambda t: (
        _suite(
            t,
            _train_data(t),
            models=[{"name": "tiny", "source": str(_model_dir(t, _config(num_hidden_layers=3)))}, _distill([3])],
        ),
        ["models[1].distill.layers[0]: layer 3 is beyond the parent model 'tiny', which has 3 layers"],
    ),
    "prune-heads-of-mpnet": lambda t: (
        _suite(
            t,
            _train_data(t),
            models=[{"name": "tiny", "source": "builtin:tiny-mpnet"}, {"name": "p", "parent": "tiny", "prune": {}}],
        ),
        ["models[1].prune.head_fraction: cannot prune mpnet heads: ", "use head_fraction: 0"],
    ),
    "distill-unsupported-architecture": lambda t: (
        _suite(
            t,
            _train_data(t),
            models=[{"name": "tiny", "source": str(_model_dir(t, _config(model_type="gpt2")))}, _distill([0])],
        ),
        ["models[1].distill: the parent model 'tiny' is a 'gpt2' model, which the compression stages do not support"],
    ),
    "baseline-format-mismatch": lambda t: (
        _suite(t, baseline={"exporter": "onnx-fp32", "backend": "pytorch"}),
        ["baseline.backend: backend 'pytorch' cannot load the 'onnx' format of exporter 'onnx-fp32'"],
    ),
    "baseline-on-no-device": lambda t: (
        _suite(t, exporters=["eager-fp16", "onnx-fp32"], devices=["cpu"], baseline={"exporter": "eager-fp16"}),
        ["baseline: the baseline cell (eager-fp16 on pytorch) can run on none of the suite's devices (cpu: FP16"],
    ),
    "output-dir-under-a-file": lambda t: (
        _suite(t, output={"dir": str(_touch(t / "blocker") / "out"), "cache_dir": str(t / "cache")}),
        ["output.dir: ", "cannot be a folder: ", "blocker' is a file"],
    ),
    "cache-dir-is-a-file": lambda t: (
        _suite(t, output={"dir": str(t / "out"), "cache_dir": str(_touch(t / "cache-file"))}),
        ["output.cache_dir: ", "cache-file' is a file, not a folder"],
    ),
    "output-dir-name-too-long": lambda t: (
        _suite(t, output={"dir": str(t / ("x" * 300)), "cache_dir": str(t / "cache")}),
        ["output.dir: ", "is not writable: File name too long"],
    ),
    "dataset-id-malformed": lambda t: (
        _suite(t, task={"dataset": "nyu mll/glue!", "source": "auto"}),
        ["task.dataset: ", "'nyu mll/glue!'"],
    ),
    "dataset-id-malformed-hub": lambda t: (
        _suite(t, task={"dataset": "datasets/nyu-mll/glue", "source": "hub"}),
        ["task.dataset: ", "'datasets/nyu-mll/glue'"],
    ),
}


def _touch(path: Path) -> Path:
    path.write_text("", encoding="utf-8")
    return path


def _without(path: Path) -> Path:
    """The folder of ``path``, once ``path`` is removed from it."""
    path.unlink()
    return path.parent


def _truncated_weights(tmp_path: Path) -> Path:
    folder = _model_dir(tmp_path)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) - 9])
    return folder


def _sharded(tmp_path: Path) -> Path:
    folder = _model_dir(tmp_path)
    (folder / "model.safetensors").rename(folder / "model-00001.safetensors")
    index = {"weight_map": {"a": "model-00001.safetensors", "b": "model-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index), encoding="utf-8")
    return folder


def _train_data(tmp_path: Path, train: str | None = None) -> Path:
    """A data folder with the toy validation split and a train split (the toy rows unless given)."""
    _data(tmp_path, "train.tsv", GOOD_TSV if train is None else train)
    return _data(tmp_path, "validation.tsv", GOOD_TSV)


def _assert_one_line(proc, suite: Path, expected: list[str]) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {suite}: "), lines[0]
    for text in expected:
        assert text in lines[0], lines[0]
    assert len(lines[0]) < 600, lines[0]
    return lines[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_file_is_one_line(case: str, tmp_path: Path) -> None:
    suite, expected = CASES[case](tmp_path)
    _assert_one_line(run_cli("validate", suite), suite, expected)
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()  # probes leave nothing


def test_package_that_is_not_a_model(tmp_path: Path) -> None:
    site = _fake_package(tmp_path, "notamodel")
    suite = _suite(tmp_path, models=[{"name": "tiny", "source": "package:notamodel"}])
    proc = run_cli("validate", suite, env=cli_env(PYTHONPATH=str(site)))
    line = _assert_one_line(proc, suite, ["models[0].source: ", "has no config.json (it is not a model directory)"])
    assert str(site / "notamodel") in line


def test_good_files_pass_and_leave_no_folders_behind(tmp_path: Path) -> None:
    """The same builders, well formed, validate; the output folders probed are removed again."""
    models = [{"name": "tiny", "source": str(_model_dir(tmp_path))}, _distill([0, 1])]
    data = _data(tmp_path, "train.jsonl", "".join(json.dumps({"sentence": t, "label": y}) + "\n" for t, y in TOY_ROWS))
    _data(tmp_path, "validation.tsv", GOOD_TSV)
    task = {"dataset": "nyu-mll/glue", "source": "auto"}  # offline: falls back to the local copy
    output = {"dir": str(tmp_path / "deep" / "er" / "out"), "cache_dir": str(tmp_path / "cache")}
    suite = _suite(tmp_path, data, task, models=models, max_length=64, output=output)
    proc = run_cli("validate", suite)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert not (tmp_path / "deep").exists() and not (tmp_path / "cache").exists()


def test_one_class_is_a_warning_not_an_error(tmp_path: Path) -> None:
    suite = _suite(tmp_path, _data(tmp_path, "validation.tsv", "sentence\tlabel\ngood\t1\nfine\t1\n"))
    proc = run_cli("validate", suite)
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "validation.tsv: the validation split has one class only (label 1 in all 2 rows)" in line


# the loader, in-process: the same files (and a failure inside datasets) as one-line HarnessErrors
LOADER_CASES = {
    "not-utf8": ("validation.tsv", b"sentence\tlabel\nfine\t1\nbad \xff\t0\n", "validation.tsv: line 3: not UTF-8"),
    "truncated-jsonl": ("validation.jsonl", b'{"sentence": "a", "label": 1}\n{"sent', "validation.jsonl: line 2: "),
    "string-label": ("validation.tsv", b"sentence\tlabel\nfine\tpos\n", "line 2: label 'pos' in column 'label'"),
    "missing-label": ("validation.tsv", b"sentence\tlabel\nfine\n", "line 2: no value for the label column"),
    "header-only": ("validation.tsv", b"sentence\tlabel\n", "the validation split has a header but no rows"),
    # the scan accepts it; pandas cannot hold the label: the datasets failure is one line naming the file
    "label-overflows-int64": ("validation.tsv", b"sentence\tlabel\na\t1\nb\t" + b"9" * 30 + b"\n", "cannot be loaded"),
}


@pytest.mark.parametrize("case", sorted(LOADER_CASES))
def test_loader_raises_one_line(case: str, tmp_path: Path) -> None:
    name, content, expected = LOADER_CASES[case]
    folder = _data(tmp_path, name, content)
    with pytest.raises(HarnessError) as raised:
        load_split(TaskConfig(local=str(folder), source="local"), "validation", None, tmp_path / "ds-cache")
    message = str(raised.value)
    assert len(message.splitlines()) == 1, message
    assert str(folder / name) in message and expected in message, message
    assert raised.value.exit_code == 2


def test_loader_warns_once_about_one_class(tmp_path: Path, caplog) -> None:
    folder = _data(tmp_path, "validation.tsv", "sentence\tlabel\ngood\t0\nfine\t0\n")
    task = TaskConfig(local=str(folder), source="local")
    with caplog.at_level(logging.WARNING, logger="harness"):
        for _ in range(2):
            assert load_split(task, "validation", None, tmp_path / "ds-cache").labels == [0, 0]
    assert [r.getMessage().count("one class only") for r in caplog.records] == [1]


def test_third_party_deprecations_are_quiet_unless_debug(monkeypatch) -> None:
    import torch
    import torch.storage

    from harness.quiet import SHOW_VARIABLE, quiet_third_party_warnings

    def typed_storage_warnings(show: bool) -> list[str]:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("default")
            quiet_third_party_warnings(show=show)
            torch.storage._reset_warn_typed_storage_removal()  # torch warns once per process
            torch.FloatStorage(2)
        return [str(w.message) for w in seen if "TypedStorage is deprecated" in str(w.message)]

    monkeypatch.delenv(SHOW_VARIABLE, raising=False)
    assert typed_storage_warnings(show=False) == []
    assert len(typed_storage_warnings(show=True)) == 1  # --debug


def test_validate_reports_every_problem_of_what_a_suite_points_at(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    models = [
        {"name": "first", "source": str(tmp_path / "no-model-1")},
        {"name": "second", "source": str(tmp_path / "no-model-2")},
    ]
    suite = _suite(tmp_path, models=models, baseline={"model": "first"})
    raw = yaml.safe_load(suite.read_text(encoding="utf-8"))
    raw["output"]["dir"] = str(blocker / "out")
    suite.write_text(yaml.safe_dump(raw), encoding="utf-8")
    proc = run_cli("validate", suite)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert [line.split(": ")[2] for line in lines] == ["models[0].source", "models[1].source", "output.dir"], lines
    assert all(line.startswith(f"error: {suite}: ") for line in lines)

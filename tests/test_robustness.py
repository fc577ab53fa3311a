"""Robustness: a corpus of broken suites (each one line, exit 2, the key named, no traceback),
a corrupted cache entry rebuilt instead of trusted, and interrupted runs that resume to the same
rows as an uninterrupted one."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from harness_testutil import REPO, cli_env, read_jsonl, run_cli
from test_isolation import SPIN

SMOKE = yaml.safe_load((REPO / "suites" / "smoke.yaml").read_text(encoding="utf-8"))


def _set(path: str, value: object) -> Callable[[dict], dict]:
    def mutate(raw: dict) -> dict:
        target = raw
        *parents, last = path.split(".")
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
        return raw

    return mutate


def _drop(path: str) -> Callable[[dict], dict]:
    def mutate(raw: dict) -> dict:
        *parents, last = path.split(".")
        target = raw
        for part in parents:
            target = target[part]
        del target[last]
        return raw

    return mutate


# (mutation, key path the one-line message must name)
BROKEN_SUITES: dict[str, tuple[Callable[[dict], dict], str]] = {
    "unknown-top-key": (_set("colour", "red"), "colour: unknown key"),
    "unknown-nested-key": (_set("timing.warmups", 3), "timing.warmups: unknown key"),
    "missing-name": (_drop("name"), "name: required key is missing"),
    "missing-task": (_drop("task"), "task: required key is missing"),
    "models-not-list": (_set("models", "tiny"), "models:"),
    "empty-models": (_set("models", []), "models:"),
    "batch-size-zero": (_set("shapes.batch_sizes", [0]), "shapes.batch_sizes[0]"),
    "batch-size-negative": (_set("shapes.batch_sizes", [1, -8]), "shapes.batch_sizes[1]"),
    "batch-size-string": (_set("shapes.batch_sizes", ["eight"]), "shapes.batch_sizes[0]"),
    "seq-len-too-long": (_set("shapes.seq_lens", ["dynamic", 4096]), "shapes.seq_lens[1]"),
    "seq-len-word": (_set("shapes.seq_lens", ["longest"]), "shapes.seq_lens[0]"),
    "threads-zero": (_set("threads", 0), "threads"),
    "threads-bool": (_set("threads", True), "threads"),
    "warmup-zero": (_set("timing.warmup_passes", 0), "timing.warmup_passes"),
    "rounds-zero": (_set("timing.rounds", 0), "timing.rounds"),
    "seconds-negative": (_set("timing.seconds_per_cell", -0.5), "timing.seconds_per_cell"),
    "max-below-min": (_set("timing.min_passes", 2000), "timing: max_passes must be at least min_passes"),
    "max-samples-zero": (_set("task.max_samples", 0), "task.max_samples"),
    "misspelt-backend": (_set("backends", ["pytorch", "onnxruntim"]), "did you mean 'onnxruntime'"),
    "misspelt-exporter": (_set("exporters.0", "eager-fp23"), "did you mean 'eager-fp32'"),
    "misspelt-device": (_set("devices", ["cpu", "cdua"]), "did you mean 'cuda'"),
    "misspelt-baseline-model": (_set("baseline", {"model": "tinny"}), "did you mean 'tiny'"),
    "exporter-option-unknown": (_set("exporters.4.options", {"optimise": True}), "exporters[4].options.optimise"),
    "exporter-option-type": (_set("exporters.4.options", {"optimize": "very"}), "exporters[4].options.optimize"),
    "duplicate-exporter-label": (_set("exporters.4", "ort-int8"), "'ort-int8' appears twice"),
    "model-name-traversal": (_set("models.0.name", "../../etc"), "models[0].name"),
    "output-name-traversal": (_set("output", {"name": "../escape"}), "output.name"),
    "model-dir-missing": (_set("models.0.source", "./no/such/model"), "models[0].source: no such model directory"),
    "builtin-unknown": (_set("models.0.source", "builtin:huge-bert"), "unknown builtin model 'huge-bert'"),
    "package-missing": (_set("models.0.source", "package:no_such_pkg_xyz"), "'no_such_pkg_xyz' is not installed"),
    "text-column-missing": (_set("task.text_column", "text"), "task.text_column: ../"),
    "label-column-missing": (_set("task.label_column", "target"), "task.label_column"),
    "labels-out-of-range": (_set("models.0.num_labels", 1), "models[0].num_labels: the eval labels include 1"),
    "local-data-missing": (_set("task", {"local": "no-such-data", "source": "local"}), "task.local: no 'no-such-data/"),
    "parent-unknown": (
        _set(
            "models",
            [
                {"name": "tiny", "source": "builtin:tiny-bert"},
                {"name": "s", "parent": "tiny2", "distill": {"layers": [0]}},
            ],
        ),
        "models[1].parent: unknown parent model 'tiny2' (did you mean 'tiny'?)",
    ),  # fmt: skip
    "stage-without-parent": (_set("models.0.distill", {"layers": [0]}), "'distill' needs a 'parent' model"),
    "required-device-not-listed": (
        lambda raw: _set("required_devices", ["cuda"])(_set("devices", ["cpu"])(raw)),
        "required_devices[0]: 'cuda' is not in devices",
    ),
}


def _write(tmp_path: Path, raw: object, text: str | None = None) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(text if text is not None else yaml.safe_dump(raw), encoding="utf-8")
    return path


def _assert_one_line(proc: subprocess.CompletedProcess, path: Path, expected: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert str(path) in lines[0]
    assert expected in lines[0], lines[0]


@pytest.mark.parametrize("case", sorted(BROKEN_SUITES))
def test_broken_suite_is_one_clear_line(case: str, tmp_path: Path) -> None:
    mutate, expected = BROKEN_SUITES[case]
    path = _write(tmp_path, mutate(copy.deepcopy(SMOKE)))
    if case == "text-column-missing":
        expected = "task.text_column: "
    _assert_one_line(run_cli("validate", path), path, expected)


@pytest.mark.parametrize(
    ("case", "text", "expected"),
    [
        ("malformed-yaml", "name: [unclosed\n", "malformed YAML"),
        ("empty-file", "", "the file is empty"),
        ("top-level-list", "- a\n- b\n", "the top level must be a mapping"),
        ("not-utf8", None, "not a UTF-8 text file"),
    ],
)
def test_unreadable_suite_is_one_clear_line(case: str, text: str | None, expected: str, tmp_path: Path) -> None:
    path = tmp_path / "suite.yaml"
    if text is None:
        path.write_bytes(b"name: \xff\xfe\n")
    else:
        path.write_text(text, encoding="utf-8")
    _assert_one_line(run_cli("validate", path), path, expected)


def test_suite_path_that_is_a_directory_or_missing(tmp_path: Path) -> None:
    _assert_one_line(run_cli("run", tmp_path), tmp_path, "is a directory")
    _assert_one_line(run_cli("run", tmp_path / "nope.yaml"), tmp_path / "nope.yaml", "no such file")


def test_model_directory_without_weights(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}", encoding="utf-8")
    path = _write(tmp_path, _set("models.0.source", str(model))(copy.deepcopy(SMOKE)))
    _assert_one_line(run_cli("validate", path), path, "models[0].source: ")
    assert "has no weights" in run_cli("validate", path).stderr


def test_unwritable_output_directory_fails_before_work(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    proc = run_cli("run", REPO / "suites" / "smoke.yaml", "--out", blocker / "out")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: output directory {blocker / 'out'} is not writable: "
                                                f"{os.strerror(20)}"]  # fmt: skip


def _tiny_suite(
    tmp_path: Path, toy_data_root: Path, cache_dir: Path, backends: list[str], shapes: dict, seconds: float = 0.2
) -> Path:
    raw = {
        "name": "resume",
        "task": {"local": str(toy_data_root / "toy"), "source": "local"},
        "models": [{"name": "tiny", "source": "builtin:tiny-bert"}],
        "exporters": ["onnx-fp32"],
        "backends": backends,
        "devices": ["cpu"],
        "shapes": shapes,
        "threads": 1,
        "timing": {"rounds": 2, "seconds_per_cell": seconds, "single_inputs": 12, "peak_gemm_size": 256},
        "baseline": {"exporter": "onnx-fp32", "backend": backends[0]},
        "output": {"cache_dir": str(cache_dir)},
    }
    return _write(tmp_path, raw)


def test_corrupted_cache_entry_is_rebuilt(tmp_path: Path, toy_data_root: Path) -> None:
    cache = tmp_path / "cache"
    suite = _tiny_suite(tmp_path, toy_data_root, cache, ["onnxruntime"], {"batch_sizes": [1], "seq_lens": [8]})
    assert run_cli("run", suite, "--out", tmp_path / "a", "--no-progress").returncode == 0
    (onnx,) = cache.glob("exports/*/model.onnx")
    onnx.write_bytes(onnx.read_bytes()[:-64] + b"\0" * 64)  # same size, different content
    proc = run_cli("run", suite, "--out", tmp_path / "b", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "is damaged" in proc.stderr and "rebuilding" in proc.stderr
    (rebuilt,) = cache.glob("exports/*/model.onnx")
    marker = json.loads((rebuilt.parent / ".complete.json").read_text())
    from harness.cache import fingerprint_dir

    assert marker["content_hash"] == fingerprint_dir(rebuilt.parent)
    assert [r["status"] for r in read_jsonl(tmp_path / "b" / "resume.jsonl")] == ["ok"]


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_run_resumes_to_the_same_rows(how: int, tmp_path: Path, toy_data_root: Path, cache_dir) -> None:
    plugins = tmp_path / "plugins" / "backends"
    plugins.mkdir(parents=True)
    (plugins / "spin.py").write_text(SPIN, encoding="utf-8")
    env = cli_env(HARNESS_PLUGIN_PATH=str(plugins.parent), SPIN_FACTOR="1")
    shapes = {"batch_sizes": [1, 2], "seq_lens": ["dynamic"]}
    # three variants of two cells; a variant's rows land as its last round ends, and half a second
    # per cell and round leaves the interrupt seconds to land before the last variant's
    suite = _tiny_suite(tmp_path, toy_data_root, cache_dir, ["ort-spin"], shapes, seconds=0.5)
    raw = yaml.safe_load(suite.read_text())
    raw["exporters"] = ["onnx-fp32", "ort-int8", {"name": "ort-int8", "label": "fused", "options": {"optimize": True}}]
    suite.write_text(yaml.safe_dump(raw), encoding="utf-8")
    out = tmp_path / "out"
    results = out / "resume.jsonl"
    command = [sys.executable, "-m", "harness", "run", str(suite), "--out", str(out), "--no-progress"]
    # A terminal's Ctrl-C reaches a process whose SIGINT is at its default; CI may start us with
    # SIGINT ignored (a background shell), which Python would then keep ignoring.
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not results.exists() or len(read_jsonl(results)) < 2):
        time.sleep(0.05)
    proc.send_signal(how)
    stderr = proc.communicate(timeout=60)[1]
    kept = read_jsonl(results)  # parses: no torn line (read_jsonl is strict)
    assert 2 <= len(kept) < 6, stderr
    if how == signal.SIGINT:
        assert proc.returncode == 130 and "interrupted" in stderr
    resumed = run_cli("run", suite, "--out", out, "--no-progress", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming: {len(kept)} finished cells kept" in resumed.stderr
    # the unfinished variants' first round was journaled and is replayed, not measured again
    assert "variant rounds replayed" in resumed.stderr
    assert not out.joinpath("resume.journal").exists()  # removed once every round is in the rows
    rows = read_jsonl(results)
    keys = [(r["exporter"], r["batch_size"]) for r in rows]
    assert sorted(keys) == sorted((e, b) for e in ("onnx-fp32", "ort-int8", "fused") for b in (1, 2))
    assert rows[: len(kept)] == kept  # finished rows are untouched, not re-measured
    assert all(r["status"] == "ok" for r in rows)


@pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="checks the CPU-only behaviour; this machine has a GPU"
)
def test_required_cuda_fails_up_front_without_a_gpu(tmp_path: Path, toy_data_root: Path, cache_dir) -> None:
    suite = _tiny_suite(tmp_path, toy_data_root, cache_dir, ["onnxruntime"], {"batch_sizes": [1], "seq_lens": [8]})
    raw = yaml.safe_load(suite.read_text())
    raw.update(devices=["cpu", "cuda"], required_devices=["cuda"])
    suite.write_text(yaml.safe_dump(raw), encoding="utf-8")
    proc = run_cli("run", suite, "--out", tmp_path / "out", "--no-progress")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: device 'cuda' is required by the suite")
    assert not (tmp_path / "out" / "resume.jsonl").exists()


def test_hub_model_offline_names_both_ways_out(tmp_path: Path, toy_data_root: Path, cache_dir) -> None:
    suite = _tiny_suite(tmp_path, toy_data_root, cache_dir, ["onnxruntime"], {"batch_sizes": [1], "seq_lens": [8]})
    raw = yaml.safe_load(suite.read_text())
    raw["models"] = [{"name": "remote", "source": "no-such-org/no-such-model"}]
    raw["baseline"]["model"] = "remote"
    suite.write_text(yaml.safe_dump(raw), encoding="utf-8")
    env = cli_env(HF_HOME=str(tmp_path / "hf-home"))  # an empty local hub cache
    proc = run_cli("run", suite, "--out", tmp_path / "out", "--no-progress", env=env)
    assert proc.returncode == 2
    message = proc.stderr.strip().splitlines()[-1]
    assert "no-such-org/no-such-model" in message
    assert "the hub is unreachable" in message and "point source at a local model directory" in message

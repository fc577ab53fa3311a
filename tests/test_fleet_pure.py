"""The fleet's rules without a cluster: hardware selectors in a suite, which nodes they name, how an
artifact travels by content key, and how a worker's answer is read as data (never executed)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from harness.adapters import Artifact
from harness.cache import ArtifactCache
from harness.errors import SuiteError
from harness.fleet.artifacts import pack, reference, unpack
from harness.fleet.codec import decode_outcome, encode_outcome
from harness.fleet.nodes import FleetError, Node, match_hardware
from harness.measure.execute import CellTimes, VariantOutcome
from harness.suite import parse_suite
from harness.suite_fleet import HardwareSelector

REPO = Path(__file__).resolve().parents[1]
SMOKE = yaml.safe_load((REPO / "suites" / "smoke.yaml").read_text(encoding="utf-8"))


def node(name: str, alive: bool = True, slot: float = 1, **resources: float) -> Node:
    labels = {"machine": name}
    return Node(
        f"{name}-id-0123456789", f"10.0.0.{len(name)}", {"CPU": 2, "harness-slot": slot, **resources}, labels, alive
    )


# --- the suite's hardware and cluster blocks ---------------------------------------------------


def test_hardware_and_cluster_are_typed_and_leave_older_hashes_alone() -> None:
    plain = parse_suite(SMOKE, "smoke.yaml")
    fleet = parse_suite(
        {**SMOKE, "hardware": [{"name": "xeon-2c", "resources": {"bench-xeon": 1}}], "cluster": {"address": "auto"}},
        "smoke.yaml",
    )
    assert fleet.hardware[0].resources == {"bench-xeon": 1.0} and fleet.cluster.slot_resource == "harness-slot"
    assert fleet.content_hash() != plain.content_hash()
    assert parse_suite({**SMOKE, "hardware": []}, "smoke.yaml").content_hash() == plain.content_hash()
    # a suite written before the fleet keeps the hash its committed results carry
    serving = yaml.safe_load((REPO / "suites" / "sst2-serving.yaml").read_text(encoding="utf-8"))
    recorded = json.loads((REPO / "reports" / "sst2-serving-cpu.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert parse_suite(serving, "sst2-serving.yaml").content_hash() == recorded["run"]["suite_hash"]


@pytest.mark.parametrize(
    ("block", "where"),
    [
        ({"hardware": [{"name": "a"}]}, "hardware[0]: a hardware selector needs resources or labels"),
        ({"hardware": [{"name": "a", "labels": {"k": "v"}}, {"name": "a", "labels": {"k": "w"}}]}, "hardware[1].name"),
        ({"hardware": [{"name": "a", "resources": {"bench": 0}}]}, "hardware[0].resources.bench"),
        ({"cluster": {"address": "http://head:6379"}}, "cluster.address"),
        ({"cluster": {"address": "auto", "port": 1}}, "cluster.port"),
    ],
)
def test_fleet_blocks_name_the_key_path_of_their_problem(block: dict, where: str) -> None:
    with pytest.raises(SuiteError, match=r"smoke\.yaml: " + where.replace("[", r"\[").replace("]", r"\]")):
        parse_suite({**SMOKE, **block}, "smoke.yaml")


# --- which nodes each selector names -----------------------------------------------------------


def test_each_selector_gets_the_live_nodes_that_carry_its_resources_and_labels() -> None:
    nodes = [node("xeon-a", **{"bench-xeon": 1}), node("xeon-b", alive=False, **{"bench-xeon": 1}), node("epyc")]
    selectors = [
        HardwareSelector(name="xeon", resources={"bench-xeon": 1}),
        HardwareSelector(name="epyc", labels={"machine": "epyc"}),
    ]
    matched, warnings = match_hardware(selectors, nodes, "harness-slot")
    assert [n.address for n in matched["xeon"]] == ["10.0.0.6"] and [n.node_id[:4] for n in matched["epyc"]] == ["epyc"]
    assert warnings == []


def test_a_required_selector_without_a_node_stops_the_run_and_says_what_nodes_offer() -> None:
    selectors = [HardwareSelector(name="gpu", resources={"bench-gpu": 1})]
    with pytest.raises(FleetError, match=r"'gpu' matches no live node .*resource bench-gpu >= 1.*\[harness-slot\]"):
        match_hardware(selectors, [node("xeon")], "harness-slot")


def test_an_optional_selector_without_a_node_is_a_warning() -> None:
    selectors = [HardwareSelector(name="gpu", resources={"bench-gpu": 1}, optional=True)]
    matched, warnings = match_hardware(selectors, [node("xeon")], "harness-slot")
    assert matched == {"gpu": []} and "skipped" in warnings[0]


def test_a_matching_node_without_a_slot_is_refused_up_front() -> None:
    selectors = [HardwareSelector(name="xeon", labels={"machine": "xeon"})]
    with pytest.raises(FleetError, match=r"offer no 'harness-slot' resource"):
        match_hardware(selectors, [node("xeon", slot=0)], "harness-slot")


def test_node_records_are_read_defensively() -> None:
    record = {"NodeID": "abc", "Alive": True, "NodeManagerAddress": "10.1.1.1", "Resources": {"CPU": 2.0}, "Labels": {}}
    assert Node.from_ray(record).resources == {"CPU": 2.0}
    with pytest.raises(FleetError, match="cannot read"):
        Node.from_ray({"Alive": True})


# --- artifacts by content key ------------------------------------------------------------------


def _entry(root: Path) -> tuple[ArtifactCache, Artifact]:
    cache = ArtifactCache(root)

    def build(out: Path) -> None:
        (out / "model.onnx").write_bytes(b"graph" * 100)
        (out / "sub").mkdir()
        (out / "sub" / "config.json").write_text('{"a": 1}', encoding="utf-8")

    entry = cache.get_or_build("exports", "k1", build)
    return cache, Artifact(entry / "model.onnx", "onnx", {"opset": 17})


def test_an_artifact_arrives_whole_under_its_key_and_is_reused(tmp_path: Path) -> None:
    driver, artifact = _entry(tmp_path / "driver")
    ref = reference(artifact, driver)
    worker = ArtifactCache(tmp_path / "worker")
    arrived = unpack(pack(artifact.path.parent), ref, worker)
    assert arrived.path == tmp_path / "worker" / "exports" / "k1" / "model.onnx"
    assert arrived.path.read_bytes() == artifact.path.read_bytes() and arrived.metadata == {"opset": 17}
    assert (arrived.path.parent / "sub" / "config.json").read_text(encoding="utf-8") == '{"a": 1}'
    stamp = arrived.path.stat().st_mtime_ns
    again = unpack(b"not even a tar", ref, worker)  # the intact entry is reused: the blob is not read
    assert again.path == arrived.path and again.path.stat().st_mtime_ns == stamp


def test_an_artifact_with_other_content_is_refused_and_not_published(tmp_path: Path) -> None:
    driver, artifact = _entry(tmp_path / "driver")
    ref = reference(artifact, driver)
    blob = pack(artifact.path.parent).replace(b"graphgraph", b"GRAPHgraph", 1)
    with pytest.raises(FleetError, match="other content"):
        unpack(blob, ref, ArtifactCache(tmp_path / "worker"))
    assert not (tmp_path / "worker" / "exports" / "k1").exists()


@pytest.mark.parametrize("name", ["../escape.txt", "/tmp/absolute.txt"])
def test_a_member_outside_its_folder_is_refused(tmp_path: Path, name: str) -> None:
    driver, artifact = _entry(tmp_path / "driver")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo(name)
        info.size = 3
        archive.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(Exception, match=r"outside|absolute|escape"):
        unpack(buffer.getvalue(), reference(artifact, driver), ArtifactCache(tmp_path / "worker"))
    assert not (tmp_path / "escape.txt").exists() and not list((tmp_path / "worker").rglob("*.txt"))


def test_only_what_the_cache_published_can_be_shipped(tmp_path: Path) -> None:
    stray = tmp_path / "elsewhere" / "model.onnx"
    stray.parent.mkdir()
    stray.write_bytes(b"x")
    with pytest.raises(FleetError, match="not in the artifact cache"):
        reference(Artifact(stray, "onnx"), ArtifactCache(tmp_path / "cache"))


# --- a worker's answer is data -----------------------------------------------------------------


def _outcome() -> VariantOutcome:
    cell = ("m", "onnx-fp32", "onnxruntime", "cpu", "1", "dynamic")
    return VariantOutcome(
        "ok",
        None,
        {cell: CellTimes(((0.001, 0.002), (0.0015, 0.0025)), 2, None, 120.5)},
        {"batch 1, dynamic": np.array([[0.5, -0.5], [1.0, 2.0]])},
        {"baseline_rss_mb": 40.0, "peak_rss_mb": None},
        {"load": 0.1, "time": 1.0, "score": 0.2},
        {},
        {"compile_s": 1.5},
    )


def test_an_answer_round_trips_with_its_machine() -> None:
    outcome, env = decode_outcome(encode_outcome(_outcome(), {"hostname": "xeon-a", "cpu": {"model": "X"}}))
    expected = _outcome()
    assert outcome.cells == expected.cells and outcome.memory == expected.memory and outcome.notes == expected.notes
    np.testing.assert_array_equal(outcome.scores["batch 1, dynamic"], expected.scores["batch 1, dynamic"])
    assert env == {"hostname": "xeon-a", "cpu": {"model": "X"}}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda a: a.update(status="pwned"), "status"),
        (lambda a: a["cells"][0][1].update(count=True), r"cells\[0\]\.count"),
        (lambda a: a["cells"][0][1].update(passes=[["1"]]), "non-number"),
        (lambda a: a["scores"].update({"batch 1, dynamic": [[1.0], [1.0, 2.0]]}), "ragged|non-number|logits"),
        (lambda a: a.update(cells={"not": "a list"}), "cells of type dict"),
    ],
)
def test_a_malformed_answer_names_its_field(edit, message: str) -> None:
    answer = json.loads(encode_outcome(_outcome(), {}))
    edit(answer)
    with pytest.raises(FleetError, match=message):
        decode_outcome(json.dumps(answer))


def test_nan_in_an_answer_is_refused() -> None:
    text = encode_outcome(_outcome(), {}).replace("0.001", "NaN", 1)
    with pytest.raises(FleetError, match="not valid JSON|NaN"):
        decode_outcome(text)


def _modules_after(command: str) -> list[str]:
    code = (
        "import sys, contextlib, io\n"
        "from harness.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    main({command.split()!r})\n"
        "print(sorted(m for m in ('ray', 'torch', 'onnxruntime', 'openvino') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1].replace("'", '"'))


def test_validate_imports_no_runtime_and_list_no_ray() -> None:
    assert _modules_after("validate suites/smoke.yaml") == []
    # list asks the runtimes whether they can run here (CUDA, providers); Ray is never one of them
    assert "ray" not in _modules_after("list")


# --- the report's machines ----------------------------------------------------------------------


def _row(hardware: str | None, exporter: str, p50: float, env_cpu: str = "EPYC") -> dict:
    return {
        "model": "m",
        "exporter": exporter,
        "backend": "onnxruntime",
        "device": "cpu",
        "batch_size": 1,
        "seq_len": "dynamic",
        "status": "ok",
        "p50_ms": p50,
        "hardware": hardware,
        "run": {"run_id": "r", "baseline": "m/eager-fp32/onnxruntime", "env": {"cpu": env_cpu, "threads": 2}},
    }


def test_rows_name_their_machine_by_selector_and_local_rows_by_cpu() -> None:
    from harness.results.summary import rows_frame

    frame = rows_frame([_row("xeon-2c", "onnx-fp32", 2.0), _row(None, "onnx-fp32", 1.0)])
    assert list(frame["hardware"]) == ["xeon-2c", "EPYC (2 threads)"]


def test_across_machines_gives_each_machine_its_p50_and_the_ratio_to_the_first() -> None:
    from harness.results.machines import machines_section
    from harness.results.summary import rows_frame

    rows = [_row("a", "onnx-fp32", 2.0), _row("b", "onnx-fp32", 3.0), _row("a", "ort-int8", 1.0)]
    section = machines_section(rows_frame(rows))
    cells = [
        [c.strip() for c in line.strip("|").split("|")] for line in section.splitlines() if line.startswith("| cpu")
    ]
    assert cells[0][-3:] == ["2", "3", "1.5"]  # p50 on a, on b, and b / a
    assert cells[1][-3:] == ["1", "—", "—"]  # not run on b: a dash, not nan
    assert machines_section(rows_frame(rows[:1])) == ""


def _served(hardware: str, p90: float) -> dict:
    return {
        **{k: v for k, v in _row(hardware, "onnx-fp32", 0.0).items() if k not in ("p50_ms", "seq_len")},
        "seq_len": "dynamic",
        "scenario": "single-stream-inside",
        "scenario_type": "single-stream",
        "tokenize": "inside",
        "result": p90,
        "accuracy": 0.9,
    }


def test_each_machine_serves_in_its_own_part_beside_its_own_timed_cells() -> None:
    from harness.results.scenario_section import scenario_section, summary_rows

    cells = [{**_row(name, "onnx-fp32", 1.0), "input_ms": [[ms, ms]] * 10} for name, ms in (("b", 4.0), ("a", 2.0))]
    served = [_served("b", 5.0), _served("a", 3.0)]
    by_machine = {entry["single-stream"]: entry["timed_p90"] for entry in summary_rows(served, cells)}
    assert by_machine == {5.0: 4.0, 3.0: 2.0}  # each scenario beside its own machine's timed cell
    section = scenario_section(served, cells, {})
    assert section.index("### a · cpu") < section.index("### b · cpu")  # machines by name
    local = scenario_section([{**row, "hardware": None} for row in served[:1]], cells, {})
    assert "### cpu" in local and "·" not in local


def test_each_machine_resumes_only_its_own_scenario_cells(tmp_path: Path) -> None:
    """Scenario rows are keyed by machine: one machine's finished cells are not another's."""
    from harness.registry import backends, exporters
    from harness.results.rows import ResultsWriter
    from harness.results.scenario_rows import scenario_row
    from harness.run.exports import Ready
    from harness.run.plan import plan_cells
    from harness.serve.cells import ScenarioCells
    from harness.serve.execute import ScenarioOutcome

    raw = {**SMOKE, "devices": ["cpu"], "scenarios": [{"type": "single-stream", "min_duration_s": 0.3}]}
    suite = parse_suite(raw, "smoke.yaml", exporters(), backends())
    ready = [
        Ready(variant, None, None, None, {}, True) for variant in plan_cells(suite, exporters(), backends()).variants
    ]
    run = {"suite_hash": "h", "env_fingerprint": "same host"}
    results = tmp_path / "fleet.jsonl"

    def cells(machine: str) -> ScenarioCells:
        return ScenarioCells(suite, backends(), results, run, (), np.zeros(0), False, machine)

    first = ready[0].variant.names()
    outcome = ScenarioOutcome("n/a", "LoadGen is unavailable")
    row = scenario_row({**first, "hardware": "a"}, suite.scenarios[0], outcome, np.zeros(0), None, run)
    ResultsWriter(results).append(row)
    assert [item.variant.name for item, _ in cells("a").todo(ready)] == [item.variant.name for item in ready[1:]]
    assert len(cells("b").todo(ready)) == len(ready)  # the same host's other machine still has them all


class OneIdleNode:
    """The part of ``harness.fleet.dispatch.Fleet`` the scenario loop uses: one live, idle node."""

    def __init__(self) -> None:
        self.in_flight: dict = {}
        self.node = node("a")

    def nodes_of(self, hardware: str) -> list[Node]:
        return [self.node]

    def free(self, hardware: str) -> list[Node]:
        return [self.node]


def test_a_scenario_cell_that_cannot_ship_fails_alone_while_its_machine_lives(tmp_path: Path) -> None:
    """Each cell whose artifact is not in the cache is its own error row; none is blamed on a lost node."""
    from harness.adapters import Artifact
    from harness.fleet.runner import FleetRunner, Lane, cluster_config
    from harness.fleet.scenarios import FleetScenarios
    from harness.registry import backends, exporters
    from harness.results.rows import read_rows
    from harness.run.exports import Ready
    from harness.run.plan import plan_cells

    raw = {**SMOKE, "devices": ["cpu"], "scenarios": [{"type": "single-stream", "min_duration_s": 0.3}]}
    suite = parse_suite(raw, "smoke.yaml", exporters(), backends())
    results = tmp_path / "fleet.jsonl"
    runner = FleetRunner(suite, exporters(), backends(), results, "smoke.yaml", cluster=cluster_config(suite, "auto"))
    runner.fleet, runner.progress = OneIdleNode(), False
    runner.lanes = {"a": Lane("a", [node("a")], {}, {}, run_info={"suite_hash": "h", "env_fingerprint": "f"})}
    runner.lane_reason = lambda lane, names: None
    stray = Artifact(tmp_path / "not-in-the-cache", "onnx")
    variants = plan_cells(suite, exporters(), backends()).variants[:2]
    FleetScenarios(runner, [Ready(v, stray, None, None, {}, True) for v in variants], (), np.zeros(0)).run()
    rows = read_rows([results], scenarios=True)
    assert len(rows) == 2 and all(r["status"] == "error" for r in rows)
    assert all("cannot ship" in r["reason"] and "not in the artifact cache" in r["reason"] for r in rows), rows

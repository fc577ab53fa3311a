"""A fleet run on a real local Ray cluster of two simulated machines: nodes that differ by a custom
resource (and a label), started once for this module. The same tiny suite runs on both; the rows
must land in one file, each cell on its own machine's nodes, never two cells at once on a node.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness_testutil import REPO, TOY_ROWS, write_tsv

from harness.errors import HarnessError
from harness.registry import backends, exporters
from harness.results.rows import read_rows
from harness.suite import parse_suite

SLOT = "harness-slot"
# the tiny suite's two variants (one shape each) on both machines, by (hardware, exporter)
EVERY_CELL_ON_BOTH = [("alpha", "eager-fp32"), ("alpha", "onnx-fp32"), ("beta", "eager-fp32"), ("beta", "onnx-fp32")]
TIMING = {"rounds": 2, "seconds_per_cell": 0.02, "single_inputs": 6, "peak_gemm_size": 128}


def own_cache(folder: Path) -> dict[str, dict[str, str]]:
    """A node's own artifact cache, as on a host of its own (its processes get the variable)."""
    return {"env_vars": {"HARNESS_FLEET_CACHE": str(folder)}}


@pytest.fixture(scope="module")
def node_caches(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("node-caches")
    return {name: root / name for name in ("alpha", "beta", "alpha-two")}


@pytest.fixture(scope="module")
def cluster(node_caches):
    import ray  # a dependency: a missing Ray fails here rather than skipping the fleet's tests
    from ray.cluster_utils import Cluster

    alpha = {"num_cpus": 1, "resources": {SLOT: 1, "bench-a": 1}, "labels": {"machine": "alpha"}}
    machines = Cluster(initialize_head=True, head_node_args={**alpha, **own_cache(node_caches["alpha"])})
    machines.add_node(
        num_cpus=1, resources={SLOT: 1, "bench-b": 1}, labels={"machine": "beta"}, **own_cache(node_caches["beta"])
    )
    machines.wait_for_nodes()
    ray.init(address=machines.address, namespace="harness-tests", log_to_driver=False)
    yield machines
    ray.shutdown()
    machines.shutdown()


def fleet_suite(tmp_path: Path, cache_dir: Path, **changes: Any):
    write_tsv(tmp_path / "data" / "toy" / "validation.tsv", TOY_ROWS)
    raw = {
        "name": "fleet",
        "task": {"local": str(tmp_path / "data" / "toy"), "source": "local"},
        "models": [{"name": "tiny", "source": "builtin:tiny-bert"}],
        "exporters": ["eager-fp32", "onnx-fp32"],
        "backends": ["pytorch", "onnxruntime"],
        "devices": ["cpu"],
        "shapes": {"batch_sizes": [1], "seq_lens": ["dynamic"]},
        "threads": 1,
        "timing": TIMING,
        "hardware": [
            {"name": "alpha", "resources": {"bench-a": 1}},
            {"name": "beta", "labels": {"machine": "beta"}},
        ],
        "output": {"cache_dir": str(cache_dir)},
        **changes,
    }
    return parse_suite(raw, "fleet.yaml", exporters(), backends())


def fleet_runner(suite, results: Path, address: str, fresh: bool = False, kind: Any = None):
    """A fleet runner (of ``kind``, a FleetRunner by default) for ``suite``, not yet run."""
    from harness.fleet.runner import FleetRunner, cluster_config

    cluster = cluster_config(suite, address)
    return (kind or FleetRunner)(
        suite, exporters(), backends(), results, "fleet.yaml", progress=False, fresh=fresh, cluster=cluster
    )


def run_fleet(suite, results: Path, address: str, fresh: bool = False):
    runner = fleet_runner(suite, results, address, fresh)
    runner.run()
    return runner


@pytest.fixture(scope="module")
def first_run(cluster, tmp_path_factory, cache_dir):
    """One fleet run of the tiny suite (two rounds) that several tests read; a Ray run costs seconds."""
    work = tmp_path_factory.mktemp("fleet")
    suite = fleet_suite(work, cache_dir, devices=["cpu", "cuda"])  # CUDA: n/a on each node, for its reason
    runner = run_fleet(suite, work / "fleet.jsonl", cluster.address)
    return suite, runner, work / "fleet.jsonl"


def test_cells_run_on_their_own_machines_into_one_file(first_run) -> None:
    _, runner, results = first_run
    rows = [row for row in read_rows([results]) if row["device"] == "cpu"]
    assert sorted((r["hardware"], r["exporter"]) for r in rows) == EVERY_CELL_ON_BOTH
    assert all(r["status"] == "ok" for r in rows), [r["reason"] for r in rows]
    nodes = {lane.name: {node.short for node in lane.nodes} for lane in runner.lanes.values()}
    assert nodes["alpha"].isdisjoint(nodes["beta"])
    for row in rows:  # every round of every cell ran on a node of its own hardware
        assert {note["node"] for note in row["backend_notes"]} <= nodes[row["hardware"]], row["backend_notes"]
        assert row["run"]["hardware"] == row["hardware"] and row["run"]["machine_peak"]


def test_each_machine_says_why_it_cannot_run_a_cell(first_run) -> None:
    """No node here has CUDA: every CUDA cell is n/a on each machine with the reason its node gave,
    the same reason a local run on this host gives."""
    from harness.run.plan import local_reason

    _, runner, results = first_run
    cuda = [row for row in read_rows([results]) if row["device"] == "cuda"]
    assert sorted((r["hardware"], r["exporter"]) for r in cuda) == EVERY_CELL_ON_BOTH
    formats = {"eager-fp32": "transformers", "onnx-fp32": "onnx"}
    for row in cuda:
        here = local_reason(backends().get(row["backend"]), {}, formats[row["exporter"]], "cuda")
        assert row["status"] == "n/a" and "CUDA" in here and row["reason"] == here, row["reason"]
        assert row["run"]["hardware"] == row["hardware"]


def test_each_node_unpacks_the_artifacts_into_its_own_cache(first_run, node_caches, cache_dir) -> None:
    """The nodes' caches are separate folders, as on separate hosts: each received both variants'
    artifacts by content key, and each entry it holds is the driver's, checked by its content hash."""
    from harness.cache import COMPLETE_MARKER

    for name in ("alpha", "beta"):
        entries = sorted(marker.parent for marker in node_caches[name].glob(f"*/*/{COMPLETE_MARKER}"))
        assert len(entries) == 2, entries
        for entry in entries:
            driver = cache_dir / entry.parent.name / entry.name / COMPLETE_MARKER
            recorded = json.loads((entry / COMPLETE_MARKER).read_text(encoding="utf-8"))["content_hash"]
            assert recorded == json.loads(driver.read_text(encoding="utf-8"))["content_hash"]


def test_the_merged_report_pairs_within_each_machine_and_compares_across(first_run) -> None:
    from harness.results.report import render_report, report_frame

    frame = report_frame(read_rows([first_run[2]]))
    assert set(frame["hardware"]) == {"alpha", "beta"}
    baseline = frame[(frame["exporter"] == "eager-fp32") & (frame["device"] == "cpu")]
    assert len(baseline) == 2 and (baseline["speedup"] == 1.0).all()  # each machine's own baseline
    report = render_report(frame)
    assert "## Across machines" in report and "p50 (ms) alpha" in report and "beta / alpha" in report
    summary = report[report.index("## Summary") : report.index("## Runs")]
    assert summary.count("| alpha |") == 1 and summary.count("| beta |") == 1


def test_no_two_cells_share_a_node_at_once(first_run) -> None:
    by_node: dict[str, list[tuple[float, float]]] = {}
    for node, started, finished in first_run[1].timeline:
        by_node.setdefault(node, []).append((started, finished))
    assert len(by_node) == 2 and sum(len(spans) for spans in by_node.values()) == 2 * 2 * 2
    for spans in by_node.values():
        spans.sort()
        assert all(earlier[1] <= later[0] for earlier, later in zip(spans, spans[1:])), spans


def test_a_resumed_fleet_run_skips_finished_cells(first_run, cluster, tmp_path) -> None:
    suite, _, done = first_run
    results = tmp_path / "fleet.jsonl"
    lines = done.read_text(encoding="utf-8").splitlines()
    alpha = [line for line in lines if json.loads(line)["hardware"] == "alpha"]
    results.write_text("\n".join(alpha) + "\n")
    runner = run_fleet(suite, results, cluster.address)  # as if killed before beta's rows were written
    rows = read_rows([results])
    assert len(rows) == 8 and len(runner.timeline) == 2 * 2  # only beta's two variants ran, two rounds each
    assert len({r["run"]["run_id"] for r in rows}) == 1  # one run, resumed
    assert sorted((r["hardware"], r["device"], r["status"]) for r in rows).count(("beta", "cuda", "n/a")) == 2
    assert results.read_text().splitlines()[: len(alpha)] == alpha


def test_a_selector_that_matches_no_node_stops_the_run_before_it_starts(cluster, tmp_path, cache_dir) -> None:
    suite = fleet_suite(tmp_path, cache_dir, hardware=[{"name": "gpu", "resources": {"bench-gpu": 1}}])
    with pytest.raises(HarnessError, match="'gpu' matches no live node"):
        run_fleet(suite, tmp_path / "fleet.jsonl", cluster.address)
    assert not (tmp_path / "fleet.jsonl").exists()


def test_a_machine_without_a_runtime_leaves_its_cells_to_the_others(cluster, tmp_path, cache_dir) -> None:
    """Beta answers its probe as a host without onnxruntime would: the ONNX variant runs on alpha
    only, and beta's ONNX cells are n/a rows with beta's reason, while both machines run eager.
    Each machine then serves what it ran under a LoadGen scenario; the logs come back beside the
    results, and the report has a serving section per machine."""
    from harness.fleet.runner import FleetRunner
    from harness.results.report import render_report

    missing = "python package 'onnxruntime' is not installed"

    class BetaWithoutOnnxRuntime(FleetRunner):
        def _probe_lanes(self):
            lanes = super()._probe_lanes()
            verdicts = self.availability.lanes["beta"]
            for key in verdicts:
                if key[0] == "onnxruntime":
                    verdicts[key] = missing
            return lanes

    scenario = {"type": "single-stream", "min_duration_s": 0.3, "min_queries": 64}
    suite = fleet_suite(tmp_path, cache_dir, timing={**TIMING, "rounds": 1}, scenarios=[scenario])
    runner = fleet_runner(suite, tmp_path / "fleet.jsonl", cluster.address, kind=BetaWithoutOnnxRuntime)
    runner.run()
    rows = {(r["hardware"], r["exporter"]): r for r in read_rows([tmp_path / "fleet.jsonl"])}
    assert sorted(rows) == EVERY_CELL_ON_BOTH
    assert rows["beta", "onnx-fp32"]["status"] == "n/a" and rows["beta", "onnx-fp32"]["reason"] == missing
    assert all(rows[key]["status"] == "ok" for key in rows if key != ("beta", "onnx-fp32"))
    beta_nodes = {node.short for node in runner.lanes["beta"].nodes}
    assert len(runner.timeline) == 3 and sum(node in beta_nodes for node, _, _ in runner.timeline) == 1

    served = runner.scenario_rows_of_this_run(read_rows([tmp_path / "fleet.jsonl"], scenarios=True))
    assert sorted((r["hardware"], r["exporter"]) for r in served) == [
        ("alpha", "eager-fp32"),
        ("alpha", "onnx-fp32"),
        ("beta", "eager-fp32"),
    ]
    for row in served:
        assert row["status"] == "ok" and row["accuracy"] is not None, row["reason"]
        assert row["run"]["hardware"] == row["hardware"] and row["hardware"] in row["log_dir"]
        assert row["backend_notes"]["node"] in {node.short for node in runner.lanes[row["hardware"]].nodes}
        assert (Path(row["log_dir"]) / "accuracy" / "mlperf_log_accuracy.json").is_file()
    report = render_report(read_rows([tmp_path / "fleet.jsonl"]), scenarios=served)
    assert "### alpha · cpu" in report and "### beta · cpu" in report


def test_a_lost_node_hands_its_round_on_or_errors_naming_the_loss(cluster, node_caches, tmp_path, cache_dir) -> None:
    """A second node joins the first machine; then that node and the second machine's only node are
    removed while each runs a round. The first machine's round goes to its other node and its cells
    end ok; the second machine has no node left, so its cells are error rows that say the node was
    lost. (Runs last: the cluster has one node after it.)"""

    alpha_two = cluster.add_node(
        num_cpus=1,
        resources={SLOT: 1, "bench-a": 1},
        labels={"machine": "alpha"},
        **own_cache(node_caches["alpha-two"]),
    )
    cluster.wait_for_nodes()
    suite = fleet_suite(tmp_path, cache_dir, timing={**TIMING, "seconds_per_cell": 0.5})
    runner = fleet_runner(suite, tmp_path / "fleet.jsonl", cluster.address)
    beta = next(n for n in cluster.list_all_nodes() if n is not cluster.head_node and n is not alpha_two)
    doomed = {alpha_two.node_id: alpha_two, beta.node_id: beta}
    finished = threading.Event()

    def remove_each_mid_round() -> None:
        while doomed and not finished.is_set():
            in_flight = getattr(getattr(runner, "fleet", None), "in_flight", {})
            for _, node in list(in_flight.values()):
                if node.node_id in doomed:
                    cluster.remove_node(doomed.pop(node.node_id), allow_graceful=False)
            time.sleep(0.05)

    watcher = threading.Thread(target=remove_each_mid_round, daemon=True)
    watcher.start()
    try:
        runner.run()
    finally:
        finished.set()
    rows = read_rows([tmp_path / "fleet.jsonl"])
    alpha = [r for r in rows if r["hardware"] == "alpha"]
    lost = [r for r in rows if r["hardware"] == "beta"]
    assert not doomed, "a node never ran a round"
    assert [node for node, _, _ in runner.requeued if node.endswith(f"({alpha_two.node_id[:8]})")]
    assert alpha and all(r["status"] == "ok" for r in alpha), [r["reason"] for r in alpha]
    assert lost and all(r["status"] == "error" and "lost" in r["reason"] for r in lost), [r["reason"] for r in lost]


def test_the_fleet_suite_file_validates() -> None:
    raw = yaml.safe_load((REPO / "suites" / "smoke-fleet.yaml").read_text(encoding="utf-8"))
    suite = parse_suite(raw, "smoke-fleet.yaml", exporters(), backends())
    assert [h.name for h in suite.hardware] == ["machine-a", "machine-b"]

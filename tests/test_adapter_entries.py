"""Backends as suite entries (labels, typed options), exclusion rules, and option-dependent formats:
what the planner makes of them, with the real registries and without running anything."""

from __future__ import annotations

from typing import Any

import pytest

from harness.errors import SuiteError, SuiteErrors
from harness.measure.peak import native_bf16
from harness.registry import backends, exporters
from harness.run.plan import count_cells, plan_cells
from harness.suite import parse_suite

BASE: dict[str, Any] = {
    "name": "entries",
    "task": {"local": "toy"},
    "models": [{"name": "tiny", "source": "builtin:tiny-bert"}],
    "exporters": [
        "eager-fp32",
        "onnx-fp32",
        {"name": "ort-int8", "label": "ort-int8-fused", "options": {"optimize": True}},
    ],
    "backends": [
        "pytorch",
        "onnxruntime",
        "openvino",
        {"name": "openvino", "label": "ov-bf16", "options": {"precision": "bf16"}},
    ],
    "devices": ["cpu"],
    "shapes": {"batch_sizes": [1], "seq_lens": ["dynamic", 16]},
}


def parse(**changes: Any):
    return parse_suite({**BASE, **changes}, "entries.yaml", exporters(), backends())


def planned(suite) -> dict[tuple[str, str], str | None]:
    """(exporter, backend) -> None when it runs, else its n/a reason."""
    plan = plan_cells(suite, exporters(), backends())
    cells = {(v.exporter.display_name, v.backend.display_name): None for v in plan.variants}
    cells.update({(u.base["exporter"], u.base["backend"]): u.reason for u in plan.unavailable})
    return cells


def test_labelled_backend_is_its_own_variant_with_its_options() -> None:
    suite = parse()
    plan = plan_cells(suite, exporters(), backends())
    bf16 = [v for v in plan.variants if v.backend.display_name == "ov-bf16"]
    if native_bf16():
        assert [v.exporter.display_name for v in bf16] == ["onnx-fp32"]
        assert bf16[0].backend.name == "openvino" and bf16[0].backend.options == {"precision": "bf16"}
        assert bf16[0].name == "tiny/onnx-fp32/ov-bf16/cpu"
    else:  # the option itself cannot run here: an n/a row says why, not an error row
        assert "BF16" in planned(suite)[("onnx-fp32", "ov-bf16")]


def test_fused_ort_graph_goes_only_to_onnx_runtime() -> None:
    cells = planned(parse())
    assert ("ort-int8-fused", "onnxruntime") in cells
    assert ("ort-int8-fused", "openvino") not in cells and ("ort-int8-fused", "ov-bf16") not in cells
    assert ("onnx-fp32", "openvino") in cells and ("onnx-fp32", "onnxruntime") in cells
    assert ("eager-fp32", "pytorch") in cells and ("eager-fp32", "openvino") not in cells


def test_exclude_leaves_cells_out_and_the_count_agrees() -> None:
    full = parse()
    rules = [{"backend": "openvino", "exporter": "onnx-fp32"}, {"exporter": "ort-int8-fused", "device": "cpu"}]
    suite = parse(exclude=rules)
    cells = planned(suite)
    assert ("onnx-fp32", "openvino") not in cells and ("onnx-fp32", "onnxruntime") in cells
    assert not [key for key in cells if key[0] == "ort-int8-fused"]
    plan = plan_cells(suite, exporters(), backends())
    shapes = len(suite.shapes.batch_sizes) * len(suite.shapes.seq_lens)
    assert count_cells(suite, exporters(), backends())[0] == plan.total_cells
    assert count_cells(full, exporters(), backends())[0] - count_cells(suite, exporters(), backends())[0] == 2 * shapes
    assert count_cells(full, exporters(), backends())[1] - count_cells(suite, exporters(), backends())[1] == 2
    assert suite.content_hash() != full.content_hash()


def shapes_of(suite) -> dict[tuple[str, str], list[tuple[int, int | str]]]:
    plan = plan_cells(suite, exporters(), backends())
    return {
        (v.exporter.display_name, v.backend.display_name): [(s.batch_size, s.seq_len) for s in v.shapes]
        for v in plan.variants
    }


def test_a_rule_with_a_shape_leaves_out_only_that_shape() -> None:
    shapes = {"batch_sizes": [1, 4], "seq_lens": ["dynamic", 16]}
    full = parse(shapes=shapes)
    suite = parse(shapes=shapes, exclude=[{"batch_size": 1, "seq_len": 16}, {"backend": "pytorch", "batch_size": 4}])
    kept = shapes_of(suite)
    assert kept[("onnx-fp32", "onnxruntime")] == [(1, "dynamic"), (4, "dynamic"), (4, 16)]
    assert kept[("eager-fp32", "pytorch")] == [(1, "dynamic")]
    assert count_cells(suite, exporters(), backends())[0] == plan_cells(suite, exporters(), backends()).total_cells
    # every variant keeps a shape: the variant count (one serving cell each) is the full one
    assert count_cells(suite, exporters(), backends())[1] == count_cells(full, exporters(), backends())[1]
    plan = plan_cells(suite, exporters(), backends())
    assert all(not (u.base["batch_size"] == 1 and u.base["seq_len"] == 16) for u in plan.unavailable)


def test_only_with_a_shape_keeps_just_that_shape_of_the_matching_variants() -> None:
    suite = parse(
        shapes={"batch_sizes": [1, 4], "seq_lens": ["dynamic"]},
        only=[{"exporter": "onnx-fp32", "backend": "onnxruntime", "batch_size": 4}, {"exporter": "eager-fp32"}],
    )
    kept = shapes_of(suite)
    assert kept == {
        ("onnx-fp32", "onnxruntime"): [(4, "dynamic")],
        ("eager-fp32", "pytorch"): [(1, "dynamic"), (4, "dynamic")],
    }


def test_shape_keys_leave_older_suite_hashes_alone_and_are_validated() -> None:
    rules = [{"backend": "openvino"}]
    assert "batch_size" not in parse(exclude=rules).model_dump(mode="json")["exclude"][0]
    assert parse(exclude=rules).content_hash() != parse(exclude=[{"backend": "openvino", "seq_len": 16}]).content_hash()
    with pytest.raises((SuiteError, SuiteErrors), match=r"exclude"):
        parse(exclude=[{"seq_len": "fixed"}])
    with pytest.raises((SuiteError, SuiteErrors), match=r"exclude"):
        parse(exclude=[{"batch_size": 0}])


def test_an_empty_exclude_keeps_the_hash_of_a_suite_without_one() -> None:
    assert parse(exclude=[]).content_hash() == parse().content_hash()


@pytest.mark.parametrize(
    ("rules", "key_path", "fragment"),
    [
        ([{"backend": "openvno"}], "exclude[0].backend", "did you mean 'openvino'"),
        ([{"exporter": "ort-int8"}], "exclude[0].exporter", "unknown exporter 'ort-int8'"),
        ([{}], "exclude[0]", "needs at least one of model, exporter, backend, device"),
        ([{"exporter": "eager-fp32", "backend": "pytorch"}], "baseline", "excluded on every device"),
        # the baseline's model is the first model when the baseline names none
        ([{"model": "tiny", "backend": "pytorch"}], "baseline", "excluded on every device"),
    ],
)
def test_bad_exclude_rules_name_their_key(rules: list, key_path: str, fragment: str) -> None:
    with pytest.raises((SuiteError, SuiteErrors)) as raised:
        parse(exclude=rules)
    errors = raised.value.problems if isinstance(raised.value, SuiteErrors) else [raised.value]
    assert any(e.key_path == key_path and fragment in e.message for e in errors), [str(e) for e in errors]


def test_backend_options_are_checked_by_the_backend() -> None:
    bad = [*BASE["backends"][:3], {"name": "openvino", "label": "ov-x", "options": {"precision": "fp8"}}]
    with pytest.raises(SuiteError) as raised:
        parse(backends=bad)
    assert raised.value.key_path == "backends[3].options.precision"


def test_base_gemm_peak_measures_the_declared_runtime_for_older_backends() -> None:
    """A drop-in that declares ``runtime = "onnxruntime"`` without a ``gemm_peak`` of its own still
    gets ONNX Runtime's peak, as before backends measured their own."""
    from harness.adapters import Backend

    class OldStyle(Backend):
        name, formats, runtime = "old-style", frozenset({"onnx"}), "onnxruntime"

        def load(self, artifact, device, threads):  # the three-argument contract
            raise NotImplementedError

    found = OldStyle().gemm_peak(1, 64, 1)
    assert set(found) == {"fp32", "int8"} and all(seconds > 0 for seconds, _ in found.values())

    class Unknown(OldStyle):
        runtime = "tensorrt"

    assert Unknown().gemm_peak(1, 64, 1) == {}

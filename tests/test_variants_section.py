"""The report's ``Variants`` section: packages, options and per-round session notes, from rows alone."""

from __future__ import annotations

import pandas as pd

from harness.results.variants import describe_notes, describe_options, describe_versions, variants_section


def test_notes_show_a_value_once_when_rounds_agree_and_per_round_when_not() -> None:
    notes = [
        {"round": 1, "compile_s": 12.04, "recompiles": 2, "dynamic": "marked"},
        {"round": 2, "compile_s": 3.1, "recompiles": 2, "dynamic": "marked"},
    ]
    assert describe_notes(notes) == "compile_s 12.04 / 3.1, recompiles 2, dynamic marked"
    assert describe_notes([]) == "—"


def test_options_and_versions() -> None:
    options = {"exporter": {}, "backend": {"precision": "f32", "static_shapes": False}}
    assert describe_options(options) == "backend: precision=f32, static_shapes=False"
    assert describe_options({"exporter": {}, "backend": {}}) == "—"
    assert describe_versions({"openvino": "2026.4.1", "nncf": "3.4.0"}) == "openvino 2026.4.1, nncf 3.4.0"
    assert describe_versions(None) == "—"


def test_section_has_one_line_per_variant_and_skips_rows_without_provenance() -> None:
    row = {"model": "m", "exporter": "onnx-fp32", "backend": "openvino", "device": "cpu"}
    rows = [
        {
            **row,
            "versions": {"openvino": "1.0"},
            "adapter_options": {"exporter": {}, "backend": {"num_streams": 1}},
            "backend_notes": [{"round": 1, "inference_precision": "f32"}],
        },
        {
            **row,
            "versions": {"openvino": "1.0"},
            "adapter_options": {"exporter": {}, "backend": {"num_streams": 1}},
            "backend_notes": [{"round": 1, "inference_precision": "f32"}],
        },
        {**row, "backend": "old-row-without-fields", "versions": None, "adapter_options": None, "backend_notes": None},
    ]
    section = variants_section(pd.DataFrame(rows))
    lines = section.splitlines()
    assert lines[0] == "## Variants"
    assert lines[4:] == [
        "| m / onnx-fp32 / openvino / cpu | openvino 1.0 | backend: num_streams=1 | inference_precision f32 |"
    ]
    assert variants_section(pd.DataFrame([rows[2]])) == ""

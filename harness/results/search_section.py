"""The report's Search section: per searched model, the study's trials, best options and history.

Pure over the rows: a searched model's lineage carries its study (``lineage["search"]``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import one_line

CAPTION_PREFIX = "search history: "
NOTE = (
    "Every trial is scored on whole sentences held out of the train split (`task.validation_sentences`); "
    "the eval split scores only the model the study chose, in the tables above and below."
)


def searched_models(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Model name -> its study (best params, best value, trials), for the models built by a search."""
    if "lineage" not in frame:
        return {}
    found = {}
    for model, lineage in zip(frame["model"], frame["lineage"]):
        study = lineage.get("search") if isinstance(lineage, Mapping) else None
        if isinstance(study, Mapping) and model not in found:
            found[str(model)] = dict(study)
    return found


def history_figures(frame: pd.DataFrame, out_dir: Path, stem: str) -> dict[str, str]:
    """One optimization-history PNG per searched model; caption -> file name."""
    from harness.compress.search_report import history_png

    figures = {}
    for index, (model, study) in enumerate(searched_models(frame).items()):
        name = f"{stem}-search-{index}.png"
        history_png(study.get("trials", []), out_dir / name, f"{one_line(model, 60)}: search history")
        figures[CAPTION_PREFIX + one_line(model, 60)] = name
    return figures


def _rounded(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in params.items()}


def search_section(frame: pd.DataFrame, figures: Mapping[str, str]) -> str:
    from harness.compress.search_report import trials_table

    studies = searched_models(frame)
    if not studies:
        return ""
    parts = ["## Search", NOTE]
    for model, study in studies.items():
        trials = study.get("trials", [])
        done = sum(t.get("state") in ("COMPLETE", "PRUNED") for t in trials)
        best = json.dumps(_rounded(study.get("best_params", {})), sort_keys=True)
        value = study.get("best_value")
        shown = f"{value * 100:.2f}%" if isinstance(value, int | float) else "—"
        parts.append(f"### {one_line(model, 60)}")
        parts.append(
            f"{done} trials finished ({study.get('resumed_trials', 0)} found in the study when this run began). "
            f"Best validation accuracy {shown} with `{one_line(best, 400)}`."
        )
        parts.append(trials_table(trials))
        caption = CAPTION_PREFIX + one_line(model, 60)
        if caption in figures:
            parts.append(f"![{caption}]({figures[caption]})")
    return "\n\n".join(parts)

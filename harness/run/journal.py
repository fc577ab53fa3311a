"""What each variant measured in each round, appended as it finishes.

Rows are written only when a variant's last round ends, so without this an interrupted run would
lose every earlier round. The journal keeps them: a resumed run replays the rounds it finds for
the same suite and environment and runs only the rest. It is removed when the run completes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from harness.measure.execute import CellTimes, VariantOutcome


class RoundJournal:
    def __init__(self, path: Path, suite_hash: str, env_fingerprint: str) -> None:
        self.path = Path(path)
        self.identity = {"suite_hash": suite_hash, "env_fingerprint": env_fingerprint}

    def load(self) -> dict[tuple[str, int], tuple[VariantOutcome, float]]:
        """Finished (variant, round) outcomes of this suite on this environment; a torn line is skipped."""
        found: dict[tuple[str, int], tuple[VariantOutcome, float]] = {}
        if not self.path.is_file():
            return found
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            # a failed round is not replayed: the resumed run tries that variant again
            mine = isinstance(record, dict) and all(record.get(k) == v for k, v in self.identity.items())
            if mine and record.get("status") == "ok":
                found[(record["variant"], int(record["round"]))] = (_outcome(record), float(record["load_avg"]))
        return found

    def append(self, variant: str, round_index: int, outcome: VariantOutcome, load_avg: float) -> None:
        record = {**self.identity, "variant": variant, "round": round_index, "load_avg": load_avg}
        record.update(
            status=outcome.status,
            reason=outcome.reason,
            memory=dict(outcome.memory),
            scores={label: np.asarray(v).tolist() for label, v in outcome.scores.items()},
            score_errors=dict(outcome.score_errors),
            cells=[{"cell": list(cell), **times_record(t)} for cell, t in outcome.cells.items()],
            notes=dict(outcome.notes),
        )
        _cut_torn_tail(self.path)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _cut_torn_tail(path: Path) -> None:
    """A writer killed mid-line leaves a partial last line; cut it so the next record starts clean."""
    if path.is_file() and path.stat().st_size:
        data = path.read_bytes()
        if not data.endswith(b"\n"):
            with path.open("r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)


def times_record(times: CellTimes) -> dict[str, Any]:
    """A cell's times as JSON-able data (the journal's records and a fleet worker's answers)."""
    return {
        "passes": [list(p) for p in times.passes],
        "count": times.count,
        "error": times.error,
        "peak": times.peak_rss_mb,
    }


def _outcome(record: dict[str, Any]) -> VariantOutcome:
    cells = {
        tuple(c["cell"]): CellTimes(tuple(tuple(p) for p in c["passes"]), int(c["count"]), c["error"], c.get("peak"))
        for c in record["cells"]
    }
    scores = {label: np.asarray(v, dtype=np.float32) for label, v in record["scores"].items()}
    errors = record.get("score_errors", {})
    notes = record.get("notes", {})
    return VariantOutcome(record["status"], record["reason"], cells, scores, record["memory"], {}, errors, notes)

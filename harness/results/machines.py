"""The same variant on every machine of a report: p50 per machine, and each machine's time relative
to the first one's. Speedups within a machine stay in the per-device tables; this table is the only
place two machines' timings meet, and it says so."""

from __future__ import annotations

import pandas as pd

CELL = ["device", "batch_size", "seq_len", "model", "exporter", "backend"]
HEADERS = {"device": "device", "batch_size": "batch", "seq_len": "seq len"}


def machines_section(frame: pd.DataFrame) -> str:
    """Empty unless the ok rows come from two machines or more."""
    ok = frame[frame["status"] == "ok"]
    machines = sorted(set(ok["hardware"]))  # by name: the file order of rows depends on which finished first
    if len(machines) < 2:
        return ""
    table = ok.drop_duplicates(subset=[*CELL, "hardware"], keep="last").pivot(
        index=CELL, columns="hardware", values="p50_ms"
    )
    table = table.reindex(columns=machines)
    first = machines[0]
    out = pd.DataFrame(index=table.index)
    for machine in machines:
        out[f"p50 (ms) {machine}"] = table[machine]
    for machine in machines[1:]:
        out[f"{machine} / {first}"] = table[machine] / table[first]
    out = out.reset_index().rename(columns=HEADERS)
    out = out.astype(object).where(out.notna(), None)  # a cell one machine did not run: a dash, not nan
    note = (
        f"p50 of the same cell on each machine, and its ratio to {first}'s (below 1: faster there). "
        "Each machine ran its own interleaved rounds, so these are unpaired: a ratio within a few percent of 1 "
        "is within the machines' own drift."
    )
    return "## Across machines\n\n" + out.to_markdown(index=False, floatfmt=".4g", missingval="—") + "\n\n" + note

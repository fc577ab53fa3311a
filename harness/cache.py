"""Content-keyed artifact cache with atomic publication.

An entry is built in a temporary sibling directory and renamed into place only when complete,
so a killed build never leaves a directory that a later run would trust.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

COMPLETE_MARKER = ".complete.json"
log = logging.getLogger("harness")


def fingerprint_dir(path: Path) -> str:
    """Hash of every file's relative name and bytes, so equal content gives equal keys."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and p.name != COMPLETE_MARKER):
        digest.update(str(file.relative_to(path)).encode())
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def dir_size_mb(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 2**20
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and p.name != COMPLETE_MARKER) / 2**20


class ArtifactCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._verified: set[Path] = set()

    @staticmethod
    def key(*parts: Any) -> str:
        blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def lookup(self, kind: str, key: str) -> Path | None:
        """The entry if it is complete and its files still hash to what was recorded; a damaged
        entry is removed (and so rebuilt) rather than trusted."""
        final = self.path(kind, key)
        marker = final / COMPLETE_MARKER
        if not marker.is_file():
            return None
        if final in self._verified:
            return final
        try:
            recorded = json.loads(marker.read_text(encoding="utf-8")).get("content_hash")
        except (OSError, json.JSONDecodeError):
            recorded = None
        if recorded is None or recorded != fingerprint_dir(final):
            log.warning("cache entry %s is damaged (content does not match its hash); rebuilding it", final)
            shutil.rmtree(final, ignore_errors=True)
            return None
        self._verified.add(final)
        return final

    def get_or_build(
        self, kind: str, key: str, build: Callable[[Path], Any], metadata: dict[str, Any] | None = None
    ) -> Path:
        """Return the cached entry, building it first if absent; ``build`` fills an empty directory."""
        found = self.lookup(kind, key)
        if found is not None:
            return found
        final = self.path(kind, key)
        staging = final.with_name(f".{key}.tmp-{os.getpid()}-{time.monotonic_ns()}")
        staging.mkdir(parents=True)
        try:
            build(staging)
            record = {"key": key, "created": time.time(), "content_hash": fingerprint_dir(staging), **(metadata or {})}
            (staging / COMPLETE_MARKER).write_text(json.dumps(record, default=str), encoding="utf-8")
            if final.exists():  # an incomplete leftover from an interrupted build
                shutil.rmtree(final)
            os.replace(staging, final)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return final

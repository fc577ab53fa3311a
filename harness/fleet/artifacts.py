"""Artifacts travel to workers by content key: the driver packs a cache entry once, a worker unpacks
it into its own cache under the same key and checks the files' hash against the driver's record,
as the cache checks any entry it reads. A worker that has the entry already reuses it.

Packing is a plain tar with no links or special files, and unpacking refuses any member that would
land outside its folder, so an artifact cannot write anywhere else on a worker.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from harness.adapters import Artifact
from harness.cache import COMPLETE_MARKER, ArtifactCache, fingerprint_dir
from harness.fleet.nodes import FleetError

# the largest artifact the default suite ships is under 100 MB; a packed entry above this is refused
MAX_PACKED_BYTES = 4 * 2**30


@dataclass(frozen=True)
class ArtifactRef:
    """Where an artifact lives inside a cache entry, and what that entry's files hash to."""

    kind: str
    key: str
    inner: str  # the artifact's path inside the entry ("" for the entry itself)
    content_hash: str
    format: str
    metadata_json: str  # the artifact's metadata, as JSON text

    def artifact(self, entry: Path) -> Artifact:
        return Artifact(entry / self.inner if self.inner else entry, self.format, json.loads(self.metadata_json))


def reference(artifact: Artifact, cache: ArtifactCache) -> ArtifactRef:
    """The cache entry holding ``artifact``: only what the cache published can be shipped."""
    path = artifact.path.resolve()
    root = cache.root.resolve()
    try:
        kind, key, *rest = path.relative_to(root).parts
    except ValueError:
        raise FleetError(
            f"{artifact.path} is not in the artifact cache {cache.root}, so it cannot be shipped"
        ) from None
    entry = cache.lookup(kind, key)
    if entry is None:
        raise FleetError(f"cache entry {kind}/{key} is missing or damaged; it cannot be shipped")
    recorded = json.loads((entry / COMPLETE_MARKER).read_text(encoding="utf-8"))["content_hash"]
    metadata = json.dumps(dict(artifact.metadata), sort_keys=True, default=str)
    return ArtifactRef(kind, key, "/".join(rest), recorded, artifact.format, metadata)


def pack(entry: Path) -> bytes:
    """The entry's regular files (its completion record left out) as an uncompressed tar."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for file in sorted(p for p in entry.rglob("*") if p.is_file() and not p.is_symlink()):
            if file.name == COMPLETE_MARKER:
                continue
            info = archive.gettarinfo(str(file), arcname=str(file.relative_to(entry)))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            with file.open("rb") as handle:
                archive.addfile(info, handle)
    if buffer.tell() > MAX_PACKED_BYTES:
        raise FleetError(
            f"{entry} packs to {buffer.tell() / 2**30:.1f} GiB, over the {MAX_PACKED_BYTES / 2**30:.0f} GiB limit"
        )
    return buffer.getvalue()


def cached(ref: ArtifactRef, cache: ArtifactCache) -> Artifact | None:
    """The artifact if this machine's cache holds its entry intact, with the driver's content."""
    entry = cache.lookup(ref.kind, ref.key)
    if entry is not None and _recorded_hash(entry) == ref.content_hash:
        return ref.artifact(entry)
    return None


def unpack(blob: bytes, ref: ArtifactRef, cache: ArtifactCache) -> Artifact:
    """The artifact in this machine's cache: reused when its entry is there and intact, else
    unpacked into a staging folder and published only if its files hash to ``ref.content_hash``."""
    if len(blob) > MAX_PACKED_BYTES:
        raise FleetError(f"artifact {ref.kind}/{ref.key} is over the {MAX_PACKED_BYTES / 2**30:.0f} GiB limit")
    found = cached(ref, cache)
    if found is not None:
        return found
    entry = cache.lookup(ref.kind, ref.key)

    def extract(out: Path) -> None:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:") as archive:
            for member in archive.getmembers():
                _check_member(member, ref.key)
            archive.extractall(out, filter="data")  # the standard library's own guard, as well
        found = fingerprint_dir(out)
        if found != ref.content_hash:
            raise FleetError(
                f"artifact {ref.kind}/{ref.key} arrived with other content than the driver's (hash {found[:12]})"
            )

    if entry is not None:  # intact but other content under the same key: not this run's artifact
        shutil.rmtree(entry, ignore_errors=True)
    return ref.artifact(cache.get_or_build(ref.kind, ref.key, extract, {"shipped": True}))


def _check_member(member: tarfile.TarInfo, key: str) -> None:
    if not member.isfile():
        raise FleetError(f"artifact {key}: member {member.name!r} is not a regular file")
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts:
        raise FleetError(f"artifact {key}: member {member.name!r} would land outside its folder")


def _recorded_hash(entry: Path) -> str | None:
    try:
        return json.loads((entry / COMPLETE_MARKER).read_text(encoding="utf-8")).get("content_hash")
    except (OSError, json.JSONDecodeError):
        return None

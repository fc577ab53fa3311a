"""ArtifactCache: build once, reuse, and never publish (or leave) a failed build."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cache import COMPLETE_MARKER, ArtifactCache, fingerprint_dir


def test_builds_once_and_reuses(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "c")
    calls: list[Path] = []

    def build(out: Path) -> None:
        calls.append(out)
        assert out.is_dir() and not any(out.iterdir())  # an empty staging directory
        (out / "weights.bin").write_bytes(b"abc")

    key = cache.key("exporter", {"a": 1})
    assert cache.lookup("exports", key) is None
    first = cache.get_or_build("exports", key, build, {"label": "x"})
    second = cache.get_or_build("exports", key, lambda out: pytest.fail("rebuilt a cached entry"))
    assert len(calls) == 1
    assert first == second == tmp_path / "c" / "exports" / key
    assert calls[0] != first  # built elsewhere, renamed into place
    assert (first / "weights.bin").read_bytes() == b"abc"
    assert (first / COMPLETE_MARKER).is_file()
    assert cache.lookup("exports", key) == first
    assert sorted(p.name for p in (tmp_path / "c" / "exports").iterdir()) == [key]


def test_failed_build_leaves_nothing(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "c")

    def build(out: Path) -> None:
        (out / "half.bin").write_bytes(b"x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        cache.get_or_build("exports", "k1", build)
    assert not (tmp_path / "c" / "exports" / "k1").exists()
    assert list((tmp_path / "c" / "exports").iterdir()) == []  # no temp dir either
    assert cache.lookup("exports", "k1") is None
    # a later successful build works
    path = cache.get_or_build("exports", "k1", lambda out: (out / "ok").write_text("1"))
    assert (path / "ok").read_text() == "1"


def test_incomplete_leftover_is_rebuilt(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "c")
    leftover = cache.path("exports", "k2")
    leftover.mkdir(parents=True)
    (leftover / "stale.bin").write_text("stale")  # no completion marker: never trusted
    path = cache.get_or_build("exports", "k2", lambda out: (out / "fresh.bin").write_text("fresh"))
    assert sorted(p.name for p in path.iterdir()) == [COMPLETE_MARKER, "fresh.bin"]


def test_key_is_order_independent_for_mappings() -> None:
    assert ArtifactCache.key("e", {"a": 1, "b": 2}) == ArtifactCache.key("e", {"b": 2, "a": 1})
    assert ArtifactCache.key("e", {"a": 1}) != ArtifactCache.key("e", {"a": 2})
    assert len(ArtifactCache.key("x")) == 20


def test_fingerprint_depends_on_content_not_marker(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        (d / "w.bin").write_bytes(b"same")
    (b / COMPLETE_MARKER).write_text("{}")
    assert fingerprint_dir(a) == fingerprint_dir(b)
    (b / "w.bin").write_bytes(b"diff")
    assert fingerprint_dir(a) != fingerprint_dir(b)

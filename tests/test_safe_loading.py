"""Safe loading, checked over the harness's own code: nothing a suite or a results file names is
ever executed, and weights load without unpickling code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from harness_testutil import REPO

SOURCES = sorted(p for folder in ("harness", "exporters", "backends") for p in (REPO / folder).rglob("*.py"))


def _calls(path: Path) -> list[ast.Call]:
    return [node for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(node, ast.Call)]


def _name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute):
        return f"{getattr(func.value, 'id', getattr(func.value, 'attr', '?'))}.{func.attr}"
    return getattr(func, "id", "?")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_code_execution_from_inputs(path: Path) -> None:
    for call in _calls(path):
        name = _name(call)
        assert name not in ("eval", "exec", "yaml.load", "pickle.load", "pickle.loads"), f"{path}: {name}"
        keywords = {k.arg: k.value for k in call.keywords}
        assert "trust_remote_code" not in keywords, f"{path}:{call.lineno}: trust_remote_code"
        if name == "torch.load":
            flag = keywords.get("weights_only")
            assert isinstance(flag, ast.Constant) and flag.value is True, f"{path}:{call.lineno}"


def test_the_check_sees_the_loaders() -> None:
    """Guards the test above: it must actually find the INT8 loader and the YAML reader."""
    names = {_name(call) for path in SOURCES for call in _calls(path)}
    assert "torch.load" in names


def test_suites_are_read_with_a_safe_loader() -> None:
    """The suite reader builds plain data only: its loader is a ``yaml.SafeLoader``, and no module
    names a loader that constructs Python objects."""
    import yaml

    from harness.suite_yaml import _BoundedLoader

    assert issubclass(_BoundedLoader, yaml.SafeLoader)
    unsafe = {"Loader", "UnsafeLoader", "FullLoader", "unsafe_load", "full_load", "load", "load_all"}
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "yaml":
                assert not {alias.name for alias in node.names} & unsafe, f"{path}:{node.lineno}"
            if isinstance(node, ast.Attribute) and getattr(node.value, "id", None) == "yaml":
                assert node.attr not in unsafe, f"{path}:{node.lineno}: yaml.{node.attr}"
            if isinstance(node, ast.keyword) and node.arg == "Loader":
                assert getattr(node.value, "id", getattr(node.value, "attr", "")) in ("SafeLoader", "CSafeLoader")

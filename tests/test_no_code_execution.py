"""Nothing in the working directory or named by a suite is executed.

Marker-writing modules are planted under every name the harness looks up (its adapter packages,
the libraries it imports, the ``package:`` model it is given) in the working directory and in an
installed-looking distribution; ``validate`` and ``list`` must finish without any marker appearing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from harness_testutil import REPO, cli_env

# the adapter packages, the helpers' namespace, and libraries the CLI imports on the way
PLANTED = ["backends", "exporters", "harness_plugins", "yaml", "pydantic", "numpy", "tqdm", "packaging"]
MARKER = "import pathlib\npathlib.Path({path!r}).write_text('ran')\n"


def _plant_module(folder: Path, name: str, markers: Path, as_package: bool) -> None:
    code = MARKER.format(path=str(markers / name))
    if as_package:
        (folder / name).mkdir(parents=True)
        (folder / name / "__init__.py").write_text(code, encoding="utf-8")
        (folder / name / "onnxruntime.py").write_text(code, encoding="utf-8")
    else:
        (folder / f"{name}.py").write_text(code, encoding="utf-8")


def _fake_distribution(site: Path, model_dir: Path, markers: Path) -> None:
    """``evilpkg`` 1.0 as pip would install it, whose import writes a marker and which ships a model."""
    package = site / "evilpkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(MARKER.format(path=str(markers / "evilpkg")), encoding="utf-8")
    shutil.copytree(model_dir, package / "weights")
    info = site / "evilpkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: evilpkg\nVersion: 1.0\n", encoding="utf-8")
    (info / "top_level.txt").write_text("evilpkg\n", encoding="utf-8")
    (info / "RECORD").write_text("evilpkg/__init__.py,,\n", encoding="utf-8")


def _suite(tmp_path: Path, source: str) -> Path:
    raw = yaml.safe_load((REPO / "suites" / "smoke.yaml").read_text(encoding="utf-8"))
    raw["task"] = {"local": "toy", "source": "local"}
    raw["models"][0]["source"] = source
    raw["devices"] = ["cpu"]
    raw["output"] = {"dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache")}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def _harness(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=cwd,
        env=cli_env(**env),
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.mark.parametrize("as_package", [False, True], ids=["modules", "packages"])
def test_nothing_planted_in_the_working_directory_runs(as_package, tmp_path, tiny_model_dir, toy_data_root) -> None:
    cwd, markers, site = tmp_path / "cwd", tmp_path / "markers", tmp_path / "site"
    for folder in (cwd, markers, site):
        folder.mkdir()
    for name in PLANTED:
        _plant_module(cwd, name, markers, as_package)
    _fake_distribution(site, tiny_model_dir, markers)
    suite = _suite(tmp_path, "package:evilpkg.weights")
    env = {"PYTHONPATH": str(site), "HARNESS_DATA_PATH": str(toy_data_root)}

    checked = _harness(cwd, "validate", str(suite), **env)
    listed = _harness(cwd, "list", **env)

    assert sorted(p.name for p in markers.iterdir()) == [], "planted code ran"
    # the commands really ran to the end, past every lookup: the package's model was found without importing it
    assert checked.returncode == 0, checked.stderr
    assert f"{suite}: ok" in checked.stdout
    assert listed.returncode == 0 and "onnxruntime" in listed.stdout, listed.stderr


def test_the_planted_package_would_run_if_imported(tmp_path, tiny_model_dir) -> None:
    """Guards the test above: the fake distribution is real enough that importing it writes its marker."""
    markers, site = tmp_path / "markers", tmp_path / "site"
    markers.mkdir()
    _fake_distribution(site, tiny_model_dir, markers)
    proc = subprocess.run(
        [sys.executable, "-c", "import importlib.metadata as m; import evilpkg; print(m.version('evilpkg'))"],
        env=cli_env(PYTHONPATH=str(site)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.stdout.strip() == "1.0", proc.stderr
    assert (markers / "evilpkg").read_text() == "ran"


def test_a_package_source_that_is_not_installed_is_one_line(tmp_path, toy_data_root) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    _plant_module(tmp_path, "notinstalled", markers, as_package=True)  # importable from the cwd, not installed
    suite = _suite(tmp_path, "package:notinstalled")
    proc = _harness(tmp_path, "validate", str(suite), HARNESS_DATA_PATH=str(toy_data_root))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {suite}: models[0].source: python package 'notinstalled' is not installed (pip install it)"
    ]
    assert list(markers.iterdir()) == []


def test_an_editable_install_is_found_by_its_finder_not_by_import() -> None:
    """The harness itself is installed editable here (as README says): its folders are found through
    the import system's finders, which locate a top-level package without running it."""
    from harness.models.sources import package_files_dir

    assert package_files_dir("backends") == REPO / "backends"
    assert package_files_dir("harness.results") == REPO / "harness" / "results"
    assert package_files_dir("harness.no_such_folder") is None
    assert package_files_dir("not a name") is None

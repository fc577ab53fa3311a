"""A small generic registry of drop-in adapter modules.

Every ``*.py`` file in an adapter folder defines one module-level object under a known attribute
(``BACKEND`` or ``EXPORTER``). Discovery imports the files; that single assignment is the only
registration an adapter needs. A module that fails to import is kept as an unavailable entry, so a
broken or half-installed adapter never takes the whole harness down.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import pkgutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Generic, TypeVar

T = TypeVar("T")

PLUGIN_PATH_VARIABLE = "HARNESS_PLUGIN_PATH"


class UnknownNameError(KeyError):
    """A name that is not registered; the message suggests the closest one."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.suggestion = closest(name, known)
        hint = f" (did you mean '{self.suggestion}'?)" if self.suggestion else ""
        super().__init__(f"unknown {kind} '{name}'{hint}")

    def __str__(self) -> str:
        return self.args[0]


def closest(name: str, known: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    return matches[0] if matches else None


@dataclass(frozen=True)
class BrokenAdapter:
    """Placeholder for a module that could not be imported."""

    name: str
    reason: str


class Registry(Generic[T]):
    """Adapters of one kind, discovered from a package and any extra folders."""

    def __init__(self, kind: str, attribute: str, package: str, extra_dirs: Iterable[Path] = ()) -> None:
        self.kind = kind
        self.attribute = attribute
        self.package = package
        self.extra_dirs = [Path(d) for d in extra_dirs]
        self._entries: dict[str, T | BrokenAdapter] | None = None

    def names(self) -> list[str]:
        return sorted(self._load())

    def entries(self) -> dict[str, T | BrokenAdapter]:
        return dict(sorted(self._load().items()))

    def get(self, name: str) -> T:
        entries = self._load()
        if name not in entries:
            raise UnknownNameError(self.kind, name, entries)
        entry = entries[name]
        if isinstance(entry, BrokenAdapter):
            raise RuntimeError(f"{self.kind} '{name}' is unavailable: {entry.reason}")
        return entry

    def _load(self) -> dict[str, T | BrokenAdapter]:
        if self._entries is None:
            self._entries = {}
            for module_name, loader in self._module_loaders():
                self._add(module_name, loader)
        return self._entries

    def _module_loaders(self) -> list[tuple[str, object]]:
        loaders: list[tuple[str, object]] = []
        package = installed_package(self.package)
        for info in pkgutil.iter_modules(package.__path__):
            if not info.name.startswith("_"):
                loaders.append((info.name, lambda n=info.name: importlib.import_module(f"{self.package}.{n}")))
        for folder in self.extra_dirs:
            for path in sorted(folder.glob("*.py")):
                if not path.name.startswith("_"):
                    loaders.append((path.stem, lambda p=path: _import_file(p, f"harness_plugins.{self.package}")))
        return loaders

    def _add(self, module_name: str, loader: object) -> None:
        try:
            module = loader()  # type: ignore[operator]
        except Exception as error:  # any import failure must only disable this one adapter
            self._entries[module_name] = BrokenAdapter(module_name, f"import failed: {error}")
            return
        adapter = getattr(module, self.attribute, None)
        if adapter is None:
            return  # helper modules without an adapter are allowed in the folder
        if callable(getattr(adapter, "code_version", None)):
            adapter.code_version()  # snapshot the version of the code just imported
        self._entries[adapter.name] = adapter


def installed_package(name: str) -> ModuleType:
    """The adapter package ``name`` that ships beside ``harness``, loaded by path.

    A plain import would search sys.path, where a ``backends.py`` in the working directory (or any
    folder put first) shadows the real package and runs. Pinning the package by path makes every
    ``import backends.x`` resolve inside the installed folder.
    """
    folder = Path(__file__).resolve().parent.parent / name
    loaded = sys.modules.get(name)
    if loaded is not None and [str(Path(p).resolve()) for p in getattr(loaded, "__path__", [])] == [str(folder)]:
        return loaded
    init = folder / "__init__.py"
    if not init.is_file():  # another package layout: fall back to the import system
        return importlib.import_module(name)
    return _load_module(name, init, package_folder=folder)


def _import_file(path: Path, namespace: str) -> ModuleType:
    return _load_module(f"{namespace}.{path.stem}", path)


def _load_module(name: str, path: Path, package_folder: Path | None = None) -> ModuleType:
    """Run ``path`` as the module ``name`` (a package when ``package_folder`` is given), by path."""
    search = [str(package_folder)] if package_folder is not None else None
    spec = importlib.util.spec_from_file_location(name, path, submodule_search_locations=search)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def plugin_dirs(kind_folder: str) -> list[Path]:
    """Extra adapter folders: ``<dir>/<kind_folder>`` for each dir in $HARNESS_PLUGIN_PATH."""
    raw = os.environ.get(PLUGIN_PATH_VARIABLE, "")
    return [Path(p) / kind_folder for p in raw.split(os.pathsep) if p and (Path(p) / kind_folder).is_dir()]


def backends() -> Registry:
    return Registry("backend", "BACKEND", "backends", plugin_dirs("backends"))


def exporters() -> Registry:
    return Registry("exporter", "EXPORTER", "exporters", plugin_dirs("exporters"))

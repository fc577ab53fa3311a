"""Resolve a suite's model source to a local Hugging Face model directory.

Sources: a local directory, ``package:<module>`` (a model shipped inside an installed Python
package), ``builtin:tiny-bert`` (created on demand), or a hub id (used from the local HF cache,
downloaded only when the hub is reachable).
"""

from __future__ import annotations

from pathlib import Path

from harness.cache import ArtifactCache
from harness.errors import ModelNotFoundError

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
BUILTINS = ("tiny-bert",)


def resolve_model_source(source: str, cache: ArtifactCache, num_labels: int = 2) -> Path:
    if source.startswith("builtin:"):
        return _builtin(source.removeprefix("builtin:"), cache, num_labels)
    if source.startswith("package:"):
        return check_model_dir(_package_model_dir(source.removeprefix("package:")), source)
    path = Path(source).expanduser()
    if path.exists():
        return check_model_dir(path, source)
    if source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise ModelNotFoundError(f"model source '{source}': no such directory")
    return _hub_snapshot(source)


def check_model_dir(path: Path, source: str) -> Path:
    if not path.is_dir():
        raise ModelNotFoundError(f"model source '{source}': {path} is not a directory")
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(f"model source '{source}': {path} has no config.json")
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise ModelNotFoundError(f"model source '{source}': {path} has no weights ({', '.join(WEIGHT_FILES)})")
    return path


def _builtin(name: str, cache: ArtifactCache, num_labels: int) -> Path:
    if name != "tiny-bert":
        raise ModelNotFoundError(f"unknown builtin model '{name}' (known: {', '.join(BUILTINS)})")
    from harness.models.tiny import create_tiny_bert

    key = cache.key("builtin", name, num_labels)
    return cache.get_or_build("models", key, lambda out: create_tiny_bert(out, num_labels=num_labels))


def _package_model_dir(module: str) -> Path:
    package_dir = package_files_dir(module)
    if package_dir is None:
        raise ModelNotFoundError(f"model source 'package:{module}': python package '{module}' is not installed")
    return package_dir / "model" if (package_dir / "model").is_dir() else package_dir


def package_files_dir(module: str) -> Path | None:
    """The folder of an installed package (``name`` or ``name.sub``), found in the installed
    distributions' records without importing anything: importing would run the package's code."""
    import importlib.metadata

    parts = module.split(".")
    if not all(part.isidentifier() for part in parts):
        return None
    for distribution in importlib.metadata.packages_distributions().get(parts[0], []):
        try:
            root = Path(str(importlib.metadata.distribution(distribution).locate_file(parts[0])))
        except importlib.metadata.PackageNotFoundError:
            continue
        folder = root.joinpath(*parts[1:])
        if folder.is_dir():
            return folder
    return None


def _hub_snapshot(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    from harness.data.splits import hub_reachable

    try:
        return Path(snapshot_download(repo_id, local_files_only=not hub_reachable()))
    except LocalEntryNotFoundError:
        raise ModelNotFoundError(
            f"model source '{repo_id}': the hub is unreachable and the local Hugging Face cache has no copy; "
            "either connect and rerun once (it is then cached), or point source at a local model directory"
        ) from None
    except Exception as error:
        raise ModelNotFoundError(f"model source '{repo_id}': {error}") from None

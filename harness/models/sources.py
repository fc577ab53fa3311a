"""Resolve a suite's model source to a local Hugging Face model directory.

Sources: a local directory, ``package:<module>`` (a model shipped inside an installed Python
package), ``builtin:tiny-<architecture>`` such as ``builtin:tiny-bert`` (created on demand), or a
hub id (used from the local HF cache, downloaded only when the hub is reachable).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from harness.cache import ArtifactCache
from harness.errors import ModelNotFoundError, quote
from harness.models.tiny import ARCHITECTURES as TINY_ARCHITECTURES
from harness.readers import FileFormatError, check_safetensors_header, json_type, read_json_object

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
# counts the harness reads from config.json (depth, position limit, classes); absent is fine
CONFIG_COUNTS = ("num_labels", "num_hidden_layers", "n_layers", "max_position_embeddings")
MAX_CONFIG_BYTES = 4 * 2**20
# a tiny random classifier per supported architecture (harness.models.tiny.TINY_CONFIGS)
BUILTINS = tuple(f"tiny-{architecture}" for architecture in TINY_ARCHITECTURES)


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
    """``path`` when it holds a model: a well-formed config.json and weights whose header reads."""
    if not path.is_dir():
        raise ModelNotFoundError(f"model source '{source}': {path} is not a directory")
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(f"model source '{source}': {path} has no config.json (it is not a model directory)")
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise ModelNotFoundError(f"model source '{source}': {path} has no weights ({', '.join(WEIGHT_FILES)})")
    read_model_config(path)
    check_weights(path)
    return path


def package_model_dir(module: str) -> Path:
    """The model directory a ``package:<module>`` source names, checked like any model directory."""
    return check_model_dir(_package_model_dir(module), f"package:{module}")


def read_model_config(folder: Path) -> dict[str, Any]:
    """A model's config.json, with the fields the harness and transformers rely on type-checked."""
    file = folder / "config.json"
    config = read_json_object(file, MAX_CONFIG_BYTES)
    model_type = config.get("model_type")
    if model_type is None:
        raise FileFormatError(file, "model_type", "missing: transformers cannot tell which architecture to build")
    if not isinstance(model_type, str) or not model_type.strip():
        raise FileFormatError(file, "model_type", f"must be a model type name, got {quote(model_type)}")
    for key in CONFIG_COUNTS:
        value = config.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise FileFormatError(file, key, f"must be a positive integer, got {quote(value)}")
    for key in ("id2label", "label2id"):
        if key in config and not isinstance(config[key], dict):
            raise FileFormatError(file, key, f"must be a mapping, got {json_type(config[key])}")
    for index in config.get("id2label", {}):
        if not (index.isascii() and index.strip().isdigit()):
            raise FileFormatError(file, "id2label", f"key {quote(index)} is not a label index (0, 1, ...)")
    return config


def check_weights(folder: Path) -> None:
    """Read the header of the safetensors weights (or of each shard an index names)."""
    single = folder / "model.safetensors"
    if single.is_file():
        check_safetensors_header(single)
        return
    index = folder / "model.safetensors.index.json"
    if not index.is_file():
        return  # pytorch_model.bin: transformers loads it with weights_only; nothing cheap to check
    weight_map = read_json_object(index).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise FileFormatError(index, "weight_map", "must be a non-empty mapping of tensor names to shard files")
    checked: set[str] = set()
    for shard in weight_map.values():
        if not isinstance(shard, str) or Path(shard).name != shard or shard.startswith("."):
            raise FileFormatError(index, "weight_map", f"shard {quote(shard)} is not a file name in {folder}")
        if shard in checked:
            continue
        checked.add(shard)
        if not (folder / shard).is_file():
            raise FileFormatError(index, "weight_map", f"names the shard {quote(shard)}, which is missing")
        check_safetensors_header(folder / shard)


def _builtin(name: str, cache: ArtifactCache, num_labels: int) -> Path:
    if name not in BUILTINS:
        raise ModelNotFoundError(f"unknown builtin model '{name}' (known: {', '.join(BUILTINS)})")
    from harness.models.tiny import create_tiny_model

    architecture = name.removeprefix("tiny-")
    key = cache.key("builtin", name, num_labels)
    return cache.get_or_build("models", key, lambda out: create_tiny_model(architecture, out, num_labels=num_labels))


def _package_model_dir(module: str) -> Path:
    package_dir = package_files_dir(module)
    if package_dir is None:
        raise ModelNotFoundError(f"model source 'package:{module}': python package '{module}' is not installed")
    return package_dir / "model" if (package_dir / "model").is_dir() else package_dir


def package_files_dir(module: str) -> Path | None:
    """The folder of an installed package (``name`` or ``name.sub``), found without importing it:
    importing would run the package's code. The top-level folder comes from the installed
    distributions' records, else from the import system's finders (which locate a top-level
    package without running it, editable installs included); ``sub`` is then a plain folder."""
    import importlib.metadata
    import importlib.util

    parts = module.split(".")
    if not all(part.isidentifier() for part in parts):
        return None
    roots = []
    for distribution in importlib.metadata.packages_distributions().get(parts[0], []):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            roots.append(Path(str(importlib.metadata.distribution(distribution).locate_file(parts[0]))))
    spec = importlib.util.find_spec(parts[0])  # a top-level name: found, not imported
    roots += [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    for root in roots:
        if root.is_absolute() and root.joinpath(*parts[1:]).is_dir():  # relative: not a place, a coincidence
            return root.joinpath(*parts[1:])
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

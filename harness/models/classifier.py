"""Load any classifier the harness can make: transformers' own architectures and the lightweight
students of ``harness.compress.lightweight`` (registered with the Auto classes first).

Torch and transformers are imported inside the functions: the CLI imports this module at startup.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def register_students() -> None:
    """Teach ``AutoConfig`` and ``AutoModelForSequenceClassification`` the lightweight students."""
    from harness.compress.lightweight import register

    register()


def load_classifier(path: str | Path, **kwargs: Any) -> Any:
    """``AutoModelForSequenceClassification.from_pretrained(path, **kwargs)`` that also knows the
    lightweight students; never remote code."""
    from transformers import AutoModelForSequenceClassification

    register_students()
    return AutoModelForSequenceClassification.from_pretrained(path, **kwargs)


def classifier_from_config(path: str | Path) -> Any:
    """A freshly initialised classifier of the architecture ``path``'s config.json names."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    register_students()
    return AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(path))

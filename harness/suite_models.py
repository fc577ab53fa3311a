"""Cross-model rules of a suite's ``models:`` list (what a compressed model inherits from its parent,
which parents can be compressed), kept apart from the schema in ``harness.suite``."""

from __future__ import annotations

from typing import Any

from harness.suite_rules import fail


def classes_inherited(models: list[Any]) -> list[Any]:
    """A compressed model classifies into its parent's classes: ``num_labels`` follows the parent
    unless given, and a different value is an error (a student cannot learn classes it never saw)."""
    done: dict[str, Any] = {}
    problems = []
    for index, model in enumerate(models):
        parent = done.get(model.parent or "")
        if parent is not None and model.num_labels != parent.num_labels:
            if "num_labels" in model.model_fields_set:
                text = f"{model.name!r} compresses {parent.name!r}, which has {parent.num_labels} classes"
                problems.append(((index, "num_labels"), text, model.num_labels))
            model = model.model_copy(update={"num_labels": parent.num_labels})
        done[model.name] = model
    fail("models", problems)
    return list(done.values())


def lightweight_parents(models: list[Any]) -> None:
    """Only transformers are compressed further: a BiLSTM or CNN student has no layers to drop,
    no heads to prune, and no embedding table of a teacher's to start another student from."""
    lightweight = {m.name: m.distill.student.kind for m in models if m.distill is not None and m.distill.student}
    problems = [
        ((index, "parent"), f"{model.parent!r} is a {lightweight[model.parent]} student: only transformer "
         "models can be distilled or pruned further", model.parent)
        for index, model in enumerate(models)
        if model.parent in lightweight
    ]  # fmt: skip
    fail("models", problems)

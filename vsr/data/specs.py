"""Which data set a run trains and validates on, and which one ``vsr test`` scores: from the recipe's
``data.train`` / ``data.val``, a folder given on the command line, or the embedded synthetic set.

A spec is what :func:`vsr.data.layouts.open_dataset` opens: a mapping (``root``, ``split``, ``layout``,
``degradation``, ...) or an opened ``ClipSet``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vsr.errors import DataError, VSRError
from vsr.recipe import Recipe

#: The embedded synthetic set's splits (generated on first use, see :mod:`vsr.data.synth`).
EMBEDDED_TRAIN = {"layout": "synth", "split": "train"}
EMBEDDED_VAL = {"layout": "synth", "split": "val"}


def _is_synthetic(root: Path) -> bool:
    return (root / "synth.json").is_file()


def data_specs(recipe: Recipe, data: Any = None) -> tuple[Any, Any]:
    """The (training, validation) data set specs: ``data`` (e.g. ``vsr train --data``) replaces
    ``data.train``; a synthetic set given there also validates on its own ``val`` split unless ``data.val``
    is set; ``None`` means the embedded set (``train`` and ``val`` splits)."""
    train_spec = recipe.data["train"] if data is None else data
    val_spec = recipe.data["val"]
    if train_spec is None:
        train_spec = dict(EMBEDDED_TRAIN)
    elif isinstance(train_spec, str | Path):
        root = Path(train_spec).expanduser()
        if not root.exists():
            raise DataError(
                f"training data {root} does not exist; pass a data set folder, or no data for the embedded set"
            )
        if _is_synthetic(root):
            train_spec = {"root": root, "split": "train"}
            val_spec = val_spec if val_spec is not None else {"root": root, "split": "val"}
    return train_spec, evaluation_spec(recipe, val_spec)


def evaluation_spec(recipe: Recipe | None, data: Any = None) -> Any:
    """The data set to evaluate on: ``data`` (a path, a spec mapping or a ClipSet), else the recipe's
    ``data.val``, else the embedded set's validation split."""
    if data is None and recipe is not None:
        data = recipe.data["val"]
    if data is None:
        return dict(EMBEDDED_VAL)
    if isinstance(data, str | Path):
        root = Path(data).expanduser()
        if not root.exists():
            raise VSRError(f"test data {root} does not exist; pass the folder of a data set (see vsr.data.layouts)")
        return {"root": root, "split": "val"} if _is_synthetic(root) else {"root": root}
    return data


def data_test_specs(recipe: Recipe) -> dict[str, Any]:
    """``data.test``'s sets as :func:`evaluation_spec` gives them (a synthetic set's path: its validation split;
    stored LR frames read, GT-only sets degraded by BI, as ``vsr test`` does), ``None`` for the validation set."""
    tests = recipe.data["test"] or {}
    return {name: None if spec is None else evaluation_spec(recipe, spec) for name, spec in tests.items()}


__all__ = ["data_specs", "evaluation_spec", "data_test_specs"]

"""Files found by name (shipped recipes, study files): a search path of folders, each file named by its stem."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

#: The source tree, which ships ``recipes/`` and ``studies/`` beside ``vsr/``.
SOURCE_TREE = Path(__file__).resolve().parents[1]


def search_path(variable: str, folder: str) -> list[Path]:
    """Where files are found by name: the folders in ``$<variable>`` (separated as in ``PATH``),
    ``./<folder>``, then the source tree's ``<folder>``."""
    dirs = [Path(p) for p in os.environ.get(variable, "").split(os.pathsep) if p]
    return [*dirs, Path.cwd() / folder, SOURCE_TREE / folder]


def yaml_by_name(dirs: Sequence[Path]) -> dict[str, Path]:
    """The YAML files in ``dirs`` by name (their stem); an earlier folder's file wins."""
    found: dict[str, Path] = {}
    for d in reversed(dirs):
        for path in sorted(d.glob("*.yaml")):
            found[path.stem] = path
    return found


__all__ = ["SOURCE_TREE", "search_path", "yaml_by_name"]

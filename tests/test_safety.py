"""Lose nothing, ever: every check here runs the real thing and compares the files on disk before and after.

* ``vsr upscale`` never writes over its input (the input itself, a folder holding it, a path inside it),
  and ``--overwrite`` replaces only an earlier output of vsr;
* names become folders only if they are names;
* a run or study folder has one writer at a time (a second is refused naming the holder; a stale lock of
  a dead process is taken over);
* a resumed run keeps its recipe, or applies an allowed change for real and logs it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing
import os
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import yaml
from PIL import Image
from tiny import TINY_DATA, TINY_MODEL
from typer.testing import CliRunner

import vsr.locks
import vsr.training.trainer
from vsr import build_model, save_checkpoint
from vsr.checkpoints import read_checkpoint
from vsr.cli import app
from vsr.data import synth
from vsr.errors import RecipeError, VideoError, VSRError
from vsr.locks import LOCK_FILE, FolderInUse, FolderLock
from vsr.recipe import load_recipe
from vsr.reports import run_and_report
from vsr.studies import run_one
from vsr.studies import runs as run_folders
from vsr.studies.schema import StudyError
from vsr.training import Trainer, train
from vsr.video import OUTPUT_MARKER, FrameReader, FrameWriter

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with the sha256 of its content (``dir`` for folders, ``-> target`` for links)."""
    tree = {}
    for path in sorted(root.rglob("*")):
        key = path.relative_to(root).as_posix()
        if path.is_symlink():
            tree[key] = f"-> {path.readlink()}"
        elif path.is_dir():
            tree[key] = "dir"
        else:
            tree[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return tree


def one_line(text: str) -> str:
    return " ".join(text.split())


# ------------------------------------------------------------------------------------------ upscale


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    recipe = load_recipe("basicvsr", "model.channels=8", "model.aggregation.num_blocks=1", "model.flow.levels=2")
    return save_checkpoint(build_model(recipe), tmp_path_factory.mktemp("ckpt") / "tiny.pth", recipe=recipe.to_dict())


def write_frames(folder: Path, count: int = 3, value: int | None = None, size=(16, 16)) -> None:
    """PNG frames as another program writes them (no marker): random, or all of one ``value``."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(count):
        frame = np.full((*size, 3), value) if value is not None else rng.integers(0, 256, (*size, 3))
        Image.fromarray(frame.astype(np.uint8)).save(folder / f"{i:04d}.png")


def upscale(checkpoint, source, output, *extra):
    return invoke("upscale", checkpoint, source, "-o", output, "--device", "cpu", "--chunk-size", "2", *extra)


@pytest.mark.parametrize("overwrite", [True, False])
@pytest.mark.parametrize(
    ("output", "problem"),
    [
        ("up/parent", "holds the input"),  # the input's own folder: replacing it deletes the input
        ("up", "holds the input"),  # any folder above it
        ("up/parent/frames", "the output is the input"),
        ("up/parent/frames/out", "inside the input folder"),
        ("link", "holds the input"),  # a symbolic link to the input's folder
        ("link/frames", "the output is the input"),
    ],
)
def test_upscale_refuses_outputs_that_would_touch_its_input(checkpoint, tmp_path, output, problem, overwrite):
    write_frames(tmp_path / "up/parent/frames")
    (tmp_path / "up/parent/notes.txt").write_text("mine")
    (tmp_path / "link").symlink_to(tmp_path / "up/parent", target_is_directory=True)
    before = snapshot(tmp_path)
    result = upscale(checkpoint, tmp_path / "up/parent/frames", tmp_path / output, *(["--overwrite"] * overwrite))
    assert result.exit_code == 2, result.output
    assert problem in one_line(result.output) and "Traceback" not in result.output
    assert snapshot(tmp_path) == before


def test_upscale_refuses_to_write_a_video_over_itself_or_its_folder(checkpoint, tmp_path):
    video = tmp_path / "v" / "clip.mkv"
    video.parent.mkdir()
    with FrameWriter(video, fps=24) as writer:  # a vsr output: --overwrite would replace it, were it not the input
        for value in (10, 90, 170):
            writer.write(np.full((16, 16, 3), value, np.uint8))
    before = snapshot(tmp_path)
    for output, problem in ((video, "the output is the input"), (tmp_path / "v", "holds the input")):
        result = upscale(checkpoint, video, output, "--overwrite")
        assert result.exit_code == 2 and problem in one_line(result.output), result.output
    assert snapshot(tmp_path) == before


def png_frames(folder: Path) -> np.ndarray:
    return np.stack(list(FrameReader(folder)))


def test_overwrite_replaces_an_earlier_frame_output_of_vsr(checkpoint, tmp_path):
    write_frames(tmp_path / "dark", value=20)
    write_frames(tmp_path / "bright", value=230)
    out = tmp_path / "out"
    assert upscale(checkpoint, tmp_path / "dark", out).exit_code == 0
    assert json.loads((out / OUTPUT_MARKER).read_text())["frames"] == 3
    dark = png_frames(out)
    refused = upscale(checkpoint, tmp_path / "bright", out)
    assert refused.exit_code == 2 and "--overwrite" in refused.output
    assert np.array_equal(png_frames(out), dark)
    result = upscale(checkpoint, tmp_path / "bright", out, "--overwrite")
    assert result.exit_code == 0, result.output
    bright = png_frames(out)
    assert bright.shape == (3, 64, 64, 3) and bright.mean() > dark.mean() + 100
    assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MARKER, *(f"{i:08d}.png" for i in range(3))]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bright", "dark", "out"]  # nothing left aside


def test_overwrite_replaces_an_earlier_video_of_vsr_and_tags_what_it_writes(checkpoint, tmp_path):
    write_frames(tmp_path / "dark", value=20, count=4)
    write_frames(tmp_path / "bright", value=230, count=4)
    out = tmp_path / "out.mkv"
    assert upscale(checkpoint, tmp_path / "dark", out).exit_code == 0
    result = upscale(checkpoint, tmp_path / "bright", out, "--overwrite")
    assert result.exit_code == 0, result.output
    with av.open(str(out)) as container:
        assert container.metadata.get("COMMENT", container.metadata.get("comment", "")).startswith("vsr-output")
    assert np.stack(list(FrameReader(out))).mean() > 150
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bright", "dark", "out.mkv"]


@pytest.mark.parametrize("case", ["foreign folder", "vsr folder with a file added", "vsr folder with a folder added",
                                  "foreign video", "file where a folder goes"])  # fmt: skip
def test_overwrite_refuses_what_vsr_did_not_write(checkpoint, tmp_path, case):
    write_frames(tmp_path / "input")
    out = tmp_path / ("out.mkv" if case == "foreign video" else "out")
    if case == "foreign folder":
        write_frames(out)  # frames, but not vsr's: no marker
        (out / "notes.txt").write_text("mine")
        named = "without vsr's marker file"
    elif case.startswith("vsr folder"):
        assert upscale(checkpoint, tmp_path / "input", out).exit_code == 0
        added = out / ("notes.txt" if case.endswith("file added") else "keep")
        added.write_text("mine") if case.endswith("file added") else added.mkdir()
        named = str(added)
    elif case == "foreign video":
        with av.open(str(out), "w") as container:  # plain PyAV, as another program would write it
            stream = container.add_stream("libx264", rate=Fraction(25))
            stream.width = stream.height = 16
            stream.pix_fmt = "yuv420p"
            for packet in [*stream.encode(av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8))),
                           *stream.encode(None)]:  # fmt: skip
                container.mux(packet)
        named = "no 'vsr-output' comment tag"
    else:
        out.write_text("a file, not a frame folder")
        named = "not a video file vsr writes"
    before = snapshot(tmp_path)
    result = upscale(checkpoint, tmp_path / "input", out, "--overwrite")
    assert result.exit_code == 2, result.output
    message = one_line(result.output)
    assert "replaces only an earlier output of vsr" in message and named in message and str(out) in message
    assert snapshot(tmp_path) == before


def test_overwrite_checks_again_just_before_the_swap(tmp_path):
    """The output is replaced last, after checking once more that it is still vsr's own: a file put into it
    while the new output was being written stops the swap, and both stay as they were."""
    out = tmp_path / "out"
    with FrameWriter(out) as writer:
        writer.write(np.zeros((8, 8, 3), np.uint8))
    writer = FrameWriter(out, overwrite=True)
    writer.write(np.full((8, 8, 3), 255, np.uint8))
    (out / "added while writing.txt").write_text("mine")
    before = snapshot(tmp_path)
    with pytest.raises(VideoError, match=r"added while writing\.txt, which vsr did not write"):
        writer.close()
    assert snapshot(tmp_path) == {k: v for k, v in before.items() if ".partial" not in k}  # the new one is gone


# ------------------------------------------------------------------------------------------ training set-up

TINY = {
    "name": "tiny",
    "model": TINY_MODEL,
    "data": TINY_DATA,
    "train": {"iterations": 4, "periods": [8], "lr": 1e-3, "eta_min": 1e-7, "fix_iterations": 0, "log_every": 1,
              "val_every": 2, "checkpoint_every": 2},
}  # fmt: skip


def tiny(**sections) -> dict:
    recipe = json.loads(json.dumps(TINY))
    for section, values in sections.items():
        if section == "name":
            recipe["name"] = values
        else:
            recipe[section].update(values)
    return recipe


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "set"
    synth.generate(root, frames=5, val_frames=5, clips_per_photo=1, val_clips_per_photo=1, size=(64, 64),
                   photos=["astronaut", "coffee", "chelsea"], val_photos=["chelsea"])  # fmt: skip
    return root


def run_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


# ------------------------------------------------------------------------------------------ names


@pytest.mark.parametrize("name", ["../../escaped", "ABSOLUTE", "a/b", "..", "", "back\\slash"])
def test_a_recipe_name_that_is_not_a_name_never_becomes_a_folder(tmp_path, monkeypatch, name):
    """The default run folder is runs/<name>: a name with a path in it is refused before anything is
    written, so ``name: ../../x`` cannot train outside runs/ and ``name: /some/dir`` cannot overwrite a
    recipe.yaml there."""
    work = tmp_path / "a" / "b" / "work"
    work.mkdir(parents=True)
    some = tmp_path / "some"
    some.mkdir()
    (some / "recipe.yaml").write_text("name: mine\n")
    if name == "ABSOLUTE":
        name = str(some)
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(tiny(name=name)))
    monkeypatch.chdir(work)
    before = snapshot(tmp_path)
    result = invoke("train", tmp_path / "recipe.yaml", "--device", "cpu")
    assert result.exit_code == 2, result.output
    assert "recipe key 'name'" in one_line(result.output) and "runs/<name>" in one_line(result.output)
    assert snapshot(tmp_path) == before
    with pytest.raises(RecipeError, match="recipe key 'name'"):
        train(tiny(name=name), progress=False)


def test_study_and_variant_names_are_folder_names(tmp_path):
    for study, variant in (("..", "v"), ("s", ".."), ("s", "a/../../b"), ("/abs", "v")):
        with pytest.raises(StudyError, match="cannot name a folder"):
            run_folders.run_folder(tmp_path, study, variant, 0)
    assert run_folders.run_folder(tmp_path, "s", "v", 3) == tmp_path / "s" / "v" / "seed3"


def test_a_new_run_never_replaces_files_of_another_run_or_of_the_user(data_root, tmp_path):
    """--out into a folder that holds a recipe.yaml vsr did not write (or another run's) is refused, and
    the folder is left as it was; the leftovers of this same run stopped before its first checkpoint are not
    an obstacle."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "recipe.yaml").write_text("my own notes\n")
    (folder / "log.jsonl").write_text('{"mine": 1}\n')
    before = snapshot(tmp_path)
    with pytest.raises(VSRError, match=r"holds recipe.yaml, log.jsonl of another run"):
        train(TINY, folder, data=data_root, device="cpu", progress=False)
    assert snapshot(tmp_path) == before

    same = tmp_path / "same"
    same.mkdir()
    (same / "recipe.yaml").write_text(load_recipe(TINY).to_yaml())  # this recipe, stopped before a checkpoint
    trainer = Trainer(load_recipe(TINY), same, data_root, False, "cpu", False)
    trainer._unlock()


# ------------------------------------------------------------------------------------------ locks


STARTUP_S = 1200  # seconds a spawned process may take to import torch and set a run up (a few on an idle machine)


def _hold_run_while_training(out: str, data_root: str, started, release) -> None:
    """A first ``train`` that, once it holds the run folder, waits for ``release`` before training."""
    original = vsr.training.trainer.Trainer._train

    def waiting(self):
        if self.log.board is not None:  # TensorBoard writes from a thread: settle its files before the snapshot
            self.log.board.flush()
        started.set()
        release.wait(STARTUP_S)
        original(self)

    vsr.training.trainer.Trainer._train = waiting
    train(TINY, out, data=data_root, device="cpu", progress=False)


def test_two_writers_of_one_run_folder_the_second_is_refused_naming_the_first(data_root, tmp_path):
    out = tmp_path / "run"
    context = multiprocessing.get_context("spawn")
    started, release = context.Event(), context.Event()
    first = context.Process(target=_hold_run_while_training, args=(str(out), str(data_root), started, release))
    first.start()
    try:
        assert started.wait(STARTUP_S), "the first run did not start"
        before = snapshot(out)
        assert "recipe.yaml" in before and LOCK_FILE in before
        with pytest.raises(FolderInUse, match=rf"run folder {out} is in use: pid {first.pid} on "):
            train(TINY, out, data=data_root, device="cpu", progress=False)
        with pytest.raises(FolderInUse, match=rf"pid {first.pid} "):
            train(TINY, out, data=data_root, device="cpu", progress=False, resume=True)
        recipe = tmp_path / "tiny.yaml"
        recipe.write_text(yaml.safe_dump(TINY))
        result = invoke("train", recipe, "--data", data_root, "--out", out, "--device", "cpu")
        assert result.exit_code == 2 and f"pid {first.pid} on" in one_line(result.output), result.output
        assert snapshot(out) == before
    finally:
        release.set()
        first.join(STARTUP_S)
    assert first.exitcode == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e["iteration"] for e in log if e["event"] == "train"] == [1, 2, 3, 4]  # one run, not two mixed
    assert yaml.safe_load((out / "recipe.yaml").read_text()) == yaml.safe_load(load_recipe(TINY).to_yaml())
    assert (out / "result.json").is_file() and not (out / LOCK_FILE).exists()


HOLD = """
import sys, time
from vsr.locks import FolderLock
lock = FolderLock(sys.argv[1], "folder").acquire()  # held while referenced
print("holding", flush=True)
time.sleep(600)
"""


def hold_lock(folder: Path) -> subprocess.Popen:
    """Another process that holds the lock of ``folder`` until killed."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    return holder


def test_a_stale_lock_of_a_killed_process_is_taken_over_with_a_log_line(data_root, tmp_path, caplog):
    out = tmp_path / "run"
    holder = hold_lock(out)
    with pytest.raises(FolderInUse, match=rf"pid {holder.pid} "):
        train(TINY, out, data=data_root, device="cpu", progress=False)
    holder.kill()  # SIGKILL: no chance to release; the lock file still names it
    holder.wait()
    assert json.loads((out / LOCK_FILE).read_text())["pid"] == holder.pid
    with caplog.at_level(logging.WARNING, logger="vsr.locks"):
        result = train(TINY, out, data=data_root, device="cpu", progress=False)
    assert result.iterations == 4
    taken = [r.getMessage() for r in caplog.records if "stale lock" in r.getMessage()]
    assert len(taken) == 1 and f"pid {holder.pid} " in taken[0] and "ended without releasing it" in taken[0]
    assert not (out / LOCK_FILE).exists()


def test_without_flock_the_lock_file_names_the_holder(tmp_path, monkeypatch, caplog):
    """On a file system without flock the file's content is the lock: a running holder refuses, a dead
    one (a pid that no longer runs) is taken over."""
    monkeypatch.setattr(vsr.locks, "fcntl", None)
    folder = tmp_path / "run"
    holder = hold_lock(folder)
    try:
        with pytest.raises(FolderInUse, match=rf"pid {holder.pid} "):
            FolderLock(folder, "run folder").acquire()
    finally:
        holder.kill()
        holder.wait()
    with caplog.at_level(logging.WARNING, logger="vsr.locks"), FolderLock(folder, "run folder"):
        assert json.loads((folder / LOCK_FILE).read_text())["pid"] != holder.pid
    assert any(f"pid {holder.pid} " in r.getMessage() for r in caplog.records)
    assert not (folder / LOCK_FILE).exists()


TRY = """
import sys
from vsr.locks import FolderInUse, FolderLock
try:
    with FolderLock(sys.argv[1], "run folder"):
        print("acquired")
except FolderInUse as err:
    print(err)
"""


def test_a_lock_lent_to_a_child_process_lets_only_that_child_in(tmp_path):
    """The study driver lends a run folder's lock to the torchrun processes that train the run for it."""
    folder = tmp_path / "run"
    with FolderLock(folder, "run folder"):
        lent = subprocess.run([sys.executable, "-c", TRY, str(folder)], env=vsr.locks.lent_to_child([folder]),
                              capture_output=True, text=True, check=True)  # fmt: skip
        other = subprocess.run([sys.executable, "-c", TRY, str(folder)], capture_output=True, text=True, check=True)
        assert lent.stdout.strip() == "acquired"
        assert f"pid {os.getpid()} on" in other.stdout
        assert (folder / LOCK_FILE).is_file()  # the child did not release the lender's lock
    assert not (folder / LOCK_FILE).exists()


STUDY = {
    "name": "mini",
    "base": "a",
    "presets": {"cpu": {"recipe": "RECIPE", "seeds": 1}},
    "variants": {"a": [], "b": ["train.lr=0.002"]},
}


def test_a_study_folder_and_its_run_folders_have_one_writer(tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY))
    study = tmp_path / "mini.yaml"
    study.write_text(yaml.safe_dump({**STUDY, "presets": {"cpu": {"recipe": str(recipe), "seeds": 1}}}))
    runs = tmp_path / "runs"
    holder = hold_lock(runs / "mini")
    try:
        before = snapshot(tmp_path)
        with pytest.raises(FolderInUse, match=rf"study folder {runs / 'mini'} is in use: pid {holder.pid} "):
            run_and_report(study, out=runs, progress=False, report=tmp_path / "report")
        assert snapshot(tmp_path) == before  # no study.json, no run folder, no report
    finally:
        holder.kill()
        holder.wait()

    from vsr.studies import load_study, plan_runs

    (spec, _) = plan_runs(load_study(study), "cpu", runs)
    holder = hold_lock(Path(spec.run_dir))
    try:
        before = snapshot(tmp_path)
        with pytest.raises(FolderInUse, match=rf"pid {holder.pid} "):
            run_one(spec, progress=False)
        assert snapshot(tmp_path) == before  # not even failed.json: the folder is someone else's now
    finally:
        holder.kill()
        holder.wait()


# ------------------------------------------------------------------------------------------ resume


@pytest.fixture
def interrupted(data_root, tmp_path, monkeypatch) -> Path:
    """A run of TINY stopped (Ctrl-C) right after its checkpoint at iteration 2."""
    out = tmp_path / "run"
    real_save = Trainer._save

    def save_then_interrupt(self):
        real_save(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_save", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(TINY, out, data=data_root, device="cpu", progress=False)
    monkeypatch.setattr(Trainer, "_save", real_save)
    assert read_checkpoint(out / "checkpoints/latest.pth")["iteration"] == 2
    return out


def cosine(base: float, iteration: int, period: int = 8, eta_min: float = 1e-7) -> float:
    """Cosine annealing (one period, weight 1), written out here independently of vsr.training.schedule."""
    return eta_min + 0.5 * (base - eta_min) * (1 + math.cos(math.pi * iteration / period))


def test_resume_with_a_changed_recipe_is_refused_listing_the_keys(interrupted, data_root, tmp_path):
    before = snapshot(interrupted)
    with pytest.raises(VSRError, match=r"resuming would change train.lr: 0.001 → 0.0005.*--allow-changes"):
        train(tiny(train={"lr": 5e-4}), interrupted, data=data_root, device="cpu", progress=False, resume=True)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY))
    result = invoke("train", recipe, "--data", data_root, "--out", interrupted, "--device", "cpu", "--resume",
                    "--set", "train.lr=0.5", "--set", "data.batch_size=4")  # fmt: skip
    assert result.exit_code == 2, result.output
    message = one_line(result.output)
    assert "data.batch_size: 2 → 4; train.lr: 0.001 → 0.5" in message and "--allow-changes" in message
    # Even with the flag, what cannot take effect in a running run is refused.
    with pytest.raises(VSRError, match=r"cannot change model.channels \(the run's weights belong to the archi"):
        train(tiny(model={"channels": 16}), interrupted, data=data_root, device="cpu", progress=False, resume=True,
              allow_recipe_changes=True)  # fmt: skip
    assert snapshot(interrupted) == before


def test_an_allowed_change_of_lr_is_applied_for_real_and_logged(interrupted, data_root, monkeypatch):
    seen: list[tuple[int, list[float], list[float]]] = []  # (iteration, lrs before the step, lrs after it)
    real_step = Trainer._step

    def spy_step(self, batch):
        lrs = [g["lr"] for g in self.state.optimizers["model"].param_groups]
        loss = real_step(self, batch)
        seen.append((self.state.iteration + 1, lrs, [g["lr"] for g in self.state.optimizers["model"].param_groups]))
        return loss

    monkeypatch.setattr(Trainer, "_step", spy_step)
    changed = tiny(train={"lr": 5e-4})
    result = invoke_train_resumed(changed, interrupted, data_root)
    assert result.iterations == 4
    mult = load_recipe(TINY).train["pretrained_lr_mult"]
    (step, used, after), *_ = seen
    assert step == 3  # the first resumed step
    # The groups are main (lr) and pretrained (lr × pretrained_lr_mult), both on the new schedule.
    assert used == pytest.approx([cosine(5e-4, 2), cosine(5e-4 * mult, 2)], rel=1e-12)
    assert after == pytest.approx([cosine(5e-4, 3), cosine(5e-4 * mult, 3)], rel=1e-12)
    assert after[0] != pytest.approx(cosine(1e-3, 3), rel=1e-3)  # not the old schedule
    final = read_checkpoint(interrupted / "checkpoints/latest.pth")
    assert [g["lr"] for g in final["optimizers"]["model"]["param_groups"]] == pytest.approx(
        [cosine(5e-4, 4), cosine(5e-4 * mult, 4)], rel=1e-12
    )
    assert final["schedulers"]["model"]["base_lrs"] == pytest.approx([5e-4, 5e-4 * mult])
    assert final["recipe"]["train"]["lr"] == 5e-4
    assert yaml.safe_load((interrupted / "recipe.yaml").read_text())["train"]["lr"] == 5e-4
    log = [json.loads(line) for line in (interrupted / "log.jsonl").read_text().splitlines()]
    (event,) = [e for e in log if e["event"] == "recipe_changed"]
    assert event == {"event": "recipe_changed", "iteration": 2, "changes": {"train.lr": {"old": 1e-3, "new": 5e-4}}}
    lrs = {e["iteration"]: e["lr"] for e in log if e["event"] == "train"}
    assert lrs[2] == pytest.approx(cosine(1e-3, 1)) and lrs[3] == pytest.approx(cosine(5e-4, 2))
    assert [e["iteration"] for e in log if e["event"] == "train"] == [1, 2, 3, 4]


def test_a_change_undone_before_its_first_checkpoint_leaves_no_record(interrupted, data_root, monkeypatch):
    """A resumption with an allowed change that stops before its first checkpoint, resumed again with the
    run's own recipe: the checkpoint still holds the old recipe, so nothing changed and the log says so."""
    real_step = Trainer._step

    def step_then_stop(self, batch):
        real_step(self, batch)
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_step", step_then_stop)
    with pytest.raises(KeyboardInterrupt):
        invoke_train_resumed(tiny(train={"lr": 5e-4}), interrupted, data_root)
    events = [json.loads(line)["event"] for line in (interrupted / "log.jsonl").read_text().splitlines()]
    assert "recipe_changed" in events
    monkeypatch.setattr(Trainer, "_step", real_step)
    train(TINY, interrupted, data=data_root, device="cpu", progress=False, resume=True)  # no flag needed
    log = [json.loads(line) for line in (interrupted / "log.jsonl").read_text().splitlines()]
    assert not [e for e in log if e["event"] == "recipe_changed"]
    lrs = {e["iteration"]: e["lr"] for e in log if e["event"] == "train"}
    assert lrs[3] == pytest.approx(cosine(1e-3, 2)) and sorted(lrs) == [1, 2, 3, 4]


def invoke_train_resumed(recipe: dict, out: Path, data_root: Path):
    return train(recipe, out, data=data_root, device="cpu", progress=False, resume=True, allow_recipe_changes=True)


STUDY_PARENT = """
import os, sys, time
from pathlib import Path
from vsr.studies.executors import _run_parallel
from vsr.studies.runs import RunSpec

def run(spec, progress):  # a run that would train for ten minutes
    Path(spec.run_dir).write_text(str(os.getpid()))
    time.sleep(600)

if __name__ == "__main__":
    specs = [RunSpec("s", "cpu", f"v{k}", 0, str(Path(sys.argv[1]) / f"pid{k}"), {}) for k in range(2)]
    _run_parallel(run, specs, 2, False, 2)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_workers_of_a_killed_study_stop_with_it(tmp_path):
    """``kill`` of a ``vsr study --jobs N`` process (not Ctrl-C, which reaches the process group) used to leave
    its workers training as orphans, writing into run folders whose lock they no longer held."""
    script = tmp_path / "parent.py"
    script.write_text(STUDY_PARENT)
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path)])
    pid_files = [tmp_path / "pid0", tmp_path / "pid1"]
    try:
        deadline = time.monotonic() + STARTUP_S
        while not all(p.exists() and p.read_text() for p in pid_files):
            assert time.monotonic() < deadline and parent.poll() is None, "the workers did not start"
            time.sleep(0.2)
        workers = [int(p.read_text()) for p in pid_files]
        parent.kill()  # SIGKILL: the study gets no chance to clean up; the kernel tells the workers
        parent.wait()
        deadline = time.monotonic() + 60
        while any(_alive(pid) for pid in workers):
            assert time.monotonic() < deadline, f"workers {workers} outlived their study"
            time.sleep(0.2)
    finally:
        if parent.poll() is None:
            parent.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead: only its exit status is left
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"

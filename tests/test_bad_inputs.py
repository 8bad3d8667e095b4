"""Bad inputs and faults, as a new user meets them: each must end in one clear line, never a traceback.

One table drives the command line in-process (typer's CliRunner) over bad recipes, values, paths, files and
faults (a full disk, Ctrl-C); each row says the exit code, a regex the message must match, and the one path
the command may write (every other file under the test's folder and the shared data set is compared by
sha256 before and after). A full disk is met where vsr really writes: the checkpoint's temporary file cut
short as write(2) cuts it, the output's encoder and PNG writer writing to ``/dev/full``. A row may run the
command twice at once, in two real processes, to show that one folder has one writer. A second, small table
calls the library (``vsr.upscale``) with bad tensors.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from full_disk import NearlyFullFile
from PIL import Image
from typer.testing import CliRunner

import vsr.atomic
import vsr.losses
import vsr.video
from vsr import build_model, save_checkpoint
from vsr.checkpoints import read_checkpoint
from vsr.cli import app
from vsr.cli_support import MESSAGE_CHARS
from vsr.data.synth import generate
from vsr.errors import VSRError
from vsr.evaluate import METRICS_FILE, PER_FRAME_FILE
from vsr.locks import LOCK_FILE
from vsr.recipe import load_recipe
from vsr.training.files import LATEST_CHECKPOINT, LOG_FILE, RESULT_FILE
from vsr.upscale import upscale
from vsr.video import FrameWriter

runner = CliRunner()

TINY_SET = ["--set", "model.channels=8", "--set", "model.aggregation.num_blocks=1", "--set", "model.flow.levels=2"]

#: A tiny training recipe (tests/test_train.py's TINY): 4 iterations, a checkpoint every 2.
TINY_RECIPE = """\
name: tiny
model:
  channels: 8
  flow: {name: spynet, levels: 2, widths: [8, 8, 8, 8], kernel_size: 3}
  aggregation: {name: residual, num_blocks: 1}
  upsampling: {name: pixel_shuffle, hr_channels: 8}
data: {num_frames: 3, lr_patch: 8, batch_size: 1, workers: 0}
train: {iterations: 4, periods: [4], lr: 0.001, fix_iterations: 0, log_every: 1, val_every: 2, checkpoint_every: 2}
"""

# A 306-byte "billion laughs": nine levels of nine aliases each expand to 9**9 values.
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)


# ------------------------------------------------------------------------------------------ set-ups and faults


def write(name: str, content: str | bytes) -> Callable[[Path], None]:
    """A set-up writing ``content`` to ``name`` (relative to the test's folder)."""

    def setup(root: Path) -> None:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)

    return setup


def truncated_checkpoint(root: Path) -> None:
    (root / "cut.pth").write_bytes((root / "tiny.pth").read_bytes()[:3000])


def tensor_checkpoint(root: Path) -> None:
    torch.save(torch.zeros(3), root / "tensor.pth")


def jpg_among_png(root: Path) -> None:
    clip = root / "set" / "GT" / "clip"
    clip.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(clip / f"{i:08d}.png")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(clip / "00000003.jpg")


def truncated_run_json(root: Path) -> None:
    run = root / "runs" / "study" / "base" / "seed0"
    run.mkdir(parents=True)
    (run / "run.json").write_text('{"study": "study", "variant": "ba')


def tiny_recipe(root: Path, name: str = "tiny", file: str = "tiny.yaml") -> None:
    (root / file).write_text(TINY_RECIPE.replace("name: tiny", f"name: {json.dumps(name)}"))


def user_files(root: Path) -> None:
    """Frames in ``up/parent/frames`` and a note beside them; a folder ``mine`` of frames and a note (not vsr's)."""
    for folder in (root / "up" / "parent" / "frames", root / "mine"):
        folder.mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((16, 24, 3), 60 * i, np.uint8)).save(folder / f"{i:08d}.png")
    (root / "up" / "parent" / "notes.txt").write_text("mine")
    (root / "mine" / "notes.txt").write_text("mine")


def checkpointed_run(root: Path) -> None:
    """``tiny.yaml`` and the run folder ``run`` it saved a checkpoint in at iteration 2."""
    tiny_recipe(root)
    recipe = load_recipe(root / "tiny.yaml")
    save_checkpoint(build_model(recipe), root / "run" / LATEST_CHECKPOINT, recipe=recipe.to_dict(), iteration=2)
    (root / "run" / "recipe.yaml").write_text(recipe.to_yaml())


def earlier_output(name: str) -> Callable[[Path], None]:
    """A set-up: an earlier output of vsr at ``name`` (a video, or a frame folder), which --overwrite may replace."""

    def setup(root: Path) -> None:
        with FrameWriter(root / name, size=(64, 96)) as writer:
            for value in (30, 200):
                writer.write(np.full((64, 96, 3), value, np.uint8))

    return setup


def raising(exc: BaseException, after: int = 0) -> Callable:
    """A stand-in for a function that raises ``exc`` on its call number ``after + 1``, else calls through."""

    def wrap(original: Callable) -> Callable:
        calls = {"n": 0}

        def stand_in(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] > after:
                raise exc
            return original(*args, **kwargs)

        return stand_in

    return wrap


def patch(target: object, name: str, wrap: Callable) -> Callable[[pytest.MonkeyPatch], None]:
    """A fault: replace ``target.name`` (``target[name]`` in a dict) by ``wrap(original)`` for the row."""
    if isinstance(target, dict):
        return lambda mp: mp.setitem(target, name, wrap(target[name]))
    return lambda mp: mp.setattr(target, name, wrap(getattr(target, name)))


def os_error(code: int, path: str = "out.mp4") -> OSError:
    return OSError(code, "injected", path)


FULL_DEVICE = "/dev/full"  # Linux: every write to it fails with ENOSPC, as on a full disk


def disk_fills_at(name: str, after: int = 0, room: int = 2000) -> Callable[[pytest.MonkeyPatch], None]:
    """A fault: from the write of ``name`` after ``after`` complete ones on, the disk has ``room`` bytes left;
    what writes it (``torch.save`` into :mod:`vsr.atomic`'s temporary file) meets a short write, then ENOSPC."""

    def fault(mp: pytest.MonkeyPatch) -> None:
        calls = {"n": 0}

        def open_on_a_nearly_full_disk(file, mode="r", *args, **kwargs):
            if Path(file).name.startswith(f".{name}.") and "w" in mode:
                calls["n"] += 1
                if calls["n"] > after:
                    assert mode == "wb" and not args and not kwargs, "a binary file, as torch.save writes"
                    return io.BufferedWriter(NearlyFullFile(file, room))
            return open(file, mode, *args, **kwargs)

        mp.setattr(vsr.atomic, "open", open_on_a_nearly_full_disk, raising=False)

    return fault


def output_disk_full(after: int = 0) -> Callable[[pytest.MonkeyPatch], None]:
    """A fault: ``vsr upscale``'s output is on a full disk. The video's temporary file, or the frames of a frame
    folder from frame ``after`` on, are ``/dev/full``: the encoder's and the PNG writer's own writes fail."""

    def fault(mp: pytest.MonkeyPatch) -> None:
        if not os.path.exists(FULL_DEVICE):
            pytest.skip(f"no {FULL_DEVICE} here")
        open_video, write = FrameWriter._open_video, FrameWriter.write

        def full_video(self, *args):
            self.tmp_path.symlink_to(FULL_DEVICE)
            return open_video(self, *args)

        def full_frames(self, frame):
            if self.kind == "frames" and self.frames_written >= after:
                (self.tmp_path / vsr.video._frame_name(self.frames_written)).symlink_to(FULL_DEVICE)
            return write(self, frame)

        mp.setattr(FrameWriter, "_open_video", full_video)
        mp.setattr(FrameWriter, "write", full_frames)

    return fault


# ------------------------------------------------------------------------------------------ checks after a row


def saved_at(iteration: int) -> Callable[[Path], None]:
    """The run's latest checkpoint is whole and at ``iteration``, with no temporary file left beside it."""

    def check(root: Path) -> None:
        latest = root / "run" / LATEST_CHECKPOINT
        assert read_checkpoint(latest)["iteration"] == iteration
        assert not [p.name for p in latest.parent.iterdir() if p.name.startswith(".")]

    return check


def one_whole_run(root: Path) -> None:
    """``run`` holds one run, finished, and not two mixed: iterations 1 to 4 once each."""
    log = [json.loads(line) for line in (root / "run" / LOG_FILE).read_text().splitlines()]
    assert [e["iteration"] for e in log if e["event"] == "train"] == [1, 2, 3, 4]
    assert (root / "run" / RESULT_FILE).is_file() and not (root / "run" / LOCK_FILE).exists()


def one_whole_test(root: Path) -> None:
    metrics = json.loads((root / "res" / METRICS_FILE).read_text())
    rows = (root / "res" / PER_FRAME_FILE).read_text().splitlines()
    assert metrics["frames"] == len(rows) - 1 > 0 and not (root / "res" / LOCK_FILE).exists()


# ------------------------------------------------------------------------------------------ the table


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]  # command-line arguments; {data} is the shared tiny data set
    message: str  # a regex the output must match (searched in the output with runs of whitespace joined)
    code: int = 2  # 2: a user error; 130: interrupted
    output: str | None = None  # the one path (relative to the test folder) the command may create or change
    setup: Callable[[Path], None] | None = None  # makes the bad input in the test folder
    fault: Callable[[pytest.MonkeyPatch], None] | None = None  # injects a fault (a full disk, Ctrl-C)
    then: Callable[[Path], None] | None = None  # checks the files afterwards (what was kept is whole)
    # Run the command twice at once, in two processes: the one that gets the folder waits at this function
    # ("module:attribute") until the other has ended; the message is the other's, {winner} the first's pid.
    race: str | None = None
    needs: str | None = None  # an optional module the command runs (an extra's); skipped, saying so, without it


def case(id: str, *args: str, message: str, **kwargs) -> Case:
    return Case(id, args, message, **kwargs)


UPSCALE = ("upscale", "tiny.pth", "lr")
TRAIN = ("train", "tiny.yaml", "--data", "{data}", "--device", "cpu")
TEST = ("test", "basicvsr", *TINY_SET, "--checkpoint", "tiny.pth")


def bad_value(id: str, setting: str, problem: str, recipe: str = "basicvsr") -> Case:
    """``vsr model RECIPE --set KEY=VALUE``, refused as "recipe key 'KEY' = <value>: <problem>" (a regex)."""
    key = setting.partition("=")[0]
    return case(id, "model", recipe, "--set", setting, message=re.escape(f"'{key}' = ") + problem)


def write_fails(id: str, code: int, message: str) -> Case:
    """``vsr upscale`` whose writing of out.mp4 fails with ``OSError(code)``."""
    return case(id, *UPSCALE, "-o", "out.mp4", message=message,
                fault=patch(FrameWriter, "write", raising(os_error(code))))  # fmt: skip


# The contract of "lose nothing, ever": grow this table whenever a new bad input or fault is found, so that it
# stays handled: one `error:` line naming the problem and the fix, the exit code, no traceback, and nothing
# touched but the command's own output.
CASES = [
    # -- recipe values that validation must refuse (they crashed later, inside torch)
    bad_value("channels-zero", "model.channels=0", r"0: must be an integer >= 1"),
    bad_value("num-blocks-negative", "model.aggregation.num_blocks=-1", r"-1: must be an integer >= 0"),
    bad_value("scale-three", "model.scale=3", r"3: must be a power of two >= 2"),
    bad_value("num-frames-zero", "data.num_frames=0", r"0: must be an integer >= 1"),
    bad_value("batch-size-zero", "data.batch_size=0", r"0: must be an integer >= 1"),
    bad_value("patch-zero", "data.lr_patch=0", r"0: must be an integer >= 1"),
    bad_value("lr-zero", "train.lr=0", r"0\.0: must be a number > 0"),
    bad_value("iterations-zero", "train.iterations=0", r"0: must be an integer >= 1"),
    bad_value("betas-one", "train.betas=[0.9]", r"\[0\.9\]: .*a list of 2 items"),
    bad_value("kernel-even", "model.flow.kernel_size=4", r"4: must be an odd integer"),
    bad_value("padding-four", "model.refill.temporal_padding=4", r"4: must be one of 2, 3", recipe="iconvsr"),
    bad_value("blocks-text", "model.aggregation.num_blocks=many", r"'many': must be an integer"),
    bad_value("ema-one", "train.ema=1", r"1: must be null or a number >= 0 and < 1"),
    case("unknown-recipe", "model", "basicvrs", message=r"no such recipe file or shipped recipe"),
    # -- user text is printed literally and bounded; YAML is parsed without aliases
    bad_value("markup-in-value", "model.propagation=x[/bold]", r"'x\[/bold\]': unknown propagation component"),
    case("markup-in-path", *UPSCALE, "-o", "[red]out/x.mp4", message=r"\[red\]out"),
    bad_value("long-value", "model.propagation=" + "x" * 100_000, r"'x+\.\.\.x+': unknown propagation component"),
    bad_value("bad-yaml-value", "model.channels=[1", r"'\[1': not a valid YAML value"),
    case("alias-bomb-value", "model", "basicvsr", "--set", "model.channels=[&a [1, 1], *a]",
         message=r"YAML aliases are not allowed"),
    case("alias-bomb-recipe", "model", "bomb.yaml", message=r"bomb\.yaml.*YAML aliases are not allowed",
         setup=write("bomb.yaml", ALIAS_BOMB)),
    case("alias-bomb-study", "study", "bomb.yaml", message=r"bomb\.yaml.*YAML aliases are not allowed",
         setup=write("bomb.yaml", ALIAS_BOMB)),
    case("binary-recipe", "model", "bin.yaml", message=r"bin\.yaml.*not a text file",
         setup=write("bin.yaml", b"\xff\xfe\x00\x01binary")),
    # -- names that are not names never become folders
    case("name-escapes", "train", "escape.yaml", "--data", "{data}", "--device", "cpu",
         message=r"recipe key 'name' = '\.\./\.\./x'.*runs/<name>",
         setup=lambda root: tiny_recipe(root, "../../x", "escape.yaml")),
    case("name-absolute", "train", "abs.yaml", "--data", "{data}", "--device", "cpu",
         message=r"recipe key 'name' = '/.*/some'.*runs/<name>",  # a recipe.yaml there was overwritten
         setup=lambda root: (tiny_recipe(root, str(root / "some"), "abs.yaml"), write("some/recipe.yaml", "x")(root))),
    # -- checkpoints that are not checkpoints
    case("empty-checkpoint", "upscale", "empty.pth", "lr", "-o", "out.mp4",
         message=r"not a checkpoint: empty\.pth: the file is empty", setup=write("empty.pth", b"")),
    case("text-checkpoint", "upscale", "basicvsr", "lr", "-o", "out.mp4", "--checkpoint", "notes.pth",
         message=r"not a checkpoint: notes\.pth: it is a text file", setup=write("notes.pth", "hello\n")),
    case("truncated-checkpoint", "upscale", "cut.pth", "lr", "-o", "out.mp4",
         message=r"not a checkpoint: cut\.pth: the file is truncated", setup=truncated_checkpoint),
    case("tensor-checkpoint", "upscale", "tensor.pth", "lr", "-o", "out.mp4",
         message=r"not a checkpoint: tensor\.pth holds a Tensor", setup=tensor_checkpoint),
    case("unknown-checkpoint", "upscale", "basicvsr", "lr", "-o", "out.mp4", "--checkpoint", "basicvsr_reds5",
         message=r"'basicvsr_reds5' is neither a file nor a published checkpoint"),
    # -- options
    case("device-banana", *UPSCALE, "-o", "out.mp4", "--device", "banana",
         message=r"device 'banana' is not a device; use e.g\. cpu, cuda"),
    case("device-banana-train", *TRAIN, "--device", "banana", "-o", "run", message=r"'banana' is not a device",
         setup=tiny_recipe),
    case("device-missing-gpu", "profile", "basicvsr", "--device", "cuda:99", message=r"cuda:99.*(not available|GPU)"),
    case("chunk-size-negative", *UPSCALE, "-o", "out.mp4", "--chunk-size", "-1",
         message=r"--chunk-size -1: must be at least 0"),
    case("chunk-overlap-negative", *UPSCALE, "-o", "out.mp4", "--chunk-overlap", "-2",
         message=r"--chunk-overlap -2: must be at least 0"),
    case("tile-overlap-negative", *UPSCALE, "-o", "out.mp4", "--tile-overlap", "-1",
         message=r"--tile-overlap -1: must be at least 0"),
    case("tile-zero", *UPSCALE, "-o", "out.mp4", "--tile", "0", message=r"--tile 0: must be at least 1"),
    case("tile-below-overlap", *UPSCALE, "-o", "out.mp4", "--tile", "8",
         message=r"--tile 8 must exceed twice --tile-overlap \(32\)"),
    case("profile-size", "profile", "basicvsr", "--size", "big", message=r"--size big: write the LR size as HxW"),
    # -- outputs that cannot be right, or would replace what vsr did not write
    case("output-dot", *UPSCALE, "-o", ".", message=r"--output \. is the current folder"),
    case("synth-out-dot", "data", "synth", "-o", ".", message=r"--out \. is the current folder"),
    case("train-out-dot", *TRAIN, "-o", ".", message=r"--out \. is the current folder", setup=tiny_recipe),
    case("train-out-file", *TRAIN, "-o", "afile", message=r"--out afile is a file, not a folder",
         setup=lambda root: (tiny_recipe(root), write("afile", "x")(root))),
    case("test-out-file", *TEST, "--data", "{data}", "-o", "afile", message=r"--out afile is a file",
         setup=write("afile", "x")),
    case("out-not-writable", *TRAIN, "-o", "new/run", message=r"--out new/run cannot be created: .* is not writable",
         setup=tiny_recipe, fault=patch(os, "access", lambda access: lambda *args, **kwargs: False)),
    case("output-under-file", *UPSCALE, "-o", "afile/out.mp4",
         message=r"--output afile/out\.mp4 cannot be created: .*afile is a file", setup=write("afile", "x")),
    case("output-holds-input", "upscale", "tiny.pth", "up/parent/frames", "-o", "up/parent", "--overwrite",
         message=r"up/parent: the output is a folder that holds the input .*up/parent/frames", setup=user_files),
    case("overwrite-foreign-folder", *UPSCALE, "-o", "mine", "--overwrite", setup=user_files,
         message=r"mine: --overwrite \(overwrite=True\) replaces only an earlier output of vsr, but it is a folder "
                 r"without vsr's marker file"),
    case("missing-source", "upscale", "tiny.pth", "nothing.mp4", "-o", "out.mp4",
         message=r"nothing\.mp4: no such video file or frame folder"),
    # -- data on disk
    case("jpg-among-png", *TEST, "--data", "set", "--device", "cpu",
         message=r"holds images that are not \.png frames \(00000003\.jpg\)", setup=jpg_among_png),
    case("truncated-run-json", "report", "runs", "-o", "rep", output="rep", setup=truncated_run_json,
         message=r"runs/study/base/seed0/run\.json is not valid JSON"),
    # -- a resumed run keeps its recipe
    case("resume-changed-recipe", *TRAIN, "-o", "run", "--resume", "--set", "train.lr=0.5", setup=checkpointed_run,
         message=r"started with another recipe; resuming would change train\.lr: 0\.001 → 0\.5.*--allow-changes"),
    # -- one writer per folder: two processes at once, one is refused naming the other
    case("two-trains-one-run", *TRAIN, "-o", "run", output="run", setup=tiny_recipe,
         race="vsr.training.trainer:Trainer._train", then=one_whole_run,
         message=r"run folder run is in use: pid {winner} on \S+ is writing to it"),
    case("two-tests-one-folder", *TEST, "--data", "{data}", "--device", "cpu", "-o", "res", output="res",
         race="vsr.evaluate:measure", then=one_whole_test,
         message=r"output folder res is in use: pid {winner} on \S+ is writing to it"),
    # -- a full disk: one line naming the path, and what was there before is whole
    case("disk-full-first-checkpoint", *TRAIN, "-o", "run", output="run", setup=tiny_recipe,
         fault=disk_fills_at("latest.pth"),
         message=r"the disk is full .* while writing run/checkpoints/latest\.pth.*So far: nothing was saved"),
    case("disk-full-later-checkpoint", *TRAIN, "-o", "run", output="run", setup=tiny_recipe,
         fault=disk_fills_at("latest.pth", after=1), then=saved_at(2),
         message=r"the disk is full .* while writing run/checkpoints/latest\.pth.*So far: the run is saved at "
                 r"iteration 2 \(run/checkpoints/latest\.pth\); continue it with --resume"),
    case("disk-full-video", *UPSCALE, "-o", "out.mp4", "--overwrite", setup=earlier_output("out.mp4"),
         fault=output_disk_full(), message=r"the disk is full .* while writing out\.mp4;"),
    case("disk-full-frames", *UPSCALE, "-o", "out", "--overwrite", setup=earlier_output("out"),
         fault=output_disk_full(after=1), message=r"the disk is full .* while writing out;"),
    # -- other file-system faults: one line naming the path and the fix
    write_fails("permission-denied", errno.EACCES, r"permission denied: out\.mp4"),
    write_fails("read-only", errno.EROFS, r"out\.mp4 is on a read-only file system"),
    write_fails("not-a-folder", errno.ENOTDIR, r"out\.mp4: a part of this path is a file"),
    write_fails("exists", errno.EEXIST, r"out\.mp4 already exists"),
    write_fails("vanished", errno.ENOENT, r"out\.mp4 does not exist"),
    write_fails("file-too-large", errno.EFBIG, r"out\.mp4 would be larger than its file system or a file-size limit"),
    # -- Ctrl-C says what was saved
    case("interrupt-before-checkpoint", *TRAIN, "-o", "run", code=130, output="run", setup=tiny_recipe,
         message=r"interrupted before the first checkpoint: nothing was saved to resume from",
         fault=patch(vsr.losses, "charbonnier", raising(KeyboardInterrupt()))),
    case("interrupt-after-checkpoint", *TRAIN, "-o", "run", code=130, output="run", setup=tiny_recipe,
         message=r"the run is saved at iteration 2 \(run/checkpoints/latest\.pth\); continue it with --resume: "
                 r"vsr train tiny\.yaml --out run --resume",
         fault=patch(vsr.losses, "charbonnier", raising(KeyboardInterrupt(), after=2))),
    case("interrupt-upscale", *UPSCALE, "-o", "out.mp4", code=130,
         message=r"interrupted: nothing was written to out\.mp4",
         fault=patch(FrameWriter, "write", raising(KeyboardInterrupt()))),
    # -- ONNX export and exported models
    case("export-frames-zero", "export", "tiny.pth", "-o", "m.onnx", "--frames", "0",
         message=r"--frames 0: must be at least 1"),
    case("export-not-onnx", "export", "tiny.pth", "-o", "m.pt", "--frames", "3",
         message=r"--output m\.pt: name an \.onnx file \(-o model\.onnx\) or a \.pth file for BasicSR"),
    case("export-onnx-without-frames", "export", "tiny.pth", "-o", "m.onnx",
         message=r"--frames is needed for an ONNX export: the frames per call, e\.g\. --frames 10"),
    case("export-basicsr-with-set", "export", "tiny.pth", "-o", "net_g.pth", "--set", "model.channels=8",
         message=r"--set changes a recipe, not weights: a BasicSR checkpoint takes no --set"),
    case("export-exists", "export", "tiny.pth", "-o", "m.onnx", "--frames", "3", setup=write("m.onnx", b"x"),
         message=r"--output m\.onnx exists; choose another path, or pass --overwrite"),
    case("export-without-onnx", "export", "tiny.pth", "-o", "m.onnx", "--frames", "3",
         message=r"ONNX export needs the onnx package, which is not installed: pip install 'vsr\[onnx\]'",
         fault=lambda mp: mp.setitem(sys.modules, "onnx", None)),
    case("onnx-without-onnxruntime", "upscale", "m.onnx", "lr", "-o", "out.mp4", setup=write("m.onnx", b"x"),
         message=r"running an ONNX model needs the onnxruntime package, which is not installed: pip install",
         fault=lambda mp: mp.setitem(sys.modules, "onnxruntime", None)),
    case("onnx-with-checkpoint", "upscale", "m.onnx", "lr", "-o", "out.mp4", "--checkpoint", "tiny.pth",
         "--dtype", "bfloat16", setup=write("m.onnx", b"x"),
         message=r"m\.onnx is an exported ONNX model: .* so --checkpoint, --dtype cannot apply"),
    case("onnx-not-onnx", "upscale", "m.onnx", "lr", "-o", "out.mp4", setup=write("m.onnx", b"not a model"),
         message=r"m\.onnx is not an ONNX model that ONNX Runtime can load", needs="onnxruntime"),
]  # fmt: skip


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    """``tiny.pth`` (a vsr checkpoint of a tiny BasicVSR) and ``lr/`` (three 16×24 PNG frames)."""
    root = tmp_path_factory.mktemp("assets")
    recipe = load_recipe("basicvsr", *(s for s in TINY_SET if s != "--set"))
    save_checkpoint(build_model(recipe), root / "tiny.pth", recipe=recipe.to_dict())
    (root / "lr").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (16, 24, 3), dtype=np.uint8)).save(root / "lr" / f"{i:08d}.png")
    return root


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """A synthetic set of 2 training clips and 1 validation clip of 3 frames, 32×32 GT (8×8 LR)."""
    root = tmp_path_factory.mktemp("synth") / "set"
    generate(root, frames=3, val_frames=3, clips_per_photo=1, val_clips_per_photo=1, size=(32, 32),
             photos=["coffee", "camera", "chelsea"], val_photos=["chelsea"])  # fmt: skip
    return root


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file and folder under the roots: path -> sha256 of the content (``dir`` for a folder, ``-> target``
    for a link: one left behind to ``/dev/full`` would read forever)."""
    found = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_symlink():
                found[str(path)] = f"-> {os.readlink(path)}"
            else:
                found[str(path)] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return found


RACE_S = 900  # seconds each process of a race may take to import torch and do its work (a few when idle)

#: One process of a race: ``vsr ARGS``, holding its folder at HOLD (the function that does the work) until
#: the file ``go`` appears in SIGNALS.
RACER = """
import importlib, os, sys, time
from pathlib import Path

hold, signals, args = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
module, _, attribute = hold.partition(":")
owner = importlib.import_module(module)
*path, name = attribute.split(".")
for part in path:
    owner = getattr(owner, part)
work = getattr(owner, name)

def held(*a, **k):
    (signals / f"holding-{os.getpid()}").touch()
    deadline = time.monotonic() + 900
    while not (signals / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return work(*a, **k)

setattr(owner, name, held)
from vsr.cli import app
app(args, prog_name="vsr")
"""


def race(hold: str, args: list[str], cwd: Path, signals: Path) -> tuple[int, str, int]:
    """Run ``vsr ARGS`` in two processes at once. The one that gets its folder waits at ``hold`` until the other
    has ended, then finishes (status 0 asserted). Returns the other's exit status, its output, and the pid of
    the one that got the folder."""
    racers = [
        subprocess.Popen([sys.executable, "-c", RACER, hold, str(signals), *args], cwd=cwd, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
        for _ in range(2)
    ]  # fmt: skip
    try:
        deadline = time.monotonic() + RACE_S
        while all(racer.poll() is None for racer in racers):
            assert time.monotonic() < deadline, "neither process ended: both got the folder"
            time.sleep(0.1)
        loser, winner = sorted(racers, key=lambda racer: racer.poll() is None)
        output = loser.communicate()[0]
        (signals / "go").touch()
        won = winner.communicate(timeout=RACE_S)[0]
        assert winner.returncode == 0, won
        assert sorted(p.name for p in signals.iterdir()) == ["go", f"holding-{winner.pid}"]  # the loser never did
        return loser.returncode, output, winner.pid
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
                racer.wait()


# ------------------------------------------------------------------------------------------ the tests


@pytest.mark.parametrize("row", CASES, ids=[c.id for c in CASES])
def test_a_bad_input_is_one_clear_line(row: Case, tmp_path_factory, monkeypatch, assets, data_root):
    if row.needs:
        reason = f"{row.needs} cannot be imported (pip install -e '.[onnx]')"
        pytest.importorskip(row.needs, reason=reason, exc_type=ImportError)
    root = tmp_path_factory.mktemp(row.id)
    shutil.copy(assets / "tiny.pth", root / "tiny.pth")
    shutil.copytree(assets / "lr", root / "lr")
    if row.setup:
        row.setup(root)
    monkeypatch.chdir(root)
    if row.fault:
        row.fault(monkeypatch)
    args = [a.format(data=data_root) for a in row.args]
    before = snapshot(root, data_root)
    if row.race:
        code, output, winner = race(row.race, args, root, tmp_path_factory.mktemp("signals"))
        message = row.message.replace("{winner}", str(winner))
    else:
        result = runner.invoke(app, args)
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        code, output, message = result.exit_code, result.output, row.message
    after = snapshot(root, data_root)
    assert_one_clear_line(row, code, output, message, before, after, root)


def assert_one_clear_line(row, code: int, output: str, message: str, before: dict, after: dict, root: Path) -> None:
    """What every bad-input row of the test_bad_inputs* and test_safety* tables checks of a command's run: no
    traceback, the row's exit ``code`` and ``message``, one ``error:`` line when refused (2), a short output,
    and nothing changed in the ``before``/``after`` snapshots but the row's ``output`` path (if any); then the
    row's own ``then`` check (if any)."""
    assert "Traceback" not in output
    assert code == row.code, output
    assert re.search(message, " ".join(output.split())), output
    if row.code == 2:
        assert sum(line.startswith("error:") for line in output.splitlines()) == 1, output
    assert len(output) <= MESSAGE_CHARS + 200
    kept = getattr(row, "output", None)
    allowed = root / kept if kept else None
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    outside = [p for p in changed if allowed is None or not Path(p).is_relative_to(allowed)]
    assert not outside, f"changed outside the command's output: {outside}"
    if getattr(row, "then", None):
        row.then(root)


@pytest.fixture(scope="module")
def tiny_model(assets):
    return build_model(load_recipe("basicvsr", *(s for s in TINY_SET if s != "--set")))


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (torch.full((2, 3, 8, 8), 200.0), r"values from 200 to 200, but float frames must be in \[0, 1\]"),
        (torch.full((2, 3, 8, 8), -0.5), r"values from -0\.5 to -0\.5, but float frames must be in \[0, 1\]"),
        (torch.full((2, 3, 8, 8), float("nan")), r"holds NaN or infinite values"),
        (torch.full((2, 3, 8, 8), float("inf")), r"holds NaN or infinite values"),
    ],
    ids=["0-255", "negative", "nan", "inf"],
)
def test_upscale_refuses_frames_outside_the_unit_range(tiny_model, frames, message):
    with pytest.raises(VSRError, match=message):
        upscale(tiny_model, frames, device="cpu", progress=False)

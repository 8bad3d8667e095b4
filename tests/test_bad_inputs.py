"""Bad inputs and faults, as a new user meets them: each must end in one clear line, never a traceback.

One table drives the command line in-process (typer's CliRunner) over bad recipes, values, paths, files and
faults (a full disk, Ctrl-C); each row says the exit code, a regex the message must match, and the one path
the command may write (every other file under the test's folder and the shared data set is compared by
sha256 before and after). A second, small table calls the library (``vsr.upscale``) with bad tensors.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import vsr.losses
from vsr import build_model, save_checkpoint
from vsr.cli import MESSAGE_CHARS, app
from vsr.data.synth import generate
from vsr.errors import VSRError
from vsr.recipe import load_recipe
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


def tiny_recipe(root: Path) -> None:
    (root / "tiny.yaml").write_text(TINY_RECIPE)


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
    """A fault: replace ``target.name`` by ``wrap(original)`` for the row."""
    return lambda mp: mp.setattr(target, name, wrap(getattr(target, name)))


def patch_item(mapping: dict, key: str, wrap: Callable) -> Callable[[pytest.MonkeyPatch], None]:
    return lambda mp: mp.setitem(mapping, key, wrap(mapping[key]))


def disk_full() -> OSError:
    return OSError(errno.ENOSPC, "No space left on device")  # as write() raises it: no file name


def os_error(code: int, path: str = "out.mp4") -> OSError:
    return OSError(code, "injected", path)


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


def case(id: str, *args: str, message: str, **kwargs) -> Case:
    return Case(id, args, message, **kwargs)


UPSCALE = ("upscale", "tiny.pth", "lr")
TRAIN = ("train", "tiny.yaml", "--data", "{data}", "--device", "cpu")

# The contract of "lose nothing, ever": grow this table whenever a new bad input or fault is found, so that it
# stays handled: one `error:` line naming the problem and the fix, the exit code, no traceback, and nothing
# touched but the command's own output.
CASES = [
    # -- recipe values that validation must refuse (they crashed later, inside torch)
    case("channels-zero", "model", "basicvsr", "--set", "model.channels=0",
         message=r"'model\.channels' = 0: must be an integer >= 1"),
    case("num-blocks-negative", "model", "basicvsr", "--set", "model.aggregation.num_blocks=-1",
         message=r"'model\.aggregation\.num_blocks' = -1: must be an integer >= 0"),
    case("scale-three", "model", "basicvsr", "--set", "model.scale=3",
         message=r"'model\.scale' = 3: must be a power of two >= 2"),
    case("num-frames-zero", "model", "basicvsr", "--set", "data.num_frames=0",
         message=r"'data\.num_frames' = 0: must be an integer >= 1"),
    case("batch-size-zero", "model", "basicvsr", "--set", "data.batch_size=0",
         message=r"'data\.batch_size' = 0: must be an integer >= 1"),
    case("patch-zero", "model", "basicvsr", "--set", "data.lr_patch=0", message=r"'data\.lr_patch' = 0"),
    case("lr-zero", "model", "basicvsr", "--set", "train.lr=0", message=r"'train\.lr' = 0\.0: must be a number > 0"),
    case("iterations-zero", "model", "basicvsr", "--set", "train.iterations=0",
         message=r"'train\.iterations' = 0: must be an integer >= 1"),
    case("betas-one", "model", "basicvsr", "--set", "train.betas=[0.9]", message=r"'train\.betas'.*a list of 2 items"),
    case("kernel-even", "model", "basicvsr", "--set", "model.flow.kernel_size=4",
         message=r"'model\.flow\.kernel_size' = 4: must be an odd integer"),
    case("padding-four", "model", "iconvsr", "--set", "model.refill.temporal_padding=4",
         message=r"'model\.refill\.temporal_padding' = 4: must be one of 2, 3"),
    case("blocks-text", "model", "basicvsr", "--set", "model.aggregation.num_blocks=many",
         message=r"'model\.aggregation\.num_blocks' = 'many': must be an integer"),
    case("unknown-recipe", "model", "basicvrs", message=r"no such recipe file or shipped recipe"),
    # -- user text is printed literally and bounded; YAML is parsed without aliases
    case("markup-in-value", "model", "basicvsr", "--set", "model.propagation=x[/bold]",
         message=r"'model\.propagation' = 'x\[/bold\]': unknown propagation component"),
    case("markup-in-path", *UPSCALE, "-o", "[red]out/x.mp4", message=r"\[red\]out"),
    case("long-value", "model", "basicvsr", "--set", "model.propagation=" + "x" * 100_000,
         message=r"= 'x+\.\.\.x+': unknown propagation component"),
    case("bad-yaml-value", "model", "basicvsr", "--set", "model.channels=[1",
         message=r"'model\.channels' = '\[1': not a valid YAML value"),
    case("alias-bomb-value", "model", "basicvsr", "--set", "model.channels=[&a [1, 1], *a]",
         message=r"YAML aliases are not allowed"),
    case("alias-bomb-recipe", "model", "bomb.yaml", message=r"bomb\.yaml.*YAML aliases are not allowed",
         setup=write("bomb.yaml", ALIAS_BOMB)),
    case("alias-bomb-study", "study", "bomb.yaml", message=r"bomb\.yaml.*YAML aliases are not allowed",
         setup=write("bomb.yaml", ALIAS_BOMB)),
    case("binary-recipe", "model", "bin.yaml", message=r"bin\.yaml.*not a text file",
         setup=write("bin.yaml", b"\xff\xfe\x00\x01binary")),
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
    # -- outputs that cannot be right
    case("output-dot", *UPSCALE, "-o", ".", message=r"--output \. is the current folder"),
    case("synth-out-dot", "data", "synth", "-o", ".", message=r"--out \. is the current folder"),
    case("train-out-dot", *TRAIN, "-o", ".", message=r"--out \. is the current folder", setup=tiny_recipe),
    case("train-out-file", *TRAIN, "-o", "afile", message=r"--out afile is a file, not a folder",
         setup=lambda root: (tiny_recipe(root), write("afile", "x")(root))),
    case("test-out-file", "test", "basicvsr", *TINY_SET, "--checkpoint", "tiny.pth", "--data", "{data}", "-o", "afile",
         message=r"--out afile is a file", setup=write("afile", "x")),
    case("out-not-writable", *TRAIN, "-o", "new/run", message=r"--out new/run cannot be created: .* is not writable",
         setup=tiny_recipe, fault=patch(os, "access", lambda access: lambda *args, **kwargs: False)),
    case("output-under-file", *UPSCALE, "-o", "afile/out.mp4",
         message=r"--output afile/out\.mp4 cannot be created: .*afile is a file", setup=write("afile", "x")),
    case("missing-source", "upscale", "tiny.pth", "nothing.mp4", "-o", "out.mp4",
         message=r"nothing\.mp4: no such video file or frame folder"),
    # -- data on disk
    case("jpg-among-png", "test", "basicvsr", *TINY_SET, "--checkpoint", "tiny.pth", "--data", "set", "--device",
         "cpu", message=r"holds images that are not \.png frames \(00000003\.jpg\)", setup=jpg_among_png),
    case("truncated-run-json", "report", "runs", "-o", "rep", output="rep", setup=truncated_run_json,
         message=r"runs/study/base/seed0/run\.json is not valid JSON"),
    # -- file-system faults: one line naming the path and the fix
    case("disk-full-upscale", *UPSCALE, "-o", "out.mp4", message=r"the disk is full .* while writing out\.mp4",
         output="out.mp4", fault=patch(FrameWriter, "write", raising(disk_full()))),
    case("disk-full-train", *TRAIN, "-o", "run", output="run", setup=tiny_recipe,
         message=r"the disk is full .* while writing run/checkpoints/\w+\.pth.*So far: nothing was saved",
         fault=patch(torch, "save", raising(disk_full()))),
    case("permission-denied", *UPSCALE, "-o", "out.mp4", message=r"permission denied: out\.mp4",
         fault=patch(FrameWriter, "write", raising(os_error(errno.EACCES)))),
    case("read-only", *UPSCALE, "-o", "out.mp4", message=r"out\.mp4 is on a read-only file system",
         fault=patch(FrameWriter, "write", raising(os_error(errno.EROFS)))),
    case("not-a-folder", *UPSCALE, "-o", "out.mp4", message=r"out\.mp4: a part of this path is a file",
         fault=patch(FrameWriter, "write", raising(os_error(errno.ENOTDIR)))),
    case("exists", *UPSCALE, "-o", "out.mp4", message=r"out\.mp4 already exists",
         fault=patch(FrameWriter, "write", raising(os_error(errno.EEXIST)))),
    case("vanished", *UPSCALE, "-o", "out.mp4", message=r"out\.mp4 does not exist",
         fault=patch(FrameWriter, "write", raising(os_error(errno.ENOENT)))),
    # -- Ctrl-C says what was saved
    case("interrupt-before-checkpoint", *TRAIN, "-o", "run", code=130, output="run", setup=tiny_recipe,
         message=r"interrupted before the first checkpoint: nothing was saved to resume from",
         fault=patch_item(vsr.losses.LOSSES, "charbonnier", raising(KeyboardInterrupt()))),
    case("interrupt-after-checkpoint", *TRAIN, "-o", "run", code=130, output="run", setup=tiny_recipe,
         message=r"the run is saved at iteration 2 \(run/checkpoints/latest\.pth\); continue it with --resume: "
                 r"vsr train tiny\.yaml --out run --resume",
         fault=patch_item(vsr.losses.LOSSES, "charbonnier", raising(KeyboardInterrupt(), after=2))),
    case("interrupt-upscale", *UPSCALE, "-o", "out.mp4", code=130,
         message=r"interrupted: nothing was written to out\.mp4",
         fault=patch(FrameWriter, "write", raising(KeyboardInterrupt()))),
    # -- the moving average of the weights, ONNX export and exported models
    case("ema-one", "model", "basicvsr", "--set", "train.ema=1",
         message=r"'train\.ema' = 1: must be null or a number >= 0 and < 1"),
    case("export-frames-zero", "export", "tiny.pth", "-o", "m.onnx", "--frames", "0",
         message=r"--frames 0: must be at least 1"),
    case("export-not-onnx", "export", "tiny.pth", "-o", "m.pt", "--frames", "3",
         message=r"--output m\.pt: name an \.onnx file"),
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
         message=r"m\.onnx is not an ONNX model that ONNX Runtime can load"),
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
    """Every file and folder under the roots: path -> sha256 of the content (``dir`` for a folder)."""
    found = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            found[str(path)] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return found


# ------------------------------------------------------------------------------------------ the tests


@pytest.mark.parametrize("row", CASES, ids=[c.id for c in CASES])
def test_a_bad_input_is_one_clear_line(row: Case, tmp_path, monkeypatch, assets, data_root):
    shutil.copy(assets / "tiny.pth", tmp_path / "tiny.pth")
    shutil.copytree(assets / "lr", tmp_path / "lr")
    if row.setup:
        row.setup(tmp_path)
    monkeypatch.chdir(tmp_path)
    if row.fault:
        row.fault(monkeypatch)
    before = snapshot(tmp_path, data_root)
    result = runner.invoke(app, [a.format(data=data_root) for a in row.args])
    after = snapshot(tmp_path, data_root)

    output = result.output
    assert "Traceback" not in output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == row.code, output
    assert re.search(row.message, " ".join(output.split())), output
    if row.code == 2:
        assert sum(line.startswith("error:") for line in output.splitlines()) == 1, output
    assert len(output) <= MESSAGE_CHARS + 200
    allowed = tmp_path / row.output if row.output else None
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    outside = [p for p in changed if allowed is None or not Path(p).is_relative_to(allowed)]
    assert not outside, f"changed outside the command's output: {outside}"


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

"""Bad inputs of issue 26 ("lose nothing, part 2"): sizes without bounds, hangs, tracebacks and unclear messages.

One table drives the command line in-process, as tests/test_bad_inputs.py does: each row says the exit code, a
regex the output must match, and the one path the command may write (everything else under the test's folder
is compared by sha256 before and after). A size that cannot fit is refused within :data:`SIZE_S` seconds,
before anything is built or allocated. A pipe is never read by the snapshot: named pipes are compared by
name alone.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from test_bad_inputs import (  # noqa: F401 (assets: a fixture)
    TINY_RECIPE,
    assert_one_clear_line,
    assets,
    checkpointed_run,
    runner,
)

import vsr.model
import vsr.video
from vsr import build_model, save_checkpoint
from vsr.checkpoints import VSR_FORMAT
from vsr.cli import app
from vsr.export import export_onnx
from vsr.recipe import Recipe, load_recipe

#: The most seconds a size refusal may take (it takes one or two; generous for a loaded machine).
SIZE_S = 20
UPSCALE = ("upscale", "tiny.pth", "lr", "-o", "out.mp4")


# ------------------------------------------------------------------------------------------ set-ups


def clip(name: str, times: list[float] | None = None, audio: bool = False, cut: float | None = None):
    """A set-up writing a 32×32 H.264 Matroska video ``name``: frames at ``times`` seconds (default 12 at 25
    fps), with a silent audio stream if ``audio``; ``cut`` keeps only that fraction of its bytes."""
    times = times if times is not None else [i / 25 for i in range(12)]

    def setup(root: Path) -> None:
        path = root / name
        with av.open(str(path), "w") as container:
            video = container.add_stream("libx264", rate=25)
            video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
            video.time_base = Fraction(1, 1000)
            sound = container.add_stream("pcm_s16le", rate=8000) if audio else None
            for i, t in enumerate(times):
                frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 10 * i % 255, np.uint8), format="rgb24")
                frame.pts, frame.time_base = round(t * 1000), Fraction(1, 1000)
                for packet in video.encode(frame):
                    container.mux(packet)
            for packet in video.encode(None):
                container.mux(packet)
            if sound is not None:
                samples = av.AudioFrame.from_ndarray(np.zeros((1, 4000), np.int16), format="s16", layout="mono")
                samples.sample_rate = 8000
                for packet in [*sound.encode(samples), *sound.encode(None)]:
                    container.mux(packet)
        if cut is not None:
            path.write_bytes(path.read_bytes()[: int(cut * path.stat().st_size)])

    return setup


def frame_folder(name: str, count: int, size: int) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        (root / name).mkdir()
        for i in range(count):
            Image.fromarray(np.full((size, size, 3), 5 * i, np.uint8)).save(root / name / f"{i:08d}.png")

    return setup


def fifo(root: Path) -> None:
    os.mkfifo(root / "pipe")


def fifo_with_writer(root: Path) -> None:
    """``pipe``, a named pipe that a thread writes ``clip.mkv`` into once a reader opens it."""
    clip("clip.mkv")(root)
    os.mkfifo(root / "pipe")
    data = (root / "clip.mkv").read_bytes()

    def write() -> None:
        with open(root / "pipe", "wb") as pipe:
            pipe.write(data)

    threading.Thread(target=write, daemon=True).start()


def checkpoint_without(key: str, recipe: object = None) -> Callable[[Path], None]:
    """``damaged.pth``: a vsr checkpoint of the tiny model lacking ``key``, its recipe replaced by ``recipe``."""

    def setup(root: Path) -> None:
        saved = torch.load(root / "tiny.pth", weights_only=True)
        saved.pop(key, None)
        if recipe is not None:
            saved["recipe"] = recipe
        assert saved["format"] == VSR_FORMAT
        torch.save(saved, root / "damaged.pth")

    return setup


def onnx_with_metadata(**entries: str) -> Callable[[Path], None]:
    """``m.onnx``: an ONNX model (an identity) whose vsr metadata holds ``entries`` (``scale``, ``frames``)."""

    def setup(root: Path) -> None:
        onnx = pytest.importorskip("onnx")
        helper = onnx.helper
        shape = ["n", 3, 3, "h", "w"]
        graph = helper.make_graph(
            [helper.make_node("Identity", ["lr"], ["hr"])], "identity",
            [helper.make_tensor_value_info("lr", onnx.TensorProto.FLOAT, shape)],
            [helper.make_tensor_value_info("hr", onnx.TensorProto.FLOAT, shape)],
        )  # fmt: skip
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        for key, value in {"scale": "4", "frames": "3", **entries}.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = f"vsr.{key}", value
        onnx.save(model, str(root / "m.onnx"))

    return setup


def _basicvsrpp_8() -> Recipe:
    return load_recipe(
        "basicvsrpp_tiny", "model.channels=8", "model.flow.widths=[8,8,8,8]", "model.upsampling.hr_channels=8"
    )


def basicvsrpp_checkpoint(root: Path) -> None:
    """``pp.pth``: a vsr checkpoint of an 8-channel BasicVSR++ (grid propagation, flow-guided deformable)."""
    recipe = _basicvsrpp_8()
    save_checkpoint(build_model(recipe), root / "pp.pth", recipe=recipe.to_dict())


def basicvsrpp_onnx_unchecked(root: Path) -> None:
    """``pp.onnx``: that BasicVSR++ exported for 3 frames without the check (``vsr export --no-check``): its grid
    propagation's sizes are frozen at the traced size, so ONNX Runtime fails at any other."""
    recipe = _basicvsrpp_8()
    export_onnx(build_model(recipe), root / "pp.onnx", 3, recipe=recipe.to_dict(), check=False)


def memory_of(gigabytes: float) -> Callable[[pytest.MonkeyPatch], None]:
    """A fault: the machine has this much memory (a size the issue met on a machine of 16 GB is refused on any)."""

    def fault(mp: pytest.MonkeyPatch) -> None:
        for module in (vsr.model, importlib.import_module("vsr.upscale")):  # vsr.upscale is also the function
            mp.setattr(module, "machine_memory", lambda device="cpu": int(gigabytes * 10**9))

    return fault


def pipe_wait(seconds: float) -> Callable[[pytest.MonkeyPatch], None]:
    return lambda mp: mp.setattr(vsr.video, "PIPE_WAIT_S", seconds)


# ------------------------------------------------------------------------------------------ checks after a row


def frames_in(name: str, count: int) -> Callable[[Path], None]:
    def check(root: Path) -> None:
        assert len(list(vsr.video.FrameReader(root / name))) == count

    return check


# ------------------------------------------------------------------------------------------ the table


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]  # command-line arguments; {pipe_fd} is a pipe's read end (a shell's <(...))
    message: str  # a regex the output must match (runs of whitespace joined)
    code: int = 2  # 2: refused; 0: done (the output is written, and the message says what it left out)
    output: str | None = None  # the one path the command may create
    setup: Callable[[Path], None] | None = None
    fault: Callable[[pytest.MonkeyPatch], None] | None = None
    then: Callable[[Path], None] | None = None
    seconds: float | None = None  # the command ends within this many seconds (a size refused up front)
    needs: str | None = None  # an optional module the row needs; skipped, saying so, without it


def case(id: str, *args: str, message: str, **kwargs) -> Case:
    return Case(id, args, message, **kwargs)


TOO_LARGE = r"the model is too large for this machine: .*make [\d,]+ parameters, [\d,.]+ GB .*more than the [\d,.]+ GB"

CASES = [
    # -- sizes: refused from what they need before anything is built or allocated, giving the size and the limit
    case("num-blocks-huge", "model", "basicvsr", "--set", "model.aggregation.num_blocks=100000", fault=memory_of(16),
         message=r"model\.aggregation\.num_blocks=100000, .*make 14,773,059,951 parameters, 59\.1 GB at 4 bytes per "
                 r"parameter of weights, more than the 16\.0 GB of memory here \(cpu\)\. Lower model\.channels",
         seconds=SIZE_S),
    case("num-blocks-absurd", "model", "basicvsr", "--set", "model.aggregation.num_blocks=100000000",
         message=TOO_LARGE, seconds=SIZE_S),
    case("channels-huge", "model", "basicvsr", "--set", "model.channels=9000", message=TOO_LARGE, seconds=SIZE_S),
    case("channels-huge-upscale", *UPSCALE, "--set", "model.channels=9000", message=TOO_LARGE, seconds=SIZE_S),
    case("train-model-too-large", "train", "tiny.yaml", "--out", "run", "--device", "cpu", "--set",
         "model.channels=600", fault=memory_of(0.1),
         message=r"model\.channels=600, .*make [\d,]+ parameters, [\d.]+ MB at 16 bytes per parameter to train "
                 r"\(weights, gradients and optimizer state\), more than the 100\.0 MB of memory here", seconds=SIZE_S),
    case("scale-huge", "profile", "basicvsr", "--set", "model.scale=1024",
         message=r"'model\.scale' = 1024: must be a power of two >= 2 \(2, 4, 8, \.\.\.\) and <= 16", seconds=SIZE_S),
    case("profile-frames-huge", "profile", "basicvsr", "--frames", "100000",
         message=r"profile: 100000 frames of 180x320 LR pixels need about [\d,.]+ GB .*more than the [\d,.]+ GB of "
                 r"memory here \(cpu\); use fewer frames or a smaller size", seconds=SIZE_S),
    case("profile-size-huge", "profile", "basicvsr", "--size", "20000x20000", "--frames", "2",
         message=r"profile: 2 frames of 20000x20000 LR pixels need about [\d,.]+ GB", seconds=SIZE_S),
    case("export-frames-huge", "export", "tiny.pth", "-o", "m.onnx", "--frames", "100000",
         message=r"export --frames 100000: 100000 frames of 22x17 LR pixels \(a batch of 2\) need about [\d,.]+ GB "
                 r".*to trace its [\d,]+ ops\), more than the [\d,.]+ GB of memory here", seconds=SIZE_S,
         needs="onnxruntime"),
    case("upscale-chunk-too-large", "upscale", "tiny.pth", "long", "-o", "out.mp4", "--chunk-size", "0",
         setup=frame_folder("long", 40, 64), fault=memory_of(0.01),
         message=r"upscale: 40 frames of 64x64 LR pixels need about [\d.]+ MB .*more than the 10\.0 MB of memory here "
                 r"\(cpu\); lower --chunk-size \(chunk_size: frames per pass\), or set --tile", seconds=SIZE_S),
    # -- hangs: a pipe is read once, and one without a writer is refused after a bounded wait
    case("fifo-without-writer", "upscale", "tiny.pth", "pipe", "-o", "out.mp4", setup=fifo, fault=pipe_wait(1),
         message=r"pipe: a named pipe \(FIFO\) that nothing wrote to in 1 seconds; start the program that writes",
         seconds=SIZE_S),
    case("fifo-with-writer", "upscale", "tiny.pth", "pipe", "-o", "out.mkv", code=0, output="out.mkv",
         setup=fifo_with_writer, message=r"wrote 12 frames of 128x128 at 25\.000 fps to out\.mkv",
         then=frames_in("out.mkv", 12)),
    case("process-substitution", "upscale", "tiny.pth", "/dev/fd/{pipe_fd}", "-o", "out.mkv", code=0,
         output="out.mkv", setup=clip("clip.mkv"), message=r"wrote 12 frames of 128x128",
         then=frames_in("out.mkv", 12)),
    # -- tracebacks that are now one line
    case("fps-divides-by-zero", *UPSCALE, "--fps", "1/0", message=r"--fps: frame rate '1/0' divides by zero"),
    case("fps-infinite", *UPSCALE, "--fps", "inf", message=r"--fps: frame rate 'inf' is not a number"),
    case("fps-huge", *UPSCALE, "--fps", "1e9",
         message=r"--fps: frame rate '1e9' must be above 0 \(at least 1/65535\) and at most 1000"),
    case("fps-zero", *UPSCALE, "--fps", "0", message=r"--fps: frame rate '0' must be above 0"),
    case("checkpoint-without-model", "upscale", "damaged.pth", "lr", "-o", "out.mp4",
         setup=checkpoint_without("model"),
         message=r"damaged\.pth is a vsr checkpoint without its 'model' \(the weights\); it holds only format, recipe"),
    case("checkpoint-recipe-text", "upscale", "damaged.pth", "lr", "-o", "out.mp4",
         setup=checkpoint_without("nothing", recipe="basicvsr"),
         message=r"damaged\.pth: its recipe is a str, not a mapping"),
    case("onnx-scale-text", "upscale", "m.onnx", "lr", "-o", "out.mp4", setup=onnx_with_metadata(scale="four"),
         message=r"m\.onnx: its metadata vsr\.scale = 'four' is not a whole number from 1 to 16", needs="onnxruntime"),
    case("onnx-frames-negative", "upscale", "m.onnx", "lr", "-o", "out.mp4", setup=onnx_with_metadata(frames="-3"),
         message=r"its metadata vsr\.frames = '-3' is not a whole number", needs="onnxruntime"),
    case("onnx-frames-not-its-input", "upscale", "m.onnx", "lr", "-o", "out.mp4", setup=onnx_with_metadata(frames="9"),
         message=r"its metadata vsr\.frames = 9, but its input takes 3 frames", needs="onnxruntime"),
    case("export-opset-unknown", "export", "tiny.pth", "-o", "m.onnx", "--frames", "3", "--opset", "99",
         message=r"opset 99: the exporter writes ONNX opsets 16 \(GridSample\) to \d+", needs="onnxruntime"),
    case("onnx-recipe-not-yaml", "upscale", "m.onnx", "lr", "-o", "out.mp4",
         setup=onnx_with_metadata(recipe="a: [1"), message=r"its metadata vsr\.recipe is not valid YAML",
         needs="onnxruntime"),
    case("crf-above-x264", *UPSCALE, "--crf", "99",
         message=r"out\.mp4: crf 99 is outside what the libx264 encoder takes \(0 to 51"),
    case("crf-above-vp9", "upscale", "tiny.pth", "lr", "-o", "out.webm", "--crf", "64",
         message=r"out\.webm: crf 64 is outside what the libvpx-vp9 encoder takes \(0 to 63"),
    case("crf-for-frames", "upscale", "tiny.pth", "lr", "-o", "frames", "--crf", "20",
         message=r"frames: crf 20 sets a video encoder's quality, but this output is a folder of PNG frames"),
    # -- unclear messages that now say what happened and what to do
    case("lr-exponent", "model", "basicvsr", "--set", "train.lr=5e-4", "--recipe", code=0,
         message=r"lr: 0\.0005"),
    case("basicvsrpp-export", "export", "pp.pth", "-o", "pp.onnx", "--frames", "3", setup=basicvsrpp_checkpoint,
         message=r"propagation component 'grid' \(GridPropagation at propagation\) fails at another size .*"
                 r"upscale with its checkpoint in PyTorch instead", needs="onnxruntime"),
    case("basicvsrpp-onnx-unchecked", "upscale", "pp.onnx", "lr", "-o", "out.mp4", setup=basicvsrpp_onnx_unchecked,
         message=r"pp\.onnx: ONNX Runtime cannot run it on input \(1, 3, 3, 16, 24\) \(node \S+ fails\); a file "
                 r"exported unchecked \(--no-check\) can have sizes frozen at the traced 19x27: export it again",
         needs="onnxruntime"),
    case("variable-frame-rate", "upscale", "tiny.pth", "vfr.mkv", "-o", "out.mkv", code=0, output="out.mkv",
         setup=clip("vfr.mkv", [i / 50 for i in range(6)] + [0.1 + i / 5 for i in range(1, 7)]),
         message=r"wrote 12 frames .*note: the input has a variable frame rate; the output plays its frames at a "
                 r"constant", then=frames_in("out.mkv", 12)),
    case("truncated-mkv", "upscale", "tiny.pth", "cut.mkv", "-o", "out.mkv",
         setup=clip("cut.mkv", [i / 25 for i in range(100)], cut=0.5),
         message=r"cut\.mkv: the video ended after .* seconds .*the file is truncated"),
    case("audio-dropped", "upscale", "tiny.pth", "sound.mkv", "-o", "out.mkv", code=0, output="out.mkv",
         setup=clip("sound.mkv", audio=True),
         message=r"note: the input's audio \(1 stream\) is not in the output \(vsr writes video only\); to add the "
                 r"audio back: ffmpeg -i out\.mkv -i"),
    case("allow-changes-without-resume", "train", "tiny.yaml", "--out", "run", "--allow-changes",
         setup=checkpointed_run, message=r"--allow-changes applies only with --resume"),
]  # fmt: skip


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root``: sha256 of a file, ``dir``, ``-> target`` of a link, ``fifo`` (never read)."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            found[str(path)] = f"-> {os.readlink(path)}"
        elif stat.S_ISFIFO(path.stat().st_mode):
            found[str(path)] = "fifo"
        else:
            found[str(path)] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.mark.parametrize("row", CASES, ids=[c.id for c in CASES])
def test_a_bad_input_is_one_clear_line(row: Case, tmp_path, monkeypatch, assets):  # noqa: F811 (the fixture)
    if row.needs:
        pytest.importorskip(row.needs, reason=f"{row.needs} cannot be imported (pip install -e '.[onnx]')",
                            exc_type=ImportError)  # fmt: skip
    root = tmp_path / row.id
    root.mkdir()
    shutil.copy(assets / "tiny.pth", root / "tiny.pth")
    shutil.copytree(assets / "lr", root / "lr")
    (root / "tiny.yaml").write_text(TINY_RECIPE)
    if row.setup:
        row.setup(root)
    monkeypatch.chdir(root)
    if row.fault:
        row.fault(monkeypatch)
    args, pipe = list(row.args), None
    if any("{pipe_fd}" in a for a in args):  # a shell's <(cat clip.mkv): a pipe's read end, named by /dev/fd
        read_end, write_end = os.pipe()
        pipe = threading.Thread(target=lambda: _write_and_close(write_end, (root / "clip.mkv").read_bytes()))
        pipe.start()
        args = [a.format(pipe_fd=read_end) for a in args]
    before = snapshot(root)
    began = time.monotonic()
    try:
        result = runner.invoke(app, args)
    finally:
        if pipe is not None:
            os.close(read_end)
            pipe.join(timeout=10)
    seconds = time.monotonic() - began
    after = snapshot(root)

    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    if row.seconds is not None:
        assert seconds < row.seconds, f"took {seconds:.1f} s: {result.output}"
    assert_one_clear_line(row, result.exit_code, result.output, row.message, before, after, root)


def _write_and_close(fd: int, data: bytes) -> None:
    try:
        os.write(fd, data)  # a few kB: the pipe's buffer holds them
    finally:
        os.close(fd)

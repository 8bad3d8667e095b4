"""What bounded-memory upscaling costs: PSNR of chunked / tiled output against whole-sequence output, and
peak memory against video length.

    python benchmarks/bench_upscale.py --checkpoint runs/basicvsr_tiny/checkpoints/latest.pth

1. Quality: a long clip of the embedded data's validation photographs (rendered by the synthetic generator,
   BI-degraded) is upscaled whole, in overlapping chunks, and in tiles. Printed: PSNR of each against the
   GT, and PSNR of chunked/tiled output against the whole-sequence output (target: within 0.05 dB of the
   whole-sequence PSNR).
2. Memory: for increasing lengths, a child process streams generated frames through ``vsr.upscale`` to a
   PNG folder and reports its peak resident memory (``ru_maxrss``); the target is a flat line.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from vsr.checkpoints import pretrained_model
from vsr.data.degradations import bi
from vsr.data.scenes import render_clip
from vsr.data.synth import DEFAULT_VAL_PHOTOS
from vsr.metrics import psnr
from vsr.upscale import upscale


def long_clip(frames: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    clip = render_clip(DEFAULT_VAL_PHOTOS[0], list(DEFAULT_VAL_PHOTOS), seed=7, frames=frames, size=(size, size))
    gt = torch.from_numpy(clip.frames).permute(0, 3, 1, 2).float() / 255
    return bi(gt, 4).clamp(0, 1), gt


def quality(args) -> None:
    model = pretrained_model(args.checkpoint).eval()
    lr, gt = long_clip(args.frames, args.size)
    common = {"device": "cpu", "progress": False}
    whole = upscale(model, lr, chunk_size=None, **common)
    base = psnr(whole, gt).mean().item()
    print(f"clip: {args.frames} frames, LR {lr.shape[-2]}x{lr.shape[-1]}; whole-sequence PSNR {base:.3f} dB")
    print(f"{'setting':44s} {'PSNR vs GT':>10s} {'delta':>8s} {'PSNR vs whole':>14s}")
    settings = [
        ("chunks of 20, warm-up 8", {"chunk_size": 20, "chunk_overlap": 8}),
        ("chunks of 20, warm-up 4", {"chunk_size": 20, "chunk_overlap": 4}),
        ("chunks of 20, no warm-up (cold, like MMagic)", {"chunk_size": 20, "chunk_overlap": 0}),
        ("tiles of 32 px, margin 8, whole sequence", {"chunk_size": None, "tile": 32, "tile_overlap": 8}),
        ("tiles of 48 px, margin 16 + chunks 20/8",
         {"chunk_size": 20, "chunk_overlap": 8, "tile": 48, "tile_overlap": 16}),
    ]  # fmt: skip
    for name, kwargs in settings:
        out = upscale(model, lr, **kwargs, **common)
        value = psnr(out, gt).mean().item()
        agreement = psnr(out, whole).mean().item()
        print(f"{name:44s} {value:10.3f} {value - base:+8.3f} {agreement:14.2f}")


def child(args) -> None:
    """One streaming run in a fresh process; prints its peak RSS."""
    model = pretrained_model(args.checkpoint).eval()
    size = args.size // 4

    def frames():
        g = torch.Generator().manual_seed(0)
        for _ in range(args.frames):
            yield torch.rand(3, size, size, generator=g)

    with tempfile.TemporaryDirectory() as out:
        upscale(model, frames(), Path(out) / "frames", chunk_size=20, chunk_overlap=8, device="cpu", progress=False)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"frames": args.frames, "peak_rss_mib": peak_mib}))


def memory(args) -> None:
    print(f"{'frames':>8s} {'peak RSS (MiB)':>15s}")
    for frames in args.lengths:
        cmd = [sys.executable, __file__, "--child", "--checkpoint", str(args.checkpoint), "--frames", str(frames)]
        cmd += ["--size", str(args.size)]
        result = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        print(f"{result['frames']:8d} {result['peak_rss_mib']:15.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a vsr checkpoint (it carries its recipe)")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--size", type=int, default=256, help="GT frame size (LR = size / 4)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[50, 100, 200, 400])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.child:
        child(args)
        return
    quality(args)
    print()
    memory(args)


if __name__ == "__main__":
    main()

"""Time vsr's BasicVSR against BasicSR's implementation: same weights, same input, same process.

BasicSR 1.4.2 comes from the PyPI sdist (see ``tests/basicsr_reference.py``, shared with the test suite).
Both models run in inference mode, interleaved, ``--repeats`` times after a warm-up; the medians and their
ratio are printed, with the max abs difference of the outputs (fp32: the outputs must agree within 1e-4
for the timing to count).

    python benchmarks/bench_reference.py                      # CPU, 10 frames of 64×112 LR
    python benchmarks/bench_reference.py --device cuda --size 180x320 --dtype bfloat16 --compile

On CUDA, the paper's setting is a 10-frame 180×320 LR clip (×4 -> 720×1280); the paper reports 63 ms/frame
for BasicVSR on a V100.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from vsr import build_model
from vsr.checkpoints import extract_state_dict, load_state_dict

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the reference lives with the tests
from basicsr_reference import import_basicsr


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--size", default="64x112", help="LR height x width")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--compile", action="store_true", help="torch.compile vsr's model")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    h, w = (int(v) for v in args.size.split("x"))

    reference = import_basicsr("basicsr.archs.basicvsr_arch").BasicVSR(num_feat=64, num_block=30).eval().to(device)
    ours = build_model("basicvsr").eval()
    load_state_dict(ours, extract_state_dict({"params": reference.state_dict()}))
    ours = ours.to(device, memory_format=torch.channels_last)
    dtype = getattr(torch, args.dtype)
    runner = torch.compile(ours) if args.compile else ours
    lrs = torch.rand(1, args.frames, 3, h, w, device=device, generator=torch.Generator().manual_seed(0))

    def run_ours():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            return runner(lrs)

    with torch.inference_mode():
        expected = reference(lrs)
        got = run_ours().float()
        diff = (got - expected).abs().max().item()
        run_ours()  # warm-up (compilation, allocator)
        ours_times, reference_times = [], []
        for _ in range(args.repeats):
            reference_times.append(timed(lambda: reference(lrs), device))
            ours_times.append(timed(run_ours, device))
    ref_ms = statistics.median(reference_times) / args.frames * 1e3
    ours_ms = statistics.median(ours_times) / args.frames * 1e3
    print(f"device {device} ({torch.get_num_threads()} threads), {args.frames} frames of {h}x{w} LR, {args.dtype}")
    print(f"BasicSR BasicVSR : {ref_ms:9.2f} ms/frame (median of {args.repeats})")
    print(f"vsr BasicVSR     : {ours_ms:9.2f} ms/frame (channels-last{', compiled' if args.compile else ''})")
    print(f"speed-up         : {ref_ms / ours_ms:9.2f}x")
    print(f"max abs diff     : {diff:.2e} ({'within' if diff <= 1e-4 else 'OUTSIDE'} 1e-4)")
    if device.type == "cuda":
        print(f"peak memory      : {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()

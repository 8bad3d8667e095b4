"""Why a model draws little from other frames on real clips: each clip's temporal gain against its motion.

    python benchmarks/real_motion.py runs/basicvsr_tiny              # the main job's test sets, ~20 s
    python benchmarks/real_motion.py runs/basicvsr_tiny --zero-flow --stride 3   # and two swaps, ~1 min

Reads a finished run that scored test sets (``data.test``; the main job scores ``synthetic`` and ``real``):
for each set, each clip's mean temporal gain (``test/<name>/temporal/temporal_gain.csv``, ``vsr probe``'s)
beside the clip's global motion: the median over consecutive LR frames of the shift phase correlation finds
(``skimage.registration.phase_cross_correlation``, 1/20 px), in LR pixels per frame. Then, over every clip of
every set, the Spearman rank correlation of gain and motion, and each set's mean motion and gain.

``--zero-flow`` probes the same weights again with the flow estimator replaced by one that returns zero flow:
alignment then warps nothing, and the drop in gain is what motion compensation earns on each set.

``--stride S`` probes the same weights on each set's clips cut two ways with the same number of frames n: the
first n frames, and every S-th frame (0, S, 2S, ...): the same content moving S times as fast per frame. A
gain that rises with the stride says the clips' own motion, not the model, bounds what other frames give.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from skimage.registration import phase_cross_correlation
from torch import Tensor, nn

from vsr.checkpoints import load_checkpoint
from vsr.data.datasets import TestClips
from vsr.data.layouts import ClipSet, open_dataset
from vsr.data.specs import data_test_specs, evaluation_spec
from vsr.model import assemble
from vsr.probe import GAIN_FILE, TEMPORAL_DIR, run_probe
from vsr.recipe import load_recipe
from vsr.training.files import LAST_CHECKPOINT, RECIPE_FILE, RESULT_FILE, TEST_DIR


class ZeroFlow(nn.Module):
    """A flow estimator that sees no motion: ``(n, 3, h, w), (n, 3, h, w) -> (n, 2, h, w)`` zeros."""

    def forward(self, ref: Tensor, supp: Tensor) -> Tensor:
        return ref.new_zeros(ref.shape[0], 2, *ref.shape[-2:])


def clip_motion(lq: Tensor) -> float:
    """Median global shift between consecutive frames of ``lq`` ``(t, 3, h, w)``, in pixels per frame."""
    gray = lq.mean(dim=1).numpy()
    shifts = [phase_cross_correlation(a, b, upsample_factor=20)[0] for a, b in itertools.pairwise(gray)]
    return float(np.median(np.hypot(*np.array(shifts).T)))


def strided(source: ClipSet, stride: int) -> tuple[ClipSet, ClipSet]:
    """``source``'s clips as their first n frames and as every ``stride``-th frame (n frames each)."""

    def cut(clip, frames: slice):
        return dataclasses.replace(clip, gt=clip.gt[frames], lr=None if clip.lr is None else clip.lr[frames])

    first, every = [], []
    for clip in source.clips:
        n = math.ceil(len(clip) / stride)
        first.append(cut(clip, slice(0, n)))
        every.append(cut(clip, slice(0, None, stride)))
    return dataclasses.replace(source, clips=first), dataclasses.replace(source, clips=every)


def mean_motion(source: ClipSet) -> float:
    clips = TestClips(source)
    return float(np.mean([clip_motion(clips[i]["lq"]) for i in range(len(clips))]))


def spearman(x: pd.Series, y: pd.Series) -> float:
    return float(np.corrcoef(x.rank(), y.rank())[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="a finished run folder whose recipe has data.test")
    parser.add_argument("--zero-flow", action="store_true", help="also probe the weights with zero flow")
    parser.add_argument("--stride", type=int, default=0, help="also probe every S-th frame against the first n")
    args = parser.parse_args()
    recipe = load_recipe(args.run / RECIPE_FILE)
    scored = json.loads((args.run / RESULT_FILE).read_text()).get("test") or {}
    if not scored:
        raise SystemExit(f"{args.run} scored no test sets: train a recipe with data.test (e.g. basicvsr_tiny)")
    model, zero_flow = assemble(recipe.model), None
    load_checkpoint(model, args.run / LAST_CHECKPOINT)
    if args.zero_flow:
        zero_flow = assemble(recipe.model)
        load_checkpoint(zero_flow, args.run / LAST_CHECKPOINT)
        zero_flow.flow = ZeroFlow()
    rows, summary, strides = [], [], []
    for name, record in scored.items():
        spec = data_test_specs(recipe)[name]  # as the run opened it
        source = open_dataset(evaluation_spec(recipe) if spec is None else spec)
        gain = pd.read_csv(args.run / TEST_DIR / name / TEMPORAL_DIR / GAIN_FILE)
        per_clip = gain.groupby("clip")["gain"].mean()
        clips = TestClips(source)
        motion = {clips[i]["clip"]: clip_motion(clips[i]["lq"]) for i in range(len(clips))}
        for clip, value in per_clip.items():
            rows.append({"set": name, "clip": clip, "motion (LR px/frame)": motion[clip], "gain (dB)": value})
        line = {"set": name, "clips": len(per_clip), "mean motion": np.mean(list(motion.values())),
                "gain (dB)": record["temporal_gain"]}  # fmt: skip
        if zero_flow is not None:
            with torch.inference_mode():
                line["gain, zero flow (dB)"] = run_probe(zero_flow, data=source, recipe=recipe, field_clips=0).mean_gain
        summary.append(line)
        if args.stride > 1:
            for label, cut in zip(("stride 1", f"stride {args.stride}"), strided(source, args.stride), strict=True):
                with torch.inference_mode():
                    gain_cut = run_probe(model, data=cut, recipe=recipe, field_clips=0).mean_gain
                strides.append({"set": name, "frames": label, "n": len(cut.clips[0]), "mean motion": mean_motion(cut),
                                "gain (dB)": gain_cut})  # fmt: skip
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 120, "display.max_rows", 200, "display.float_format", "{:.3f}".format):
        print(table.to_string(index=False))
        print()
        print(pd.DataFrame(summary).to_string(index=False))
        if strides:
            print()
            print(pd.DataFrame(strides).to_string(index=False))
    rho = spearman(table["motion (LR px/frame)"], table["gain (dB)"])
    print(f"\nSpearman rank correlation of motion and gain over {len(table)} clips: {rho:.2f}")


if __name__ == "__main__":
    main()

"""The embedded synthetic set with slower motion, for the real-clip temporal-gain investigation (docs/data.md,
"Why the temporal gain is small on real clips"); not a vsr option.

    python benchmarks/slow_motion_synth.py /tmp/synth_slow          # ~4 min on one core
    vsr train recipes/basicvsr_tiny.yaml --data /tmp/synth_slow --set 'data.val={layout: synth, split: val}' \\
        --out runs/slow_motion                                     # scored on the usual val split and real clips

The same photographs, clips and seeds as ``vsr data synth``, with the lower ends of the camera and layer speed
ranges (``vsr.data.scenes.CAMERA_SPEED``, ``LAYER_SPEED``, log-uniform in LR pixels per frame) ten times lower:
from 0.02 and 0.03 instead of 0.2 and 0.3, so that the training clips reach the near-static motion of the
real clips. Its ``synth.json`` records the change under ``args.speeds``, so vsr never takes it for the default
set.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import vsr.data.scenes as scenes
from vsr.atomic import write_json
from vsr.data.synth import generate

SLOW_CAMERA_SPEED = (0.02, scenes.CAMERA_SPEED[1])
SLOW_LAYER_SPEED = (0.03, scenes.LAYER_SPEED[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="a new folder for the set")
    args = parser.parse_args()
    scenes.CAMERA_SPEED, scenes.LAYER_SPEED = SLOW_CAMERA_SPEED, SLOW_LAYER_SPEED
    info = generate(args.out, workers=1)  # one process: the lowered speeds live in this one
    description = json.loads((info.root / "synth.json").read_text())
    description["args"]["speeds"] = {"camera": SLOW_CAMERA_SPEED, "layer": SLOW_LAYER_SPEED}
    write_json(description, info.root / "synth.json")
    print(f"{info.root}: {sum(len(c) for c in info.clips.values())} clips, speeds lowered to {SLOW_CAMERA_SPEED} "
          f"(camera) and {SLOW_LAYER_SPEED} (layers) LR px/frame")  # fmt: skip


if __name__ == "__main__":
    main()

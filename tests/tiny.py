"""What several test modules train on: a tiny model section and a tiny synthetic set (seconds on a CPU), a
run stopped by Ctrl-C midway, and two processes started as ``torchrun`` starts them (DDP over gloo)."""

import os
import socket
from pathlib import Path

import pytest
import torch

import vsr.losses
from vsr.data import synth
from vsr.training import train

#: An 8-channel BasicVSR with a 2-level SPyNet, and the data section that trains it on 8×8 LR crops.
TINY_MODEL = {
    "channels": 8,
    "flow": {"name": "spynet", "levels": 2, "widths": [8, 8, 8, 8], "kernel_size": 3},
    "aggregation": {"name": "residual", "num_blocks": 1},
    "upsampling": {"name": "pixel_shuffle", "hr_channels": 8},
}
TINY_DATA = {"num_frames": 3, "lr_patch": 8, "batch_size": 2, "workers": 0}

#: Overrides that shrink a shipped recipe (basicvsr, iconvsr, realbasicvsr) to a model of seconds.
SMALL = [
    "model.channels=8",
    "model.aggregation.num_blocks=1",
    "model.flow.levels=3",  # SPyNet resizes to a multiple of 4
    "model.flow.widths=[8,8,8,8]",
    "model.flow.kernel_size=3",
    "model.upsampling.hr_channels=8",
]


#: A recipe a study trains two steps of in a second: no flow (no alignment), 8 channels, one block; tests name it.
STUDY_RECIPE = {
    "model": {"channels": 8, "alignment": "none", "aggregation": {"name": "residual", "num_blocks": 1},
              "upsampling": {"name": "pixel_shuffle", "hr_channels": 8}},
    "data": {"num_frames": 3, "lr_patch": 8, "batch_size": 1, "workers": 0},
    "train": {"iterations": 2, "periods": [2], "log_every": 1, "val_every": 2, "checkpoint_every": 1,
              "fix_iterations": 0},
}  # fmt: skip


def study_preset(recipe: str, seeds: int = 1, real_data: bool | dict = False) -> dict:
    """A study file's ``cpu`` preset for tests: ``recipe`` (e.g. :data:`STUDY_RECIPE` saved as a file) on the
    synthetic set at ``--data``, a one-pass profile of a 2-frame 8×8 clip, no real-video set unless named."""
    return {
        "recipe": recipe,
        "seeds": seeds,
        "profile": {"frames": 2, "size": [8, 8], "repeats": 1, "warmup": 0},
        "real_data": real_data,
        "data": {
            "train": {"layout": "synth", "root": "{data}", "split": "train"},
            "val": {"layout": "synth", "root": "{data}", "split": "val"},
        },
    }


def tiny_synth(root: Path) -> Path:
    """A synthetic set of 3 training clips and 1 validation clip of 5 frames, 64×64 GT (16×16 LR)."""
    synth.generate(
        root,
        frames=5,
        val_frames=5,
        clips_per_photo=1,
        val_clips_per_photo=1,
        size=(64, 64),
        photos=["astronaut", "coffee", "camera", "chelsea"],
        val_photos=["chelsea"],
    )
    return root


def interrupted_training(recipe: dict, out_dir: Path, data: Path, iteration: int) -> None:
    """Train ``recipe`` into ``out_dir`` until Ctrl-C (a ``KeyboardInterrupt`` from the loss) during
    ``iteration``: what was checkpointed and logged before it is what a resume finds."""
    calls = {"n": 0}
    original = vsr.losses.charbonnier

    def interrupting(pred, target, eps=1e-12):
        calls["n"] += 1
        if calls["n"] == iteration:
            raise KeyboardInterrupt
        return original(pred, target, eps)

    with pytest.MonkeyPatch.context() as mp, pytest.raises(KeyboardInterrupt):
        mp.setattr(vsr.losses, "charbonnier", interrupting)
        train(recipe, out_dir, data=data, progress=False)


def interrupt_step(mp: pytest.MonkeyPatch, objective: type, step: int) -> None:
    """Make ``objective``'s training step raise ``KeyboardInterrupt`` (Ctrl-C) on its ``step``-th call, for the
    ``mp`` context: what the run saved before is what a resume finds."""
    original, calls = objective.step, {"n": 0}

    def interrupted(self, batch, run):
        calls["n"] += 1
        if calls["n"] == step:
            raise KeyboardInterrupt
        return original(self, batch, run)

    mp.setattr(objective, "step", interrupted)


def as_torchrun_rank(rank: int, port: int) -> None:
    """The environment ``torchrun`` gives rank ``rank`` of 2 on this machine; one thread each."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK="0")
    torch.set_num_threads(1)


def spawn_two_ranks(worker, *args) -> None:
    """Run ``worker(rank, port, *args)`` in two spawned processes, ``port`` a free one for their process group;
    the worker calls :func:`as_torchrun_rank` first."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(worker, args=(port, *args), nprocs=2, join=True)

"""TensorBoard: a run's event files, read back with TensorBoard's own reader, hold exactly the numbers of
``log.jsonl`` (float32, as TensorBoard stores them) and a bicubic | output | GT image per validation whose
GT third is the validation frame on disk; a resumed run leaves no step twice; a study run that reuses an
identical run's training carries its event files; ``train.tensorboard: false`` writes none."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
from tiny import TINY_DATA, TINY_MODEL, interrupted_training, tiny_synth

from vsr.data.layouts import open_dataset
from vsr.studies.runs import reuse_training
from vsr.training import train
from vsr.training.files import TENSORBOARD_EVENTS
from vsr.training.tensorboard import scalars

RECIPE = {
    "name": "tiny_tb",
    "model": TINY_MODEL,
    "data": TINY_DATA,
    "train": {"iterations": 20, "periods": [20], "lr": 1e-3, "fix_iterations": 5, "log_every": 2, "val_every": 10,
              "checkpoint_every": 10},
}  # fmt: skip


def events(run_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def log_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(iteration, value as float32), ...]}`` from log.jsonl, by the documented naming."""
    found: dict[str, list[tuple[int, float]]] = {}
    for line in (run_dir / "log.jsonl").read_text().splitlines():
        entry = json.loads(line)
        for key, value in entry.items():
            if key in ("iteration", "time", "event") or isinstance(value, (bool, str, dict)):
                continue
            found.setdefault(f"{entry['event']}/{key}", []).append((entry["iteration"], float(np.float32(value))))
    return found


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return tiny_synth(tmp_path_factory.mktemp("tb") / "set")


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_root):
    return train(RECIPE, tmp_path_factory.mktemp("tb") / "run", data=data_root, progress=False)


def test_the_event_files_hold_the_logs_numbers(run):
    board, logged = events(run.out_dir), log_scalars(run.out_dir)
    assert set(board.Tags()["scalars"]) == set(logged)
    assert {"train/loss", "train/lr", "train/it_per_s", "val/psnr", "val/ssim", "val/baseline_psnr"} <= set(logged)
    for tag, expected in logged.items():
        got = [(event.step, event.value) for event in board.Scalars(tag)]
        assert got == expected, tag
    assert [step for step, _ in logged["train/loss"]] == list(range(2, 21, 2))  # every log step
    assert [step for step, _ in logged["val/psnr"]] == [10, 20]


def test_each_validation_shows_bicubic_output_and_gt(run, data_root):
    board = events(run.out_dir)
    images = board.Images("val/bicubic_output_gt")
    assert [image.step for image in images] == [10, 20]
    strip = np.asarray(Image.open(io.BytesIO(images[-1].encoded_image_string)).convert("RGB"), dtype=np.int16)
    clip = open_dataset({"root": data_root, "split": "val"}).clips[0]
    gt_frames = sorted((data_root / "val" / "GT" / clip.name).glob("*.png"))
    gt = np.asarray(Image.open(gt_frames[len(gt_frames) // 2]).convert("RGB"), dtype=np.int16)
    height, width = gt.shape[:2]
    assert strip.shape == (height, 3 * width, 3)
    # TensorBoard stores x·255 truncated to uint8; the frame on disk is round(x·255)
    assert np.abs(strip[:, 2 * width :] - gt).max() <= 1
    assert np.abs(strip[:, :width] - gt).mean() > 1  # the bicubic third is not the GT


def test_a_resumed_run_logs_each_step_once(data_root, tmp_path):
    recipe = copy.deepcopy(RECIPE)
    recipe["train"].update(iterations=6, periods=[6], log_every=1, val_every=3, checkpoint_every=3)
    interrupted_training(recipe, tmp_path, data_root, 5)  # iteration 4 was logged after the checkpoint of 3
    train(recipe, tmp_path, data=data_root, resume=True, progress=False)
    board, logged = events(tmp_path), log_scalars(tmp_path)
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 2  # one per session
    assert [event.step for event in board.Scalars("train/loss")] == [1, 2, 3, 4, 5, 6]
    for tag, expected in logged.items():
        assert [(event.step, event.value) for event in board.Scalars(tag)] == expected, tag


def test_a_reused_run_carries_its_twins_event_files(run, tmp_path):
    """A study run whose training is copied from an identical run (``reuse_training``) shows in
    ``tensorboard --logdir`` over its study, with the twin's numbers."""
    studies = tmp_path / "studies"
    copied = studies / "other/bidirectional/seed0"
    reuse_training(run.out_dir, copied)
    names = sorted(path.name for path in run.out_dir.glob(TENSORBOARD_EVENTS))
    assert names and sorted(path.name for path in copied.glob(TENSORBOARD_EVENTS)) == names
    board, logged = events(copied), log_scalars(copied)
    for tag, expected in logged.items():
        assert [(event.step, event.value) for event in board.Scalars(tag)] == expected, tag
    assert list(EventMultiplexer().AddRunsFromDirectory(str(studies)).Runs()) == ["other/bidirectional/seed0"]


def test_tensorboard_off_writes_no_event_file(data_root, tmp_path):
    recipe = copy.deepcopy(RECIPE)
    recipe["train"].update(iterations=1, periods=[1], tensorboard=False)
    train(recipe, tmp_path, data=data_root, progress=False)
    assert not list(tmp_path.rglob("events.out.tfevents.*")) and (tmp_path / "log.jsonl").is_file()


def test_scalars_of_an_entry():
    entry = {"event": "train", "iteration": 3, "loss": 0.5, "lr": 1e-4, "frozen": True, "time": 1.0, "note": "x"}
    assert scalars(entry) == {"train/loss": 0.5, "train/lr": 1e-4}
    assert scalars({"event": "val", "iteration": 3, "psnr": float("nan"), "ssim": 0.9}) == {"val/ssim": 0.9}

"""Progress where stdout is not a terminal (a log file, a pipe, a job): plain lines with the count, the
status, the speed and the ETA, one per log step of a training run (also from each parallel worker of a
study, labelled with its run), one per clip of an evaluation, one per chunk of upscaling; and rich's bar
when stdout is a terminal."""

from __future__ import annotations

import functools
import io
import json
import re
import sys
from pathlib import Path

import pytest
import torch
from tiny import TINY_DATA, TINY_MODEL, tiny_synth

from vsr.evaluate import evaluate
from vsr.model import assemble
from vsr.progress import ProgressBar, ProgressLines, clock, label, plain_lines, progress_bar
from vsr.recipe import load_recipe
from vsr.studies.executors import run_all
from vsr.studies.runs import RunSpec
from vsr.training import train
from vsr.upscale import upscale

LINE = re.compile(
    r"^(?P<what>[^:]+): (?P<done>\d+)/(?P<total>\d+) \((?P<percent>\d+)%\)(?: · (?P<status>.*?))? · "
    r"(?P<speed>[\d.e+-]+|--) (?P<unit>\w+)/s · elapsed \d+:\d\d:\d\d(?: · eta (?P<eta>\d+:\d\d:\d\d))?$"
)


LINES_RECIPE = {
    "name": "tiny_lines",
    "model": TINY_MODEL,
    "data": TINY_DATA,
    "train": {"iterations": 6, "periods": [6], "fix_iterations": 0, "log_every": 2, "val_every": 3,
              "checkpoint_every": 3, "tensorboard": False},
}  # fmt: skip


def parsed(text: str, what: str) -> list[dict]:
    return [m.groupdict() for line in text.splitlines() if (m := LINE.match(line)) and m["what"] == what]


def test_lines_every_n_steps_and_at_the_end():
    out = io.StringIO()
    lines = ProgressLines(10, "counting", unit="frames", every=4, stream=out)
    for _ in range(10):
        lines.advance()
    found = parsed(out.getvalue(), "counting")
    assert [(int(f["done"]), int(f["percent"])) for f in found] == [(4, 40), (8, 80), (10, 100)]
    assert all(f["unit"] == "frames" and f["eta"] for f in found)
    assert found[-1]["eta"] == "0:00:00"


def test_the_eta_is_the_remaining_steps_at_the_given_speed():
    out = io.StringIO()
    lines = ProgressLines(1000, "training x", completed=100, every=0, stream=out)
    lines.advance(100)  # every=0: no line by itself
    assert out.getvalue() == ""
    lines.line("loss 0.5", speed=2.0)
    (found,) = parsed(out.getvalue(), "training x")
    assert (found["done"], found["status"], found["speed"], found["eta"]) == ("200", "loss 0.5", "2", "0:06:40")
    assert clock(3723.4) == "1:02:03"


def test_stdout_decides_between_lines_and_the_bar(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert plain_lines()
    with progress_bar(5, "x") as bar:
        assert isinstance(bar, ProgressLines)
    with progress_bar(5, "x", enabled=False) as bar:
        assert type(bar) is ProgressBar
    monkeypatch.setattr(sys, "stdout", Terminal())
    assert not plain_lines()
    with progress_bar(5, "x") as bar:
        assert not isinstance(bar, ProgressLines)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tiny_synth(tmp_path_factory.mktemp("progress") / "set")


def test_a_training_run_prints_one_line_per_log_step(data_root, tmp_path, capsys):
    train(LINES_RECIPE, tmp_path / "run", data=data_root)  # progress on, stdout captured: not a terminal
    found = parsed(capsys.readouterr().out, "training tiny_lines")
    assert [int(f["done"]) for f in found] == [2, 4, 6] and all(f["total"] == "6" for f in found)
    assert all(re.fullmatch(r"loss [\d.e-]+ · lr [\d.e-]+", f["status"]) and f["eta"] for f in found)
    logged = [line for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines() if '"train"' in line]
    assert len(found) == len(logged)  # one line per log step, the log's loss
    assert found[0]["status"].startswith(f"loss {json.loads(logged[0])['loss']:.5g} ·")


def test_evaluation_prints_a_line_per_clip(data_root, capsys):
    torch.manual_seed(0)
    model = assemble(load_recipe({"model": TINY_MODEL}).model)
    evaluate(model, None, {"root": data_root, "split": "val"})
    found = parsed(capsys.readouterr().out, "evaluating")
    assert [(f["done"], f["total"]) for f in found] == [("1", "1")]


def test_upscaling_prints_a_line_per_chunk(capsys):
    torch.manual_seed(0)
    model = assemble(load_recipe({"model": TINY_MODEL}).model)
    upscale(model, torch.rand(12, 3, 8, 8), device="cpu", chunk_size=5, chunk_overlap=1)
    found = parsed(capsys.readouterr().out, "upscaling tensor x4")
    assert [int(f["done"]) for f in found] == [5, 10, 12] and all(f["unit"] == "frames" for f in found)


def test_a_label_starts_each_line_begun_inside_it():
    out = io.StringIO()
    with label("study/variant/seed1"):
        lines = ProgressLines(2, "training x", stream=out)
    lines.advance(2)
    assert out.getvalue().startswith("[study/variant/seed1] training x: 2/2 (100%) · ")
    assert ProgressLines(1, "y", stream=out).label == ""  # outside the block: no label


def training_run(data_root: Path, spec: RunSpec, progress: bool) -> dict:
    """A study's run as far as its training (what prints lines at log steps), for the executors."""
    return {"metrics": train(spec.recipe, spec.run_dir, data=data_root, progress=progress).metrics}


def test_parallel_runs_of_a_study_print_their_lines_each_named(data_root, tmp_path, capfd):
    """``vsr study --jobs 2`` with stdout not a terminal: both worker processes print one line per log step of
    their training on the shared stdout, each line starting with its run's key."""
    specs = [
        RunSpec("lines", "cpu", "tiny", seed, str(tmp_path / f"seed{seed}"),
                LINES_RECIPE | {"train": LINES_RECIPE["train"] | {"seed": seed}})
        for seed in (0, 1)
    ]  # fmt: skip
    failures = run_all(functools.partial(training_run, data_root), specs, len(specs), jobs=2, progress=True,
                       submitit_folder=tmp_path / "submitit")  # fmt: skip
    assert failures == []
    out = capfd.readouterr().out
    for spec in specs:
        found = parsed(out, f"[{spec.key}] training tiny_lines")
        assert [int(f["done"]) for f in found] == [2, 4, 6], out

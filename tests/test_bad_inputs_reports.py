"""Bad inputs of ``vsr report`` and ``vsr study``, as a new user meets them (issue 26, "the report trusts its
files"): each damaged file a report or a resumed study reads ends in one clear line naming the file and the fix,
never a traceback; a report is written only into a new, empty or earlier report folder, never into a user's
folder or into the runs; a refused study changes nothing; a ``--jobs`` worker that dies is named with its run,
its signal and the likely cause.

One tiny study (two variants, one seed, two training steps) is run once for the module; each row damages a copy
of it, runs the command line in-process (typer's CliRunner), and checks the exit code, the message (a regex),
that no traceback is printed, and, where the command is refused, that every file under the test's folder is
unchanged (sha256); where it succeeds, that only its output changed.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_bad_inputs import assert_one_clear_line, snapshot
from tiny import STUDY_RECIPE, study_preset, tiny_synth
from typer.testing import CliRunner

from vsr.cli import app
from vsr.locks import LOCK_FILE
from vsr.studies import RunSpec, run_study
from vsr.studies.executors import run_all

runner = CliRunner()

TINY_RECIPE = {"name": "tiny_report", **STUDY_RECIPE}


def study_dict(recipe: Path) -> dict:
    return {
        "name": "mini",
        "base": "bidirectional",
        "metrics": ["psnr", "ssim"],
        "presets": {"cpu": study_preset(str(recipe))},
        "variants": {"unidirectional": ["model.propagation=unidirectional"], "bidirectional": []},
        "expect": [{"better": "bidirectional", "worse": "unidirectional"}],
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A folder holding ``data/`` (a tiny synthetic set), ``mini.yaml`` (its study) and ``runs/mini`` (the
    study, finished: two variants, seed 0)."""
    root = tmp_path_factory.mktemp("finished")
    tiny_synth(root / "data")
    (root / "tiny_report.yaml").write_text(yaml.safe_dump(TINY_RECIPE))
    (root / "mini.yaml").write_text(yaml.safe_dump(study_dict(root / "tiny_report.yaml"), sort_keys=False))
    run_study(root / "mini.yaml", data=root / "data", out=root / "runs", progress=False, device="cpu")
    return root


# ------------------------------------------------------------------------------------------ damage

RUN = "runs/mini/bidirectional/seed0"  # the base variant's run
OTHER = "runs/mini/unidirectional/seed0"


def edit_json(name: str, change: Callable[[dict], object]) -> Callable[[Path], None]:
    """A set-up that loads the JSON file ``name``, applies ``change`` to it and writes it back."""

    def setup(root: Path) -> None:
        data = json.loads((root / name).read_text())
        change(data)
        (root / name).write_text(json.dumps(data))

    return setup


def edit_csv(name: str, change: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        table = pd.read_csv(root / name, dtype={"clip": str})
        change(table).to_csv(root / name, index=False)

    return setup


def write(name: str, text: str) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)

    return setup


def insert_line(name: str, line: str, at: int = 1) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        lines = (root / name).read_text().splitlines()
        (root / name).write_text("\n".join([*lines[:at], line, *lines[at:]]) + "\n")

    return setup


def real_copy(change: Callable[[Path], None]) -> Callable[[Path], None]:
    """The run's evaluation and probe copied into its ``real/`` folder (as a run evaluated on the real-video set
    has them), then ``change(real folder)``."""

    def setup(root: Path) -> None:
        real = root / RUN / "real"
        real.mkdir()
        shutil.copy(root / RUN / "metrics.json", real / "metrics.json")
        shutil.copytree(root / RUN / "temporal", real / "temporal")
        change(real)

    return setup


def nan_at(column: str, row: int = 0) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(table: pd.DataFrame) -> pd.DataFrame:
        table[column] = table[column].astype(object)
        table.loc[row, column] = None
        return table

    return change


def linked_run(root: Path) -> None:
    """The unidirectional run moved out of the study folder, a symbolic link left in its place."""
    shutil.move(root / OTHER, root / "elsewhere")
    (root / OTHER).symlink_to(root / "elsewhere", target_is_directory=True)


def copied_run(root: Path) -> None:
    shutil.copytree(root / OTHER, root / f"{OTHER}-copy")


def user_folder(root: Path) -> None:
    (root / "mine").mkdir()
    (root / "mine" / "index.md").write_text("# my notes\n")
    (root / "mine" / "results.csv").write_text("my,own\n1,2\n")


def training_run(root: Path) -> None:
    """``trained``: the folder of a plain ``vsr train`` run (its recipe and final weights), no study's."""
    (root / "trained" / "checkpoints").mkdir(parents=True)
    (root / "trained" / "recipe.yaml").write_text(yaml.safe_dump(TINY_RECIPE))
    (root / "trained" / "checkpoints" / "last.pth").write_bytes(b"weights")


def earlier_report(root: Path) -> None:
    assert runner.invoke(app, ["report", "runs/mini", "-o", "rep", "--no-visual"]).exit_code == 0


def legacy_report(root: Path) -> None:
    """A report written before reports carried vsr's marker (like the shipped ones): no ``.vsr-output``."""
    earlier_report(root)
    (root / "rep" / ".vsr-output").unlink()


_held: list[int] = []


def locked_study(root: Path) -> None:
    """The study folder's lock held by "another process" (an ``flock`` on its own open file, which this process
    does not hold through vsr), naming a holder."""
    fd = os.open(root / "runs/mini" / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, json.dumps({"pid": 4242, "host": socket.gethostname(), "command": "vsr study mini"}).encode())
    _held.append(fd)


def changed_variant(root: Path) -> None:
    """The study file changed since the runs: the unidirectional variant now has 4 channels."""
    study = yaml.safe_load((root / "mini.yaml").read_text())
    study["variants"]["unidirectional"].append("model.channels=4")
    (root / "mini.yaml").write_text(yaml.safe_dump(study, sort_keys=False))


def has_note(root: Path) -> None:
    index = (root / "rep" / "index.md").read_text()
    assert "The base variant bidirectional of study mini has no finished run" in index


def report_rewritten(root: Path) -> None:
    marker = json.loads((root / "rep" / ".vsr-output").read_text())
    assert marker["written_by"] == "vsr" and marker["kind"] == "report"
    assert pd.read_csv(root / "rep" / "results.csv").variant.tolist() == ["unidirectional", "bidirectional"]


# ------------------------------------------------------------------------------------------ the table


@dataclass(frozen=True)
class Case:
    id: str
    setup: Callable[[Path], None] | None
    message: str  # a regex the output must match, whitespace joined
    args: tuple[str, ...] = ("report", "runs/mini", "-o", "rep", "--no-visual")  # {data}: the study's data set
    code: int = 2
    output: str | None = None  # the one path the command may change; None: a refusal, nothing may change
    then: Callable[[Path], None] | None = None
    logged: str | None = None  # a regex a warning the command logs must match (the CLI shows it on stderr)


STUDY = ("study", "mini.yaml", "--data", "{data}", "-o", "runs", "--report", "rep", "--device", "cpu")
RUN_FIX = r"the file was edited or cut short: restore it, or delete it and rerun the study"
EVALUATION_FIX = r"the file was edited or cut short: restore it, or delete its run's run\.json and rerun the study"

CASES = [
    # -- run.json
    Case("run-json-no-seed", edit_json(f"{RUN}/run.json", lambda r: r.pop("seed")),
         rf"{RUN}/run\.json: 'seed' is missing; {RUN_FIX}"),
    Case("run-json-seed-text", edit_json(f"{RUN}/run.json", lambda r: r.update(seed="abc")),
         rf"{RUN}/run\.json: 'seed' = 'abc' is not a whole number; {RUN_FIX}"),
    Case("run-json-not-object", write(f"{RUN}/run.json", "[1, 2]"),
         rf"{RUN}/run\.json: it holds \[1, 2\] where a JSON object \{{\.\.\.\}} is expected"),
    Case("run-json-truncated", write(f"{RUN}/run.json", '{"study": "mini", "vari'),
         rf"{RUN}/run\.json is not valid JSON"),
    Case("run-json-recipe-text", edit_json(f"{RUN}/run.json", lambda r: r.update(recipe="basicvsr")),
         rf"{RUN}/run\.json: 'recipe' = 'basicvsr' is not a JSON object"),
    # -- study.json
    Case("study-json-no-name", edit_json("runs/mini/study.json", lambda s: s.pop("name")),
         r"runs/mini/study\.json: 'name' is missing; the file was edited or cut short: restore it, or rerun the study"),
    Case("study-json-expect-no-worse", edit_json("runs/mini/study.json", lambda s: s["expect"][0].pop("worse")),
         r"runs/mini/study\.json: 'expect\[0\]\.worse' is missing"),
    Case("study-json-variant-text", edit_json("runs/mini/study.json", lambda s: s["variants"].update(x="y")),
         r"runs/mini/study\.json: 'variants\.x' = 'y' is not a JSON object"),
    Case("study-json-invalid", write("runs/mini/study.json", "{name: mini}"),
         r"runs/mini/study\.json is not valid JSON"),
    # -- metrics.json
    Case("metrics-psnr-null", edit_json(f"{RUN}/metrics.json", lambda m: m.update(psnr=None)),
         rf"{RUN}/metrics\.json: 'psnr' = None is not a number; {EVALUATION_FIX}"),
    Case("metrics-psnr-nan", edit_json(f"{RUN}/metrics.json", lambda m: m.update(psnr=float("nan"))),
         rf"{RUN}/metrics\.json: 'psnr' = nan is not a number"),
    Case("metrics-no-ssim", edit_json(f"{RUN}/metrics.json", lambda m: m.pop("ssim")),
         rf"{RUN}/metrics\.json: 'ssim' is missing"),
    Case("metrics-bicubic-text", edit_json(f"{RUN}/metrics.json", lambda m: m["bicubic"].update(psnr="high")),
         rf"{RUN}/metrics\.json: 'bicubic\.psnr' = 'high' is not a number"),
    Case("metrics-invalid", write(f"{RUN}/metrics.json", '{"psnr": 3'), rf"{RUN}/metrics\.json is not valid JSON"),
    # -- per_frame.csv
    Case("per-frame-empty", write(f"{RUN}/per_frame.csv", ""),
         rf"{RUN}/per_frame\.csv: it is empty \(not even its header line is left\); {EVALUATION_FIX}"),
    Case("per-frame-header-only", write(f"{RUN}/per_frame.csv", "clip,frame,psnr,ssim\n"),
         rf"{RUN}/per_frame\.csv: it has a header but no rows"),
    Case("per-frame-nan", edit_csv(f"{RUN}/per_frame.csv", nan_at("psnr", 1)),
         rf"{RUN}/per_frame\.csv: line 3: psnr is NaN \(empty or not a number\), in 1 row"),
    Case("per-frame-text", edit_csv(f"{RUN}/per_frame.csv", lambda t: t.assign(ssim="good")),
         rf"{RUN}/per_frame\.csv: line 2: ssim = 'good' is not a number"),
    Case("per-frame-no-ssim", edit_csv(f"{RUN}/per_frame.csv", lambda t: t.drop(columns="ssim")),
         rf"{RUN}/per_frame\.csv: it has no column 'ssim'"),
    Case("per-frame-repeated-row", edit_csv(f"{RUN}/per_frame.csv", lambda t: pd.concat([t, t.iloc[[1]]])),
         rf"{RUN}/per_frame\.csv: line \d+ repeats clip '\w+', frame 1 of an earlier line \(a row counted twice\)"),
    Case("per-frame-frame-fraction", edit_csv(f"{RUN}/per_frame.csv", lambda t: t.assign(frame=0.5)),
         rf"{RUN}/per_frame\.csv: line 2: frame = 0\.5 is not a whole number"),
    # -- the probe's tables
    Case("temporal-gain-no-column", edit_csv(f"{RUN}/temporal/temporal_gain.csv", lambda t: t.drop(columns="gain")),
         rf"{RUN}/temporal/temporal_gain\.csv: it has no column 'gain'"),
    Case("temporal-gain-nan", edit_csv(f"{RUN}/temporal/temporal_gain.csv", nan_at("gain")),
         rf"{RUN}/temporal/temporal_gain\.csv: line 2: gain is NaN"),
    Case("receptive-field-missing", lambda root: (root / RUN / "temporal/receptive_field.csv").unlink(),
         rf"{RUN}/temporal: it has no receptive_field\.csv"),
    # -- profile.json
    Case("profile-no-total", edit_json(f"{RUN}/profile.json", lambda p: p["params"].pop("total")),
         rf"{RUN}/profile\.json: 'params\.total' is missing; {EVALUATION_FIX}"),
    Case("profile-flops-text", edit_json(f"{RUN}/profile.json", lambda p: p.update(flops_per_frame="many")),
         rf"{RUN}/profile\.json: 'flops_per_frame' = 'many' is not a number"),
    # -- log.jsonl
    Case("log-line-invalid", insert_line(f"{RUN}/log.jsonl", '{"event": "train", "iter'),
         rf"{RUN}/log\.jsonl: line 2 is not valid JSON .*delete that line"),
    Case("log-line-not-object", insert_line(f"{RUN}/log.jsonl", "[1, 2]", at=0),
         rf"{RUN}/log\.jsonl: line 1 holds \[1, 2\], not a JSON object"),
    Case("log-iteration-text", insert_line(f"{RUN}/log.jsonl", '{"event": "train", "iteration": "x", "loss": 1}'),
         rf"{RUN}/log\.jsonl: line 2: 'iteration' = 'x' is not a whole number"),
    # -- the evaluation on the real-video set (real/)
    Case("real-metrics-psnr-null", real_copy(edit_json("metrics.json", lambda m: m.update(psnr=None))),
         rf"{RUN}/real/metrics\.json: 'psnr' = None is not a number; {EVALUATION_FIX}"),
    Case("real-temporal-no-gain", real_copy(edit_csv("temporal/temporal_gain.csv", lambda t: t.drop(columns="gain"))),
         rf"{RUN}/real/temporal/temporal_gain\.csv: it has no column 'gain'"),
    # -- failed.json of a run that did not finish
    Case("failed-json-not-object", write("runs/mini/bidirectional/seed1/failed.json", '"oops"'),
         r"runs/mini/bidirectional/seed1/failed\.json: it holds 'oops' where a JSON object .* delete it: it only "
         r"records the error"),
    # -- runs the report would silently leave out or count twice
    Case("linked-run-folder", linked_run,
         rf"{OTHER} is a symbolic link to \S+/elsewhere, a folder of runs that a report does not follow links to"),
    Case("copied-run-folder", copied_run,
         rf"{OTHER} and {OTHER}-copy both hold run mini/unidirectional/seed0 .*move the copy out"),
    Case("base-run-missing", lambda root: (root / RUN / "run.json").unlink(), r"report: rep/index\.md", code=0,
         output="rep", then=has_note,
         logged=r"The base variant bidirectional of study mini has no finished run, so the table has no row for it"),
    # -- report folders: only a new, empty or earlier report folder, never the runs
    Case("out-user-folder", user_folder, args=("report", "runs/mini", "-o", "mine", "--no-visual"),
         message=r"report folder mine holds files that no vsr report wrote \(it has no \.vsr-output of a report\)"),
    Case("out-run-folder", None, args=("report", "runs/mini", "-o", RUN, "--no-visual"),
         message=rf"report folder {RUN} is or lies in a run folder \S+/{RUN}: a report there would replace"),
    Case("out-training-run-folder", training_run, args=("report", "runs/mini", "-o", "trained", "--no-visual"),
         message=r"report folder trained is or lies in a run folder \S+/trained: a report there would replace"),
    Case("out-inside-run-folder", None, args=("report", "runs/mini", "-o", f"{RUN}/report", "--no-visual"),
         message=rf"report folder {RUN}/report is or lies in a run folder \S+/{RUN}:"),
    Case("out-study-folder", None, args=("report", "runs/mini", "-o", "runs/mini", "--no-visual"),
         message=r"report folder runs/mini is or lies in a study folder"),
    Case("out-runs-root", None, args=("report", "runs/mini", "-o", "runs", "--no-visual"),
         message=r"report folder runs is or lies in a folder holding runs"),
    Case("out-earlier-report", earlier_report, message=r"report: rep/index\.md", code=0, output="rep",
         then=report_rewritten),
    Case("out-legacy-report", legacy_report, message=r"report: rep/index\.md", code=0, output="rep",
         then=report_rewritten),
    # -- a refused study changes nothing (its study.json was rewritten first)
    Case("study-locked", locked_study, args=STUDY,
         message=r"study folder runs/mini is in use: pid 4242 on \S+ is writing to it"),
    Case("study-recipe-changed", changed_variant, args=STUDY,
         message=r"run folder runs/mini/unidirectional/seed0 was made for another recipe "
                 r"\(recipe\.model\.channels: 8 -> 4\)"),
    Case("study-rerun-damaged-run-json", edit_json(f"{RUN}/run.json", lambda r: r.update(seed="abc")), args=STUDY,
         output="runs/mini/study.json",  # the study ran (nothing was left to run); its report is refused
         message=rf"{RUN}/run\.json: 'seed' = 'abc' is not a whole number; {RUN_FIX}"),
    Case("study-report-user-folder", user_folder, args=(*STUDY[:-4], "--report", "mine"),
         message=r"report folder mine holds files that no vsr report wrote"),
]  # fmt: skip


@pytest.mark.parametrize("row", CASES, ids=[c.id for c in CASES])
def test_a_damaged_study_is_one_clear_line(row: Case, finished: Path, tmp_path, monkeypatch, caplog):
    root = tmp_path / "case"
    shutil.copytree(finished / "runs", root / "runs", symlinks=True)
    shutil.copy(finished / "mini.yaml", root / "mini.yaml")
    monkeypatch.chdir(root)
    try:
        if row.setup:
            row.setup(root)
        before = snapshot(root, finished / "data")
        result = runner.invoke(app, [a.format(data=finished / "data") for a in row.args])
        after = snapshot(root, finished / "data")
    finally:
        while _held:
            os.close(_held.pop())
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert_one_clear_line(row, result.exit_code, result.output, row.message, before, after, root)
    if row.logged:
        assert re.search(row.logged, caplog.text), caplog.text


# ------------------------------------------------------------------------------------------ --jobs


def killed_or_waiting(spec: RunSpec, progress: bool) -> dict:
    """A run in a ``--jobs`` worker: ``a`` is killed by SIGKILL (as the out-of-memory killer does) once ``b`` has
    started; ``b`` then waits a few seconds, in which the pool stops it (unless the pool is told of ``a``'s end
    only by ``b``'s result: Python's pool may not watch a worker it started late)."""
    folder = Path(spec.run_dir).parent
    if spec.variant == "b":
        (folder / "b-started").touch()
        deadline = time.monotonic() + 300
        while not (folder / "a-dying").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(5)
        return {"metrics": {}}
    deadline = time.monotonic() + 300
    while not (folder / "b-started").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    (folder / "a-dying").touch()
    os.kill(os.getpid(), signal.SIGKILL)
    return {"metrics": {}}


def test_a_killed_jobs_worker_names_its_run_the_signal_and_the_fix(tmp_path):
    specs = [RunSpec(study="mini", preset="cpu", variant=v, seed=0, run_dir=str(tmp_path / v), recipe={})
             for v in ("a", "b")]  # fmt: skip
    failures = run_all(killed_or_waiting, specs, 2, jobs=2, progress=False, submitit_folder=tmp_path / "_submitit")
    killed, *stopped = sorted(failures)
    assert re.match(r"mini/a/seed0: its worker process \(pid \d+\) was killed by SIGKILL, which stopped the pool; "
                    r"a worker killed by SIGKILL most often ran out of memory .*: run fewer runs at once \(--jobs 1\)",
                    killed), killed  # fmt: skip
    for line in stopped:  # b, if the pool stopped it before it finished: ended by the pool, or still running then
        assert re.match(r"mini/b/seed0: its worker process \(pid \d+\) (was killed by SIGTERM, which stopped the pool|"
                        r"was still running when another worker died, which stopped the pool and this run with it)",
                        line), line  # fmt: skip
    assert "BrokenProcessPool" not in " ".join(failures)

"""Studies: study-file validation, the shipped studies, and a miniature study end to end (interrupted
mid-run, resumed without losing or duplicating a result, reported), also through submitit's local executor;
a study on a lower-is-better metric of a plugin; `vsr study` / `vsr report` writing a shipped study's report
where it is shipped."""

from __future__ import annotations

import json
import re
import statistics
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from source_text import string_literals
from tiny import STUDY_RECIPE, study_preset
from typer.testing import CliRunner

import vsr.evaluate
import vsr.profile
import vsr.studies
import vsr.studies.driver
import vsr.studies.executors
import vsr.training
import vsr.training.files
from vsr.checkpoints import load_checkpoint
from vsr.cli import app
from vsr.data import synth
from vsr.errors import VSRError
from vsr.model import assemble
from vsr.recipe import load_recipe
from vsr.reports import frame_contrast, run_and_report
from vsr.studies import (
    StudyError,
    load_study,
    parse_study,
    plan_runs,
    run_one,
    run_study,
    shipped_studies,
    torchrun_command,
)
from vsr.studies import runs as run_folders

TINY_RECIPE = {"name": "tiny_test", **STUDY_RECIPE}


def study_dict(recipe: str) -> dict:
    return {
        "name": "mini",
        "title": "Mini study",
        "base": "bidirectional",
        "metrics": ["psnr", "ssim"],
        "presets": {"cpu": study_preset(recipe, seeds=2)},  # the real-video set's evaluation: test_real.py
        "variants": {"unidirectional": ["model.propagation=unidirectional"], "bidirectional": []},
        "expect": [
            {"better": "bidirectional", "worse": "unidirectional", "paper": 0.5},
            {"better": "bidirectional", "worse": "unidirectional", "at": "first"},
        ],
    }


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "data"
    synth.generate(
        root,
        frames=6,
        val_frames=6,
        clips_per_photo=1,
        val_clips_per_photo=1,
        size=(32, 32),
        photos=["astronaut", "coffee", "camera"],
        val_photos=["camera"],
    )
    return root


@pytest.fixture
def study_file(tmp_path) -> Path:
    recipe = tmp_path / "tiny_test.yaml"
    recipe.write_text(yaml.safe_dump(TINY_RECIPE))
    path = tmp_path / "mini.yaml"
    path.write_text(yaml.safe_dump(study_dict(str(recipe)), sort_keys=False))
    return path


# ------------------------------------------------------------------------------------------ study files
def _mutated(change):
    raw = study_dict("basicvsr")
    change(raw)
    return raw


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.update(colour="red"), r"key 'colour' = 'red': unknown key"),
        (lambda r: r.update(base="trilateral"), r"key 'base' = 'trilateral': the base must be one of the variants"),
        (lambda r: r["presets"]["cpu"].update(seeds="three"), r"'presets.cpu.seeds' = 'three'"),
        (lambda r: r["presets"]["cpu"].update(seeds=[1, 1]), r"list of distinct seeds"),
        (lambda r: r["presets"]["cpu"].pop("recipe"), r"'presets.cpu.recipe' = None"),
        (lambda r: r["presets"]["cpu"].update(gpus=2), r"'presets.cpu.gpus' = 2: unknown key; valid: recipe"),
        (lambda r: r["presets"]["cpu"]["profile"].update(size=[180]), r"'presets.cpu.profile.size'"),
        (lambda r: r["variants"].update(local="model.propagation=local"), r"'variants.local'.*list of dotted"),
        (lambda r: r["variants"].update(bad=["model.propagation"]), r"'variants.bad'.*list of dotted"),
        (lambda r: r["variants"].pop("unidirectional"), r"'variants'.*at least two variants"),
        (lambda r: r["expect"][0].update(worse="local"), r"'expect\[0\].worse' = 'local': not a variant"),
        (lambda r: r["expect"][0].update(metric="lpips"), r"'expect\[0\].metric' = 'lpips'"),
        (lambda r: r["expect"][0].update(at="middle"), r"at' = 'middle'.*valid: first, last, segment_ends"),
        (lambda r: r["expect"][1].update(at="segment_ends"), r"\[1\].segment_length' = None: at: segment_ends needs"),
        (lambda r: r["expect"][1].update(at="segment_ends", segment_length=1), r"length' = 1: at: segment_ends"),
        (lambda r: r["expect"][1].update(segment_length=5), r"\[1\].segment_length' = 5: only an ordering at"),
        (lambda r: r["expect"][0].update(at="first"), r"'expect\[0\].paper' = 0.5: the paper's number is a clip"),
        (
            lambda r: r.update(metrics=["psnr", "brisque"]),
            r"'metrics\[1\]' = 'brisque': not a registered metric; valid: .*psnr",
        ),
        (lambda r: r.update(metrics=["psnr", "psnr"]), r"'metrics' = \['psnr', 'psnr'\]: name each metric once"),
        (lambda r: r.update(imports=["no_such_module"]), r"'imports' = 'no_such_module': cannot import the plugin"),
    ],
)
def test_study_file_errors_name_the_key(change, message):
    with pytest.raises(StudyError, match=message):
        parse_study(_mutated(change), "studies/mini.yaml")


def test_recipe_errors_name_the_variant(tmp_path):
    raw = study_dict("basicvsr")
    raw["variants"]["unidirectional"] = ["model.propagation=sideways"]
    study = parse_study(raw, "mini.yaml")
    with pytest.raises(StudyError, match=r"variant 'unidirectional'.*model.propagation.*'sideways'"):
        plan_runs(study, "cpu", tmp_path)
    with pytest.raises(StudyError, match="has no preset 'paper'"):
        plan_runs(study, "paper", tmp_path)
    with pytest.raises(StudyError, match="no variant 'local'"):
        plan_runs(parse_study(study_dict("basicvsr"), "mini.yaml"), "cpu", tmp_path, variants=["local"])
    with pytest.raises(StudyError, match=r"no study file 'nonexistent'.*shipped studies: "):
        load_study("nonexistent")


def test_data_overrides_and_needs_data(tmp_path):
    raw = study_dict("basicvsr")
    raw["presets"]["cpu"]["needs_data"] = True
    study = parse_study(raw, "mini.yaml")
    with pytest.raises(StudyError, match="needs --data PATH"):
        plan_runs(study, "cpu", tmp_path)
    specs = plan_runs(study, "cpu", tmp_path, data=tmp_path / "set", seeds=[3, 5])
    assert [(s.variant, s.seed) for s in specs] == [("unidirectional", 3), ("unidirectional", 5),
                                                    ("bidirectional", 3), ("bidirectional", 5)]  # fmt: skip
    assert specs[0].recipe["data"]["val"] == {"layout": "synth", "root": str(tmp_path / "set"), "split": "val"}
    assert specs[0].recipe["train"]["seed"] == 3 and specs[0].run_dir == str(tmp_path / "mini/unidirectional/seed3")
    assert specs[0].profile is not None and specs[1].profile is None  # one profile per variant
    # without --data, the preset's specs apply to the embedded set: the path goes, the rest stays
    raw["presets"]["cpu"]["needs_data"] = False
    noisy = {"degradation": ["bi", {"name": "gaussian_noise", "sigma": 0.05}], "lr": None}
    raw["presets"]["cpu"]["data"]["val"] |= noisy
    embedded = plan_runs(parse_study(raw, "mini.yaml"), "cpu", tmp_path, seeds=1)[0].recipe["data"]
    assert embedded["train"] == {"layout": "synth", "split": "train"}
    assert embedded["val"] == {"layout": "synth", "split": "val", **noisy}
    raw["presets"]["cpu"].pop("data")
    assert plan_runs(parse_study(raw, "mini.yaml"), "cpu", tmp_path, seeds=1)[0].recipe["data"]["val"] is None
    with pytest.raises(StudyError, match="takes no --data"):
        plan_runs(parse_study(raw, "mini.yaml"), "cpu", tmp_path, data=tmp_path)


def test_a_typo_in_any_variant_fails_before_anything_trains(study_file, synth_root, tmp_path, monkeypatch):
    """plan_runs resolves every run's recipe first: a mistyped train switch in the last variant stops the
    study before the first variant trains (it used to fail only when that variant's training started)."""
    raw = yaml.safe_load(study_file.read_text())
    raw["variants"]["bidirectional"] = ["train.scheduler=cosin"]
    study_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    trained: list[Path] = []
    monkeypatch.setattr(vsr.studies.driver, "train", lambda recipe, out_dir, **kwargs: trained.append(out_dir))
    runs = tmp_path / "runs"
    with pytest.raises(StudyError, match=r"variant 'bidirectional'.*train.scheduler.*'cosin'"):
        plan_runs(load_study(study_file), "cpu", runs, data=synth_root)
    with pytest.raises(StudyError, match=r"variant 'bidirectional'.*train.scheduler.*'cosin'"):
        run_and_report(study_file, data=synth_root, out=runs, report=tmp_path / "report", progress=False)
    assert trained == [] and not list(tmp_path.rglob("*.pth"))


def test_shipped_studies_are_found_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./studies here: the source tree's are found
    monkeypatch.delenv("VSR_STUDIES", raising=False)
    assert {"propagation", "alignment", "iconvsr"} <= set(shipped_studies())


@pytest.mark.parametrize("name", sorted(shipped_studies()))
def test_shipped_studies_resolve_for_every_preset(name, tmp_path):
    study = load_study(name)
    assert {"cpu", "paper"} <= set(study.presets) <= {"cpu", "gpu", "paper"}
    for preset in study.presets:
        data = "/data/REDS" if study.presets[preset].needs_data else None
        specs = plan_runs(study, preset, tmp_path, data=data, seeds=1)
        # variants may share a network (trained on other data, or the same weights evaluated another way), never
        # the whole recipe
        recipes = [json.dumps({k: v for k, v in s.recipe.items() if k != "name"}, sort_keys=True) for s in specs]
        assert len(set(recipes)) == len(study.variants), "two variants resolve to the same recipe"
    paper = plan_runs(study, "paper", tmp_path, data="/data/REDS", seeds=1)[0].recipe
    assert paper["data"]["train"]["root"] == "/data/REDS" and paper["data"]["val"]["split"] == "reds4"


# Shrinks a preset's model and schedule to seconds on the CPU, leaving everything else it says as it is.
TINY_OVERRIDES = [
    "model.channels=8", "model.aggregation.num_blocks=1", "model.upsampling.hr_channels=8", "data.batch_size=1",
    "data.num_frames=3", "data.lr_patch=8", "train.iterations=2", "train.periods=[2]", "train.fix_iterations=0",
    "train.val_every=2", "train.checkpoint_every=1", "train.log_every=1",
]  # fmt: skip


@pytest.mark.parametrize("name", ["propagation", "alignment"])
def test_gpu_preset_plans_and_runs_on_the_cpu_at_tiny_overrides(name, synth_root, tmp_path):
    """Issue 27's `gpu` preset: wider than the cpu preset, more clips trained on, at least 4 seeds, the embedded
    set; and, with tiny overrides appended to its own (the shipped file copied, nothing else changed), every
    variant trains, is evaluated and reported through `vsr study NAME --preset gpu` on the CPU."""
    shipped = load_study(name)
    gpu = shipped.preset("gpu")
    assert len(gpu.seeds) >= 4 and not gpu.needs_data and gpu.real_data is None
    big, small = (plan_runs(shipped, p, tmp_path / p, seeds=1)[0].recipe for p in ("gpu", "cpu"))
    assert big["model"]["channels"] == 64 > small["model"]["channels"]
    clips = [r["train"]["iterations"] * r["data"]["batch_size"] for r in (big, small)]
    assert clips[0] > 2 * clips[1], clips
    assert "estimate" in gpu.description

    raw = yaml.safe_load(shipped.source.read_text())
    raw["presets"]["gpu"]["overrides"] += TINY_OVERRIDES
    raw["presets"]["gpu"]["profile"] = {"frames": 2, "size": [8, 8], "repeats": 1, "warmup": 0}
    (tmp_path / "studies").mkdir()
    copy = tmp_path / "studies" / f"{name}.yaml"
    copy.write_text(yaml.safe_dump(raw, sort_keys=False))
    done = CliRunner().invoke(app, ["study", str(copy), "--preset", "gpu", "--seeds", "1", "--data", str(synth_root),
                                    "--device", "cpu", "--out", str(tmp_path / "runs"), "--report",
                                    str(tmp_path / "report")], catch_exceptions=False)  # fmt: skip
    assert done.exit_code == 0, done.output
    results = pd.read_csv(tmp_path / "report" / "results.csv").set_index("variant")
    assert set(results.index) == set(shipped.variants) and (results["seeds"] == 1).all()
    for variant in shipped.variants:
        run = json.loads((tmp_path / f"runs/{name}/{variant}/seed0/run.json").read_text())
        assert run["preset"] == "gpu"


def test_torchrun_command(tmp_path):
    spec = plan_runs(parse_study(study_dict("basicvsr"), "mini.yaml"), "cpu", tmp_path, seeds=1)[0]
    spec = vsr.studies.RunSpec(**{**spec.__dict__, "gpus": 4})
    command = torchrun_command(spec, resume=True)
    assert command[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=4", "-m"]
    assert command[6:9] == ["vsr", "train", str(Path(spec.run_dir) / "study_recipe.yaml")]
    assert command[-3:] == ["--out", spec.run_dir, "--resume"]


# ------------------------------------------------------------------------------------------ end to end
def test_study_interrupted_resumed_and_reported(study_file, synth_root, tmp_path, monkeypatch):
    runs, report = tmp_path / "runs", tmp_path / "report"
    calls: list[tuple[str, bool]] = []
    real_train, real_save = vsr.studies.driver.train, vsr.training.Trainer._save

    def spy_train(recipe, out_dir, **kwargs):
        calls.append((Path(out_dir).relative_to(runs / "mini").as_posix(), kwargs["resume"]))
        return real_train(recipe, out_dir, **kwargs)

    def save_then_interrupt(self):  # Ctrl-C in the second run, right after its first checkpoint
        real_save(self)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(vsr.studies.driver, "train", spy_train)
    monkeypatch.setattr(vsr.training.Trainer, "_save", save_then_interrupt)
    args = {"data": synth_root, "out": runs, "report": report, "progress": False}
    with pytest.raises(KeyboardInterrupt):
        run_and_report(study_file, **args)
    first, second = runs / "mini/unidirectional/seed0", runs / "mini/unidirectional/seed1"
    assert (first / "run.json").is_file()
    assert (second / "checkpoints/latest.pth").is_file() and not (second / "result.json").exists()
    assert not (second / "run.json").exists()
    first_record = (first / "run.json").read_text()

    calls.clear()
    monkeypatch.setattr(vsr.training.Trainer, "_save", real_save)
    run_and_report(study_file, **args)
    assert calls == [("unidirectional/seed1", True), ("bidirectional/seed0", False), ("bidirectional/seed1", False)]
    assert (first / "run.json").read_text() == first_record  # finished run untouched
    log = [json.loads(line) for line in (second / "log.jsonl").read_text().splitlines()]
    assert [e["iteration"] for e in log if e["event"] == "train"] == [1, 2]  # resumed, no duplicated steps

    # The table against each run's metrics.json, read here independently.
    table = pd.read_csv(report / "results.csv").set_index("variant")
    for variant in ("unidirectional", "bidirectional"):
        psnrs = [json.loads((runs / f"mini/{variant}/seed{s}/metrics.json").read_text())["psnr"] for s in (0, 1)]
        assert table.loc[variant, "seeds"] == 2
        assert table.loc[variant, "psnr_mean"] == pytest.approx(statistics.mean(psnrs), abs=1e-9)
        assert table.loc[variant, "psnr_std"] == pytest.approx(statistics.stdev(psnrs), abs=1e-9)
        # The temporal gain: per run, frames averaged per clip and then clips, from the probe's own CSV.
        gains = []
        for s in (0, 1):
            probe = pd.read_csv(runs / f"mini/{variant}/seed{s}/temporal/temporal_gain.csv", dtype={"clip": str})
            np.testing.assert_allclose(probe.gain, probe.psnr - probe.psnr_alone, atol=1e-9)
            gains.append(probe.groupby("clip").gain.mean().mean())
            run_record = json.loads((runs / f"mini/{variant}/seed{s}/run.json").read_text())
            assert run_record["temporal_gain"] == pytest.approx(gains[-1], abs=1e-9)
        assert table.loc[variant, "temporal_gain_mean"] == pytest.approx(statistics.mean(gains), abs=1e-9)
        assert table.loc[variant, "temporal_gain_std"] == pytest.approx(statistics.stdev(gains), abs=1e-9)
    base = table.loc["bidirectional", "psnr_mean"]
    assert table.loc["unidirectional", "psnr_delta"] == pytest.approx(table.loc["unidirectional", "psnr_mean"] - base)
    assert table.loc["bidirectional", "params"] == sum(
        json.loads((runs / "mini/bidirectional/seed0/profile.json").read_text())["params"][k]
        for k in ("propagation", "alignment", "aggregation", "upsampling")
    )
    runs_csv = pd.read_csv(report / "runs.csv")
    assert len(runs_csv[runs_csv.metric == "psnr"]) == 4  # one row per variant and seed, none duplicated
    assert len(runs_csv[runs_csv.metric == "temporal_gain"]) == 4
    # Run folders are named relative to the report, so the report names no path of this machine.
    assert not any(Path(d).is_absolute() for d in runs_csv.run_dir)
    assert all((report / d / "run.json").is_file() for d in runs_csv.run_dir)
    assert str(tmp_path) not in (report / "index.md").read_text()
    index = (report / "index.md").read_text()
    figures = ["per_frame_psnr", "temporal_gain", "receptive_field", "psnr_vs_params", "psnr_vs_runtime",
               "training_curves", "visual_comparison"]  # fmt: skip
    for figure in figures:
        assert f"]({figure}.png)" in index
        with Image.open(report / f"{figure}.png") as image:
            assert image.size[0] >= 600
    assert "**bidirectional > unidirectional**" in index
    # The ordering at the first frame, from the report's own per-frame table (study.json carries 'at').
    contrast = frame_contrast(pd.read_csv(report / "per_frame.csv", dtype={"clip": str}), "first")
    first = contrast.groupby("variant").value.mean()
    opening = "**bidirectional > unidirectional at the first frame, relative to the clip** (PSNR at the first frame"
    assert f"{opening} minus the clip average: bidirectional {first.bidirectional:+.3f}, unidirectional" in index

    # Evaluation interrupted after training: only the evaluation reruns, with the same numbers.
    record = json.loads((runs / "mini/bidirectional/seed1/run.json").read_text())
    (runs / "mini/bidirectional/seed1/run.json").unlink()
    calls.clear()
    run_and_report(study_file, **args)
    assert calls == []
    again = json.loads((runs / "mini/bidirectional/seed1/run.json").read_text())
    assert again["metrics"] == record["metrics"]

    # A changed study file never mixes runs made with another recipe.
    raw = yaml.safe_load(study_file.read_text())
    raw["presets"]["cpu"]["overrides"] = ["train.lr=1.0e-3"]
    study_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(StudyError, match=r"made for another recipe \(recipe.train.lr: 0.0002 -> 0.001\)"):
        run_and_report(study_file, **args)


def test_submitit_local_executor_runs_a_variant(study_file, synth_root, tmp_path, monkeypatch):
    monkeypatch.setattr(vsr.studies.executors, "POLL_SECONDS", 0.5)
    runs = tmp_path / "runs"
    report = run_and_report(study_file, data=synth_root, out=runs, report=tmp_path / "report", progress=False,
                       executor="submitit-local", seeds=[0], variants=["bidirectional"])  # fmt: skip
    run = runs / "mini/bidirectional/seed0"
    record = json.loads((run / "run.json").read_text())
    job = json.loads((run / "job.json").read_text())
    assert record["variant"] == "bidirectional" and record["iterations"] == 2
    assert int(job["job_id"]) > 0 and job["executor"] == "submitit-local"
    assert not (runs / "mini/unidirectional").exists()
    assert (report / "index.md").is_file()


def test_failed_run_is_recorded_and_the_study_goes_on(study_file, synth_root, tmp_path, monkeypatch):
    real_train = vsr.studies.driver.train

    def train_or_diverge(recipe, out_dir, **kwargs):
        if "unidirectional" in str(out_dir):
            raise VSRError("training diverged: the loss is nan at iteration 1")
        return real_train(recipe, out_dir, **kwargs)

    monkeypatch.setattr(vsr.studies.driver, "train", train_or_diverge)
    runs, report = tmp_path / "runs", tmp_path / "report"
    with pytest.raises(StudyError, match=r"(?s)1 run\(s\) of study 'mini' failed.*mini/unidirectional/seed0: VSRError"):
        run_and_report(study_file, data=synth_root, out=runs, report=report, progress=False, seeds=[0])
    failed = json.loads((runs / "mini/unidirectional/seed0/failed.json").read_text())
    assert "loss is nan" in failed["error"] and "Traceback" in failed["traceback"]
    assert (runs / "mini/bidirectional/seed0/run.json").is_file()
    index = (report / "index.md").read_text()
    assert "## Failed runs" in index and "loss is nan" in index
    assert "not measured (no finished runs of unidirectional)" in index


def test_identical_run_of_another_study_is_reused_not_retrained(study_file, synth_root, tmp_path, monkeypatch):
    """The base of one study is often a variant of another (BasicVSR in the propagation, alignment and
    IconVSR studies): a finished run with the same recipe and seed is copied and re-evaluated, not retrained."""
    runs = tmp_path / "runs"
    args = {"data": synth_root, "out": runs, "progress": False, "seeds": [0]}
    run_study(study_file, variants=["bidirectional"], **args)

    raw = yaml.safe_load(study_file.read_text())
    raw["name"] = "other"
    raw["variants"] = {"bidirectional": [], "lr": ["train.lr=1.0e-3"]}  # one twin, one new recipe
    raw["base"], raw["expect"] = "bidirectional", []
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(raw, sort_keys=False))
    trained: list[str] = []
    real_train = vsr.studies.driver.train

    def spy_train(recipe, out_dir, **kwargs):
        trained.append(Path(out_dir).relative_to(runs).as_posix())
        return real_train(recipe, out_dir, **kwargs)

    monkeypatch.setattr(vsr.studies.driver, "train", spy_train)
    run_study(other, **args)
    assert trained == ["other/lr/seed0"]
    source, copy = runs / "mini/bidirectional/seed0", runs / "other/bidirectional/seed0"
    record = json.loads((copy / "run.json").read_text())
    assert record["trained_in"] == str(source)
    assert record["metrics"] == json.loads((source / "run.json").read_text())["metrics"]
    assert (copy / "log.jsonl").read_text() == (source / "log.jsonl").read_text()
    assert json.loads((runs / "other/lr/seed0/run.json").read_text())["trained_in"] is None


def test_parallel_jobs_give_the_results_of_one_after_another(study_file, synth_root, tmp_path):
    """``jobs=2``: two worker processes, one thread each; every run finishes, with the numbers a sequential
    study gets (training is a pure function of the recipe and seed)."""
    args = {"data": synth_root, "progress": False, "seeds": [0]}
    run_study(study_file, out=tmp_path / "one", **args)
    run_and_report(study_file, out=tmp_path / "two", report=tmp_path / "r2", jobs=2, **args)
    for variant in ("unidirectional", "bidirectional"):
        one = json.loads((tmp_path / f"one/mini/{variant}/seed0/metrics.json").read_text())
        two = json.loads((tmp_path / f"two/mini/{variant}/seed0/metrics.json").read_text())
        assert two["psnr"] == pytest.approx(one["psnr"], abs=1e-4)
    assert pd.read_csv(tmp_path / "r2/results.csv").set_index("variant").loc["bidirectional", "seeds"] == 1
    with pytest.raises(StudyError, match=r"jobs=2: .* only with the local executor"):
        run_study(study_file, out=tmp_path / "three", executor="submitit-local", jobs=2, **args)


def _read_frames(folder: Path) -> np.ndarray:
    """``(t, 3, h, w)`` in [0, 1] from a folder of PNG frames, read here with PIL."""
    frames = [np.asarray(Image.open(p).convert("RGB"), dtype=np.float64) / 255 for p in sorted(folder.glob("*.png"))]
    return np.stack(frames).transpose(0, 3, 1, 2)


def test_a_study_on_a_lower_is_better_metric_of_a_plugin(study_file, synth_root, tmp_path):
    """``metrics: [abs_error, psnr]`` with ``imports: [metric_plugins]``: every run is evaluated with the
    plugin's lower-is-better metric (checked against numpy on the model's output), and the report orders the
    variants by it the right way round."""
    raw = yaml.safe_load(study_file.read_text())
    raw |= {"imports": ["metric_plugins"], "metrics": ["abs_error", "psnr"],
            "expect": [{"better": "bidirectional", "worse": "unidirectional", "metric": "abs_error"}]}  # fmt: skip
    study_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    runs, report = tmp_path / "runs", tmp_path / "report"
    run_and_report(study_file, data=synth_root, out=runs, report=report, progress=False, seeds=[0])

    errors = {}
    for variant in ("unidirectional", "bidirectional"):
        run_dir = runs / "mini" / variant / "seed0"
        spec = json.loads((run_dir / "run_spec.json").read_text())
        assert [m for m in spec["recipe"]["data"]["val_metrics"]] == ["psnr", "ssim", "abs_error"]
        model = assemble(load_recipe(spec["recipe"]).model).eval()
        load_checkpoint(model, run_dir / "checkpoints" / "last.pth")
        per_frame = pd.read_csv(run_dir / "per_frame.csv", dtype={"clip": str})
        by_clip = []
        for clip, rows in per_frame.groupby("clip"):
            lq = _read_frames(synth_root / "val" / "BIx4" / clip)
            gt = _read_frames(synth_root / "val" / "GT" / clip)
            with torch.no_grad():
                out = model(torch.from_numpy(lq).float()[None])[0].clamp(0, 1).double().numpy()
            expected = np.abs(out - gt).mean(axis=(1, 2, 3)) * 255
            np.testing.assert_allclose(rows.sort_values("frame").abs_error, expected, atol=1e-4)
            by_clip.append(expected.mean())
        errors[variant] = np.mean(by_clip)
        assert json.loads((run_dir / "run.json").read_text())["metrics"]["abs_error"] == pytest.approx(errors[variant])

    table = pd.read_csv(report / "results.csv").set_index("variant")
    assert table.loc["unidirectional", "abs_error_mean"] == pytest.approx(errors["unidirectional"], abs=1e-4)
    delta = errors["bidirectional"] - errors["unidirectional"]
    assert table.loc["unidirectional", "abs_error_delta"] == pytest.approx(-delta, abs=1e-4)
    assert "abs_error" in pd.read_csv(report / "per_frame.csv").columns
    index = (report / "index.md").read_text()
    verdict = "holds" if delta < 0 else "is reversed"  # lower is better
    assert f"**bidirectional > unidirectional** (AbsErr, lower is better): {verdict} as measured" in index
    assert f"({delta:+.3f} levels)" in index and "](per_frame_abs_error.png)" in index


def test_vsr_study_and_vsr_report_write_a_shipped_study_report_where_it_is_shipped(synth_root, tmp_path,
                                                                                  monkeypatch):  # fmt: skip
    """A study found by name in ./studies, run with its shipped preset (cpu, the default): `vsr study` writes
    its report to reports/<name>/, and `vsr report` on its runs rewrites it there; another preset's report
    would go to reports/<name>-<preset>/."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VSR_STUDIES", raising=False)
    (tmp_path / "studies").mkdir()
    (tmp_path / "tiny_test.yaml").write_text(yaml.safe_dump(TINY_RECIPE))
    raw = study_dict(str(tmp_path / "tiny_test.yaml")) | {"name": "shipped_mini"}
    (tmp_path / "studies" / "shipped_mini.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    runner = CliRunner()
    done = runner.invoke(app, ["study", "shipped_mini", "--data", str(synth_root), "--seeds", "1", "--variant",
                               "bidirectional"], catch_exceptions=False)  # fmt: skip
    assert done.exit_code == 0, done.output
    index = tmp_path / "reports" / "shipped_mini" / "index.md"
    assert index.is_file() and not (tmp_path / "reports" / "shipped_mini-cpu").exists()
    index.unlink()
    done = runner.invoke(app, ["report", "runs/studies/cpu/shipped_mini", "--no-visual"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    assert index.is_file() and "preset `cpu`" in index.read_text()
    assert load_study("shipped_mini").report_folder("paper") == Path("reports/shipped_mini-paper")


# ------------------------------------------------------------------------------------------ the run folder
def test_run_folders_name_the_writers_files_by_the_writers_names():
    """vsr.studies.runs imports the names of what training and evaluation write, and spells none of them."""
    written = {name: value for name, value in vars(vsr.training.files).items() if name.isupper()}
    written |= {"METRICS_FILE": vsr.evaluate.METRICS_FILE, "PER_FRAME_FILE": vsr.evaluate.PER_FRAME_FILE}
    for name, value in written.items():
        if hasattr(run_folders, name):
            assert getattr(run_folders, name) == value
    literals = string_literals(Path(run_folders.__file__))
    names = [re.compile(rf"(?<!\w){re.escape(value)}(?!\w)") for value in written.values()]
    spelled = [text for text in literals if any(n.search(text) for n in names)]
    assert not spelled, f"vsr/studies/runs.py spells the writers' file names {spelled}"


def test_a_run_builds_and_loads_its_model_once(study_file, synth_root, tmp_path, monkeypatch):
    """After training, one run's evaluation, probe and profile share one model: built once (by the driver) and
    its weights read once (by evaluate)."""
    (spec,) = plan_runs(load_study(study_file), "cpu", tmp_path / "runs", seeds=[0], data=synth_root,
                        variants=["bidirectional"])  # fmt: skip
    run_one(spec, progress=False)
    (Path(spec.run_dir) / run_folders.RUN_FILE).unlink()  # trained: the rerun only evaluates, probes, profiles
    built, loaded = [], []
    real_assemble, real_load = vsr.studies.driver.assemble, vsr.evaluate.load_checkpoint

    def count_assemble(*args, **kwargs):
        built.append(args)
        return real_assemble(*args, **kwargs)

    def count_load(*args, **kwargs):
        loaded.append(args[1])
        return real_load(*args, **kwargs)

    def refuse(*args, **kwargs):
        raise AssertionError("a second model was built")

    monkeypatch.setattr(vsr.studies.driver, "assemble", count_assemble)
    monkeypatch.setattr(vsr.evaluate, "load_checkpoint", count_load)
    for module in (vsr.evaluate, vsr.profile):
        monkeypatch.setattr(module, "assemble", refuse)
    record = run_one(spec, progress=False)
    assert len(built) == 1 and loaded == [run_folders.last_checkpoint(spec.run_dir)]
    assert record["metrics"]["psnr"] == run_folders.read_metrics(spec.run_dir)["psnr"]
    assert run_folders.read_profile(spec.run_dir)["recipe"] == spec.recipe["name"]


def test_a_run_writes_the_files_its_run_folder_names(study_file, synth_root, tmp_path):
    """One run of a study (trained, evaluated, probed, profiled) leaves exactly the files vsr.studies.runs
    names (and the best checkpoint, which no study reads), and runs reads each of them back."""
    (spec,) = plan_runs(load_study(study_file), "cpu", tmp_path / "runs", seeds=[0], data=synth_root,
                        variants=["bidirectional"])  # fmt: skip
    run_one(spec, progress=False)
    run_dir = Path(spec.run_dir)
    files = {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()}
    probe = {f for f in files if f.startswith(f"{run_folders.TEMPORAL_DIR}/")}
    events = {f for f in files if fnmatch(f, vsr.training.files.TENSORBOARD_EVENTS)}  # for TensorBoard, not studies
    assert len(events) == 1
    named = {run_folders.RUN_FILE, run_folders.SPEC_FILE, run_folders.PROFILE_FILE, run_folders.METRICS_FILE,
             run_folders.PER_FRAME_FILE, run_folders.LATEST_CHECKPOINT, *run_folders.TRAINING_FILES}  # fmt: skip
    assert files - probe - events == named | {vsr.training.files.BEST_CHECKPOINT}
    assert run_folders.run_finished(run_dir) and run_folders.training_finished(run_dir)
    assert run_folders.can_resume(run_dir) and run_folders.last_checkpoint(run_dir).is_file()
    assert run_folders.read_training_result(run_dir)["iterations"] == 2
    assert run_folders.read_metrics(run_dir)["psnr"] == run_folders.read_run(run_dir)["metrics"]["psnr"]
    assert [e["iteration"] for e in run_folders.read_log(run_dir) if e["event"] == "train"] == [1, 2]
    assert run_folders.per_frame_file(run_dir) is not None and run_folders.read_profile(run_dir) is not None
    assert run_folders.read_temporal(run_dir) is not None

"""The seams a paper changes, used from outside the package: a plugin module (tests/plugins) registers a
component, a loss, a metric and a two-optimiser objective; recipes load it with ``imports:``, commands with
``--import``. The toy adversarial objective trains, resumes bit-exactly and runs under DDP with no trainer
change."""

from __future__ import annotations

import copy
import os
import socket
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from tiny import TINY_DATA, TINY_MODEL, study_preset, tiny_synth
from typer.testing import CliRunner

from vsr import RecipeError
from vsr.checkpoints import read_checkpoint
from vsr.cli import app
from vsr.recipe import load_recipe
from vsr.registry import KINDS, REGISTRY, choices, register
from vsr.training import Trainer, train
from vsr.training.distributed import leave_without_teardown

PLUGINS = Path(__file__).parent / "plugins"
PLUGIN = "vsr_example_plugin"

ADVERSARIAL = {
    "name": "adversarial",
    "imports": [PLUGIN],
    "model": TINY_MODEL,
    "data": TINY_DATA,
    "train": {
        "objective": {"name": "toy_adversarial", "adversarial_weight": 0.1},
        "losses": [{"name": "charbonnier", "weight": 1.0}, {"name": "log_cosh", "weight": 0.5}],
        "iterations": 4,
        "periods": [4],
        "lr": 1e-3,
        "fix_iterations": 0,
        "log_every": 1,
        "val_every": 2,
        "checkpoint_every": 2,
    },
}


@pytest.fixture(autouse=True)
def _plugin_path(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")]))


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "set"
    tiny_synth(root)
    return root


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


# ------------------------------------------------------------------------------------------------ imports
def test_vsr_list_prints_every_kind_with_its_names_plugins_included():
    result = invoke("list", "--import", PLUGIN)
    assert result.exit_code == 0, result.output
    lines = dict(line.split(": ", 1) for line in result.output.strip().splitlines())
    assert list(lines) == list(KINDS)
    for kind in KINDS:
        assert lines[kind].split(", ") == choices(kind)
    assert "bidirectional" in lines["propagation"].split(", ") and "none" in lines["refill"].split(", ")
    for kind, name in [("upsampling", "nearest_conv"), ("loss", "log_cosh"), ("metric", "mae"),
                       ("objective", "toy_adversarial")]:  # fmt: skip
        assert name in lines[kind].split(", ")
    assert {"psnr", "ssim"} <= set(lines["metric"].split(", "))
    assert {"bi", "bd"} <= set(lines["degradation"].split(", "))


def test_a_plugin_that_cannot_be_imported_is_one_line_naming_it(tmp_path):
    result = invoke("list", "--import", "no_such_plugin")
    assert result.exit_code == 2
    assert result.output.startswith("error: --import no_such_plugin: cannot import the plugin module: ")
    assert "No module named 'no_such_plugin'" in result.output and "Traceback" not in result.output
    (tmp_path / "broken.yaml").write_text("imports: [not a module]\n")
    result = invoke("model", tmp_path / "broken.yaml")
    assert result.exit_code == 2 and "'imports' = 'not a module': a plugin is a dotted module name" in result.output
    with pytest.raises(RecipeError, match=r"'imports' = 'vsr_failing'.*ZeroDivisionError: division by zero"):
        sys.modules.pop("vsr_failing", None)
        (tmp_path / "vsr_failing.py").write_text("1 / 0\n")
        sys.path.insert(0, str(tmp_path))
        try:
            load_recipe({"imports": ["vsr_failing"]})
        finally:
            sys.path.remove(str(tmp_path))


def test_imports_travel_with_the_recipe():
    """A run's recipe keeps its imports (so a resumed run, a study job or a spawned worker imports them again);
    --import adds to them; a recipe without plugins reads as before."""
    recipe = load_recipe(ADVERSARIAL)
    assert recipe.imports == [PLUGIN] and recipe.to_dict()["imports"] == [PLUGIN]
    assert load_recipe(recipe.to_dict()).imports == [PLUGIN]
    assert load_recipe("basicvsr_tiny").with_imports([PLUGIN]).to_dict()["imports"] == [PLUGIN]
    assert "imports" not in load_recipe("basicvsr_tiny").to_dict()


def test_vsr_model_assembles_a_plugin_component():
    result = invoke("model", "basicvsr_tiny", "--import", PLUGIN, "--set", "model.upsampling=nearest_conv")
    assert result.exit_code == 0, result.output
    assert "nearest_conv" in result.output


# ---------------------------------------------------------------------------------- two-optimiser objective
def _run_state(run_dir: Path) -> dict:
    return read_checkpoint(run_dir / "checkpoints" / "latest.pth")


def test_two_optimiser_objective_trains_and_resumes_bit_exactly(data_root, tmp_path, monkeypatch):
    from vsr_example_plugin import ToyAdversarial

    monkeypatch.setattr(ToyAdversarial, "steps_taken", 0)
    full = train(ADVERSARIAL, tmp_path / "full", data=data_root, progress=False)
    assert full.iterations == 4
    state = _run_state(tmp_path / "full")
    assert set(state["optimizers"]) == {"model", "discriminator"} == set(state["schedulers"])
    assert set(state["modules"]) == {"discriminator"}
    assert state["objective"] == "toy_adversarial"
    logged = [yaml.safe_load(line) for line in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    steps = [e for e in logged if e.get("event") == "train"]
    assert len(steps) == 4 and all({"loss", "pixel", "discriminator"} <= set(e) for e in steps)

    monkeypatch.setattr(ToyAdversarial, "steps_taken", 0)
    monkeypatch.setattr(ToyAdversarial, "interrupt_at", 4)
    with pytest.raises(KeyboardInterrupt):
        train(ADVERSARIAL, tmp_path / "resumed", data=data_root, progress=False)
    assert _run_state(tmp_path / "resumed")["iteration"] == 2
    monkeypatch.setattr(ToyAdversarial, "interrupt_at", None)
    resumed = train(ADVERSARIAL, tmp_path / "resumed", data=data_root, resume=True, progress=False)
    assert resumed.iterations == 4

    a, b = state, _run_state(tmp_path / "resumed")
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for key, value in a["modules"]["discriminator"].items():
        assert torch.equal(value, b["modules"]["discriminator"][key]), key
    for name in ("model", "discriminator"):
        moments_a, moments_b = a["optimizers"][name]["state"], b["optimizers"][name]["state"]
        assert moments_a.keys() == moments_b.keys()
        for index, moments in moments_a.items():
            for key, value in moments.items():
                assert torch.equal(value, moments_b[index][key]), (name, index, key)
    assert full.metrics == resumed.metrics


def test_a_run_resumed_with_another_objective_is_refused(data_root, tmp_path):
    train(ADVERSARIAL, tmp_path, data=data_root, progress=False)
    plain = copy.deepcopy(ADVERSARIAL)
    plain["train"]["objective"] = "sr"
    with pytest.raises(Exception, match=r"a resumed run cannot change train.objective"):
        train(plain, tmp_path, data=data_root, resume=True, progress=False, allow_recipe_changes=True)


def _ddp_worker(rank: int, port: int, recipe: dict, data_root: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK="0")
    torch.set_num_threads(1)
    trainer = Trainer(load_recipe(recipe), Path(out), data_root, False, "cpu", False)
    trainer.run()
    weights = {
        "model": trainer.model.state_dict(),
        "discriminator": trainer.state.modules["discriminator"].state_dict(),
    }
    torch.save(weights, Path(out).parent / f"rank{rank}.pt")
    leave_without_teardown()


def test_two_optimiser_objective_runs_under_ddp(data_root, tmp_path):
    """Two gloo ranks (as torchrun starts them) train the generator and the discriminator in step: both
    ranks end with the same weights of both, and they moved from their initial values."""
    recipe = copy.deepcopy(ADVERSARIAL)
    recipe["data"] = {**TINY_DATA, "batch_size": 1}
    recipe["train"].update(iterations=2, periods=[2], val_every=0, checkpoint_every=0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ddp" / "run"
    torch.multiprocessing.spawn(_ddp_worker, args=(port, recipe, str(data_root), str(out)), nprocs=2, join=True)
    rank0, rank1 = (torch.load(tmp_path / "ddp" / f"rank{r}.pt") for r in range(2))
    for part in ("model", "discriminator"):
        for key, value in rank0[part].items():
            assert torch.equal(value, rank1[part][key]), (part, key)
    torch.manual_seed(0)
    from vsr_example_plugin import PatchDiscriminator

    initial = PatchDiscriminator().state_dict()
    assert any(not torch.equal(initial[k], rank0["discriminator"][k]) for k in initial)


# ------------------------------------------------------------------------- from the commands, end to end
def _frames_by_clip(per_frame: pd.DataFrame, column: str) -> float:
    return per_frame.groupby("clip")[column].mean().mean()


def test_a_plugin_works_from_vsr_train_test_study_and_report(data_root, tmp_path, monkeypatch):
    """A recipe's ``imports:`` brings the plugin's component, loss and lower-is-better metric to ``vsr train``;
    the metric is in result.json, in ``vsr test``'s metrics.json and per_frame.csv, and in a study's
    per_frame.csv, results.csv and report, where its ordering is tested lower-is-better."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VSR_STUDIES", raising=False)
    recipe = {
        "name": "plugged",
        "imports": [PLUGIN],
        "model": {**TINY_MODEL, "alignment": "none", "upsampling": {"name": "nearest_conv", "hr_channels": 8}},
        "data": {**TINY_DATA, "batch_size": 1, "val_metrics": ["psnr", "mae"]},
        "train": {"iterations": 2, "periods": [2], "fix_iterations": 0, "log_every": 1, "val_every": 2,
                  "losses": [{"name": "charbonnier", "weight": 1.0}, {"name": "log_cosh", "weight": 0.5}]},
    }  # fmt: skip
    Path("plugged.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))

    done = invoke("train", "plugged.yaml", "--out", "run", "--data", data_root)
    assert done.exit_code == 0, done.output
    result = yaml.safe_load(Path("run/result.json").read_text())
    assert set(result["metrics"]) == {"psnr", "mae"} and result["metrics"]["mae"] > 0
    gain = result["baseline"]["mae"] - result["metrics"]["mae"]  # lower is better: the gain is the drop
    assert result["mae_gain"] == pytest.approx(gain) and result["psnr_gain"] == pytest.approx(
        result["metrics"]["psnr"] - result["baseline"]["psnr"]
    )
    assert result["best"]["metric"] == "psnr"
    assert yaml.safe_load(Path("run/recipe.yaml").read_text())["imports"] == [PLUGIN]

    done = invoke("test", "plugged.yaml", "--checkpoint", "run/checkpoints/last.pth", "--data", data_root, "-o", "eval")
    assert done.exit_code == 0, done.output
    metrics = yaml.safe_load(Path("eval/metrics.json").read_text())
    per_frame = pd.read_csv("eval/per_frame.csv")
    assert {"psnr", "mae"} <= set(per_frame.columns)
    assert metrics["mae"] == pytest.approx(_frames_by_clip(per_frame, "mae"), rel=1e-9)
    assert metrics["mae"] == pytest.approx(result["metrics"]["mae"], rel=1e-6)  # validation is vsr test

    study = {
        "name": "plugged_study",
        "imports": [PLUGIN],
        "base": "bidirectional",
        "metrics": ["mae", "psnr"],
        "presets": {"cpu": study_preset("plugged.yaml")},
        "variants": {"bidirectional": [], "unidirectional": ["model.propagation=unidirectional"]},
        "expect": [{"better": "bidirectional", "worse": "unidirectional", "metric": "mae"}],
    }  # fmt: skip
    Path("study.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    done = invoke("study", "study.yaml", "--data", data_root, "--report", "report")
    assert done.exit_code == 0, done.output
    per_frame = pd.read_csv("report/per_frame.csv")
    results = pd.read_csv("report/results.csv")
    assert "mae" in set(per_frame.columns) | set(per_frame.get("metric", pd.Series(dtype=str)))
    assert any(column.startswith("mae") for column in results.columns)
    index = Path("report/index.md").read_text()
    assert "MAE" in index and "lower is better" in index.lower()


def test_a_part_must_set_what_its_kind_declares_and_avoid_reserved_names():
    from vsr.metrics import Metric

    with pytest.raises(TypeError, match=r"Unlabelled must set higher_is_better, unit, needs_gt, label to be a metric"):

        @register("metric", "unlabelled")
        class Unlabelled(Metric):
            def per_frame(self, pred, gt):
                return pred.mean((-3, -2, -1))

    for reserved in ("frame", "clip", "bicubic_psnr"):
        with pytest.raises(ValueError, match=rf"'{reserved}' is a reserved name for a metric"):
            register("metric", reserved)
    assert "unlabelled" not in REGISTRY["metric"]

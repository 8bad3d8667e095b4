"""The moving average of the weights (``train.ema``): the average against its closed form, a run's average
against the recursion over the weights it trained (recorded at every step), validation and ``vsr test``
scoring the average, its place in checkpoints (BasicSR's ``params_ema``), a BasicSR weight file that BasicSR
1.4.2's own ``load_network`` loads (the average under ``params_ema``), and bit-exact resume."""

from __future__ import annotations

import copy
import sys
import types
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny import TINY_DATA, TINY_MODEL, interrupted_training, tiny_synth
from typer.testing import CliRunner

import vsr
from vsr import CheckpointError
from vsr.checkpoints import (
    EXPORT_KEY,
    extract_state_dict,
    load_checkpoint,
    pretrained_model,
    read_checkpoint,
    save_basicsr_checkpoint,
    save_checkpoint,
)
from vsr.cli import app
from vsr.evaluate import evaluate
from vsr.model import assemble
from vsr.recipe import load_recipe
from vsr.training import train
from vsr.training.ema import EMA_KEY, WeightAverage

from basicsr_reference import import_basicsr

DECAY = 0.6  # far from 1, so that four steps move the average visibly away from the first weights
RECIPE = {
    "name": "tiny_ema",
    "model": TINY_MODEL,
    "data": TINY_DATA,
    "train": {"iterations": 4, "periods": [4], "lr": 1e-3, "fix_iterations": 0, "log_every": 1, "val_every": 2,
              "checkpoint_every": 2, "ema": DECAY, "tensorboard": False},
}  # fmt: skip


def test_the_average_follows_its_closed_form():
    """After weights p_1..p_n, avg_n = d^n p_0 + sum_k (1 - d) d^(n-k) p_k (float64 reference); buffers are
    copied, not averaged."""
    model = torch.nn.BatchNorm1d(3)  # two parameters and three buffers
    average = WeightAverage(model, 0.9)
    start = {k: v.double().clone() for k, v in model.state_dict().items()}
    steps = [torch.randn(3) for _ in range(5)]
    for p in steps:
        with torch.no_grad():
            model.weight.copy_(p)
            model.bias.copy_(-p)
            model.running_mean.copy_(2 * p)
        average.update(model)
    d, n = 0.9, len(steps)
    expected = d**n * start["weight"] + sum((1 - d) * d ** (n - k) * p.double() for k, p in enumerate(steps, 1))
    torch.testing.assert_close(average.module.weight.double(), expected, rtol=0, atol=1e-6)
    expected_bias = d**n * start["bias"] - sum((1 - d) * d ** (n - k) * p.double() for k, p in enumerate(steps, 1))
    torch.testing.assert_close(average.module.bias.double(), expected_bias, rtol=0, atol=1e-6)
    assert torch.equal(average.module.running_mean, 2 * steps[-1])  # a buffer: the latest value
    assert not average.module.weight.requires_grad and not average.module.training


def test_a_decay_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        WeightAverage(torch.nn.Linear(1, 1), 1.0)
    with pytest.raises(vsr.RecipeError, match=r"'train\.ema' = 1\.5: must be null or a number >= 0 and < 1"):
        load_recipe(RECIPE, "train.ema=1.5")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return tiny_synth(tmp_path_factory.mktemp("ema") / "set")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, data_root):
    """A 4-step run with EMA, recording the trained weights handed to every update."""
    trained: list[dict[str, torch.Tensor]] = []
    original = WeightAverage.update

    def recording(self, model):
        trained.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        original(self, model)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(WeightAverage, "update", recording)
        result = train(RECIPE, tmp_path_factory.mktemp("ema") / "run", data=data_root, progress=False)
    return result, trained


def initial_weights() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)  # the trainer seeds with train.seed = 0, then builds
    return assemble(load_recipe(RECIPE).model).state_dict()


def test_a_runs_average_is_the_recursion_over_its_trained_weights(recorded):
    result, trained = recorded
    assert len(trained) == 4  # one update per optimiser step
    last = read_checkpoint(result.checkpoint)
    average = {k: v.double() for k, v in initial_weights().items()}
    for weights in trained:
        average = {k: DECAY * average[k] + (1 - DECAY) * weights[k].double() for k in average}
    for key, value in last[EMA_KEY].items():
        torch.testing.assert_close(value.double(), average[key], rtol=0, atol=1e-6, msg=key)
    # the trained weights are the last recorded ones, and the average is not them
    for key, value in last["model"].items():
        assert torch.equal(value, trained[-1][key]), key
    moved = [k for k in last["model"] if not torch.equal(last["model"][k], last[EMA_KEY][k])]
    assert "upsampling.conv_last.weight" in moved and len(moved) > len(last["model"]) // 2


def test_the_average_is_what_validation_and_vsr_test_score(recorded, data_root):
    result, _ = recorded
    last = read_checkpoint(result.checkpoint)
    # evaluate (vsr test) loads params_ema from a vsr checkpoint by default: the run's own numbers
    scored = evaluate(RECIPE, result.checkpoint, {"root": data_root, "split": "val"}, progress=False)
    assert scored["psnr"] == result.metrics["psnr"] and scored["ssim"] == result.metrics["ssim"]
    raw = assemble(load_recipe(RECIPE).model)
    load_checkpoint(raw, result.checkpoint, param_key="params")
    trained = evaluate(raw, None, {"root": data_root, "split": "val"}, progress=False)
    assert trained["psnr"] != result.metrics["psnr"]
    # the files: params_ema beside the trained weights; model.safetensors holds the scored (averaged) weights
    assert set(extract_state_dict(last)) == set(last["model"])
    assert all(torch.equal(extract_state_dict(last)[k], v) for k, v in last[EMA_KEY].items())
    assert all(torch.equal(extract_state_dict(last, param_key="params")[k], v) for k, v in last["model"].items())
    weights = load_file(str(result.out_dir / "model.safetensors"))
    assert all(torch.equal(weights[k], v) for k, v in last[EMA_KEY].items())
    best = read_checkpoint(result.best_checkpoint)
    assert EMA_KEY in best and best["iteration"] in (2, 4)


def test_a_checkpoint_without_an_average_says_so(recorded, tmp_path):
    result, _ = recorded
    plain = {k: v for k, v in read_checkpoint(result.checkpoint).items() if k != EMA_KEY}
    with pytest.raises(CheckpointError, match=r"no 'params_ema'.*without train\.ema"):
        extract_state_dict(plain, param_key="params_ema")
    assert all(torch.equal(extract_state_dict(plain)[k], v) for k, v in plain["model"].items())


@pytest.fixture(scope="module")
def basicsr_load_network(basicsr_archs):
    """BasicSR 1.4.2's own ``BaseModel.load_network`` (``basicsr/models/base_model.py``), of a model without
    options; the package ``basicsr.models`` (whose ``__init__`` imports every model, and cv2) is bypassed as
    ``basicsr_reference`` bypasses the others."""
    models = types.ModuleType("basicsr.models")
    models.__path__ = [str(Path(basicsr_archs.__file__).parents[1] / "models")]
    sys.modules.setdefault("basicsr.models", models)
    base_model = import_basicsr("basicsr.models.base_model")

    class Loader(base_model.BaseModel):
        def __init__(self):  # no options: load_network reads none
            pass

    return Loader().load_network


def test_basicsr_loads_the_average_from_the_weight_file(data_root, tmp_path, basicsr_archs, basicsr_load_network):
    """A run of BasicSR's BasicVSR form (8 channels, one block) with train.ema: save_basicsr_checkpoint writes
    params and params_ema in BasicSR's names; BasicSR's load_network(param_key="params_ema") loads the average
    strictly into its BasicVSR, which then computes what vsr computes with the average (within 1e-4)."""
    recipe = copy.deepcopy(RECIPE)
    recipe["model"] = {"channels": 8, "aggregation": {"name": "residual", "num_blocks": 1}}  # full SPyNet, as BasicSR's
    recipe["train"].update(iterations=2, periods=[2])
    result = train(recipe, tmp_path / "run", data=data_root, progress=False)
    weights = tmp_path / "net_g_2.pth"  # what save_basicsr_checkpoint writes, through `vsr export -o *.pth`
    exported = CliRunner().invoke(app, ["export", str(result.checkpoint), "-o", str(weights)])
    assert exported.exit_code == 0, exported.output
    assert set(torch.load(weights)) == {"params", "params_ema", EXPORT_KEY}
    lrs = torch.rand(1, 3, 3, 64, 68)  # BasicSR's SPyNet needs 64×64 at least
    for param_key in ("params_ema", "params"):
        reference = basicsr_archs.BasicVSR(num_feat=8, num_block=1).eval()
        basicsr_load_network(reference, str(weights), strict=True, param_key=param_key)
        ours = pretrained_model(result.checkpoint).eval()
        if param_key == "params":
            load_checkpoint(ours, result.checkpoint, param_key="params")
        with torch.no_grad():
            assert (reference(lrs) - ours(lrs)).abs().max().item() <= 1e-4, param_key
    average, trained = (torch.load(weights)[key]["conv_last.weight"] for key in ("params_ema", "params"))
    assert not torch.equal(average, trained)


def test_a_model_without_a_basicsr_form_is_refused_naming_its_weights(tmp_path):
    model = assemble(load_recipe(RECIPE, "model.aggregation.name=plain").model)  # BasicSR's trunks are residual
    save_checkpoint(model, tmp_path / "plain.pth", recipe=load_recipe(RECIPE).to_dict())
    with pytest.raises(CheckpointError, match=r"no BasicSR name for propagation\.backward_aggregation\.layers\.0\."
                                              r"weight, .*BasicSR's archs \(BasicVSR, IconVSR, BasicVSR\+\+\) have no "
                                              r"such weights"):  # fmt: skip
        save_basicsr_checkpoint(tmp_path / "plain.pth", tmp_path / "net_g.pth")
    assert not (tmp_path / "net_g.pth").exists()


def test_resume_restores_the_average_bit_exactly(data_root, tmp_path):
    full = train(RECIPE, tmp_path / "full", data=data_root, progress=False)
    interrupted_training(RECIPE, tmp_path / "resumed", data_root, 3)  # after the checkpoint of iteration 2
    saved = read_checkpoint(tmp_path / "resumed" / "checkpoints" / "latest.pth")
    assert saved["iteration"] == 2 and EMA_KEY in saved
    resumed = train(RECIPE, tmp_path / "resumed", data=data_root, resume=True, progress=False)
    a, b = read_checkpoint(full.checkpoint), read_checkpoint(resumed.checkpoint)
    for key in ("model", EMA_KEY):
        for name, value in a[key].items():
            assert torch.equal(b[key][name], value), (key, name)
    assert resumed.metrics == full.metrics


def test_turning_the_average_on_when_resuming_starts_it_from_the_weights(data_root, tmp_path):
    without = copy.deepcopy(RECIPE)
    without["train"].update(ema=None, iterations=2, periods=[2])
    train(without, tmp_path, data=data_root, progress=False)
    start = read_checkpoint(tmp_path / "checkpoints" / "latest.pth")
    assert start["iteration"] == 2 and EMA_KEY not in start
    later = copy.deepcopy(RECIPE)
    later["train"].update(iterations=3, periods=[2])
    train(later, tmp_path, data=data_root, resume=True, progress=False, allow_recipe_changes=True)
    end = read_checkpoint(tmp_path / "checkpoints" / "latest.pth")
    assert end["iteration"] == 3
    for key, value in end[EMA_KEY].items():  # one step from the resumed weights
        expected = DECAY * start["model"][key].double() + (1 - DECAY) * end["model"][key].double()
        torch.testing.assert_close(value.double(), expected, rtol=0, atol=1e-6, msg=key)

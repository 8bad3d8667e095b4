"""RealBasicVSR's GAN stage: the VGG19 perceptual loss (``perceptual``), the vanilla GAN loss, and the objective
``realbasicvsr_gan`` (vsr.training.gan).

The VGG19 weights are random, saved in torchvision's ``vgg19`` layout by the tests (nothing downloads); the loss
is checked against a plain functional VGG run here with the same weights. The objective's terms are checked
against their definitions on one step, and a tiny BasicVSR with a cleaning module trains with it for three
iterations and resumes bit-exactly on the CPU (both optimisers), and runs under DDP (two gloo ranks, as torchrun
starts them)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tiny import TINY_DATA, TINY_MODEL, as_torchrun_rank, interrupt_step, spawn_two_ranks, tiny_synth

from vsr import RecipeError
from vsr.checkpoints import read_checkpoint
from vsr.data.realworld import unsharp_mask
from vsr.losses import VGG19_LAYERS, Perceptual, build_losses, gan_loss, vgg19_features
from vsr.recipe import load_recipe
from vsr.registry import build_entry
from vsr.training import Trainer, train
from vsr.training.distributed import leave_without_teardown
from vsr.training.gan import DISCRIMINATOR, RealBasicVSRGAN
from vsr.training.steps import MAIN, StepContext

#: torchvision's ``vgg19().features``: the index of each convolution and its (out, in) channels (ReLU after
#: each, a max-pool after each stage at 4, 9, 18, 27, 36). The names RealBasicVSR takes are at 2, 7, 16, 25, 34.
TORCHVISION_CONVS = {
    0: (64, 3), 2: (64, 64),
    5: (128, 64), 7: (128, 128),
    10: (256, 128), 12: (256, 256), 14: (256, 256), 16: (256, 256),
    19: (512, 256), 21: (512, 512), 23: (512, 512), 25: (512, 512),
    28: (512, 512), 30: (512, 512), 32: (512, 512), 34: (512, 512),
}  # fmt: skip
POOLS = (4, 9, 18, 27, 36)
REALBASICVSR_LAYERS = {2: 0.1, 7: 0.1, 16: 1.0, 25: 1.0, 34: 1.0}


def vgg19_state(last: int = 34) -> dict[str, torch.Tensor]:
    """Random VGG19 weights in torchvision's layout up to ``features.{last}``, scaled so activations stay O(1);
    with a classifier key, which a loader must ignore."""
    g = torch.Generator().manual_seed(7)
    state = {}
    for index, (out, inp) in TORCHVISION_CONVS.items():
        if index <= last:
            state[f"features.{index}.weight"] = torch.randn(out, inp, 3, 3, generator=g) * math.sqrt(2 / (9 * inp))
            state[f"features.{index}.bias"] = torch.randn(out, generator=g) * 0.01
    state["classifier.0.weight"] = torch.zeros(4, 8)
    return state


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("vgg") / "vgg19.pth"
    torch.save(vgg19_state(), path)
    return path


@pytest.fixture(scope="module")
def tiny_vgg_file(tmp_path_factory) -> Path:
    """conv1_1 .. conv2_2 only: what a perceptual loss on conv1_2 and conv2_2 reads (a few hundred KB)."""
    path = tmp_path_factory.mktemp("vgg") / "vgg19_head.pth"
    torch.save(vgg19_state(last=7), path)
    return path


def plain_vgg_features(state: dict[str, torch.Tensor], frames: torch.Tensor) -> dict[int, torch.Tensor]:
    """Each torchvision conv's output (before its ReLU), computed with functional ops from the state dict."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x, maps = (frames - mean) / std, {}
    for index in range(max(TORCHVISION_CONVS) + 1):
        if index in TORCHVISION_CONVS:
            x = F.conv2d(x, state[f"features.{index}.weight"], state[f"features.{index}.bias"], padding=1)
            maps[index] = x
        elif index in POOLS:
            x = F.max_pool2d(x, 2)
        else:
            x = F.relu(x)
    return maps


# ------------------------------------------------------------------------------------------- perceptual
def test_vgg19_features_have_torchvisions_layout():
    features = vgg19_features()
    shapes = {k: tuple(v.shape) for k, v in features.state_dict().items()}
    expected = {f"{i}.weight": (o, c, 3, 3) for i, (o, c) in TORCHVISION_CONVS.items()}
    expected |= {f"{i}.bias": (o,) for i, (o, _) in TORCHVISION_CONVS.items()}
    assert shapes == expected
    assert [i for i, m in enumerate(features) if isinstance(m, torch.nn.MaxPool2d)] == list(POOLS[:4])
    assert len(features) == 35  # up to conv5_4; the last ReLU and pool are never needed
    named = ("conv1_2", "conv2_2", "conv3_4", "conv4_4", "conv5_4")
    assert [VGG19_LAYERS[n] for n in named] == list(REALBASICVSR_LAYERS)
    assert sorted(VGG19_LAYERS.values()) == sorted(TORCHVISION_CONVS)


def test_perceptual_loss_matches_a_plain_vgg_with_the_same_weights(vgg_file):
    """RealBasicVSR's defaults: conv1_2 .. conv5_4 before ReLU, weights 0.1/0.1/1/1/1, ImageNet normalisation,
    L1; frames (n, t, 3, h, w) judged one by one. Within 1e-5 (relative) of the functional VGG."""
    loss = Perceptual(str(vgg_file))
    torch.manual_seed(3)
    pred, target = torch.rand(2, 2, 3, 32, 32), torch.rand(2, 2, 3, 32, 32)
    state = vgg19_state()
    got_maps, want_maps = (plain_vgg_features(state, x.flatten(0, 1)) for x in (pred, target))
    expected = sum(w * (got_maps[i] - want_maps[i]).abs().mean() for i, w in REALBASICVSR_LAYERS.items())
    torch.testing.assert_close(loss(pred, target), expected, rtol=1e-5, atol=0)
    chosen = Perceptual(str(vgg_file), layers=["conv3_4"], layer_weights=[2.0])
    torch.testing.assert_close(chosen(pred, target), 2 * (got_maps[16] - want_maps[16]).abs().mean(), rtol=1e-5, atol=0)
    assert len(chosen.features) == 17  # the network stops at the last layer compared


def test_perceptual_loss_gives_gradients_to_the_prediction_only(tiny_vgg_file):
    """The prediction gets a gradient; the target and the frozen VGG19 none. The network is a submodule of the
    losses, so it moves (device, dtype) with them."""
    entry = {"name": "perceptual", "weights": str(tiny_vgg_file), "layers": ["conv1_2", "conv2_2"]}
    losses = build_losses([{**entry, "layer_weights": [0.1, 0.1]}])
    pred = torch.rand(1, 2, 3, 16, 16, requires_grad=True)
    target = torch.rand(1, 2, 3, 16, 16, requires_grad=True)
    total, terms = losses(pred, target)
    total.backward()
    assert set(terms) == {"perceptual"}
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert target.grad is None
    params = list(losses.parameters())
    assert len(params) == 8 and not any(p.requires_grad or p.grad is not None for p in params)
    assert losses.to(torch.float64).terms["perceptual"].features[0].weight.dtype == torch.float64


def test_perceptual_weights_load_from_safetensors_alike(vgg_file, tmp_path):
    path = tmp_path / "vgg19.safetensors"
    save_file(vgg19_state(last=7), str(path))
    pred, target = torch.rand(1, 1, 3, 16, 16), torch.rand(1, 1, 3, 16, 16)
    args = {"layers": ["conv1_2", "conv2_2"], "layer_weights": [0.1, 0.1]}
    assert torch.equal(Perceptual(str(path), **args)(pred, target), Perceptual(str(vgg_file), **args)(pred, target))


def test_perceptual_weights_missing_or_wrong_fail_with_one_clear_message(tmp_path, tiny_vgg_file):
    def build(weights, **args):
        return build_losses(["l1", {"name": "perceptual", "weights": str(weights), **args}])

    with pytest.raises(RecipeError, match=r"train.losses\[0\]' = \{'name': 'perceptual'\}: loss 'perceptual' needs "
                       r"weights"):  # fmt: skip
        build_losses([{"name": "perceptual"}])
    with pytest.raises(RecipeError, match=r"train.losses\[1\].*the VGG19 weights file .*nowhere.pth does not exist: "
                       r"name a VGG19 state dict in torchvision's layout .*vsr downloads nothing"):  # fmt: skip
        build(tmp_path / "nowhere.pth")
    with pytest.raises(RecipeError, match=r"is not VGG19 weights: it lacks features.10.weight"):
        build(tiny_vgg_file)  # the default layers reach conv5_4
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 5, 5), "features.0.bias": torch.zeros(64)}, wrong)
    with pytest.raises(RecipeError, match=r"it has features.0.weight \(64, 3, 5, 5\) \(expected \(64, 3, 3, 3\)\)"):
        build(wrong, layers=["conv1_1"], layer_weights=[1.0])
    torch.save([1, 2], wrong)
    with pytest.raises(RecipeError, match=r"holds a list, not a state dict"):
        build(wrong)
    torch.save({"features.0.weight": Path("x")}, wrong)  # a pickle of more than tensors: weights_only refuses it
    with pytest.raises(RecipeError, match=r"cannot read VGG19 weights from .*wrong.pth \(UnpicklingError"):
        build(wrong)
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(RecipeError, match=r"cannot read VGG19 weights"):
        build(tmp_path / "text.pth")
    with pytest.raises(RecipeError, match=r"layers and layer_weights pair up one by one"):
        build(tiny_vgg_file, layers=["conv1_2", "conv2_2"], layer_weights=[1.0])
    with pytest.raises(RecipeError, match=r"train.losses\[1\].layers' = \['relu1_2'\]: must be a list"):
        build(tiny_vgg_file, layers=["relu1_2"], layer_weights=[1.0])


def test_gan_loss_is_binary_cross_entropy_with_labels_one_and_zero():
    logits = torch.randn(2, 1, 8, 8, dtype=torch.bfloat16)
    p = torch.sigmoid(logits.double())
    assert gan_loss(logits, real=True).dtype == torch.float32
    torch.testing.assert_close(gan_loss(logits, real=True).double(), -torch.log(p).mean(), rtol=1e-5, atol=0)
    torch.testing.assert_close(gan_loss(logits, real=False).double(), -torch.log(1 - p).mean(), rtol=1e-5, atol=0)


# -------------------------------------------------------------------------------------------- objective
CLEANING_MODEL = {**TINY_MODEL, "cleaning": {"name": "residual", "num_blocks": 1}}


def gan_recipe(vgg: Path, model: dict = CLEANING_MODEL, **train_keys) -> dict:
    return {
        "name": "realbasicvsr_tiny",
        "model": model,
        "data": TINY_DATA,
        "train": {
            "objective": {"name": "realbasicvsr_gan", "discriminator_channels": 8},
            "losses": [
                {"name": "l1", "weight": 1.0},
                {
                    "name": "perceptual",
                    "weight": 1.0,
                    "weights": str(vgg),
                    "layers": ["conv1_2", "conv2_2"],
                    "layer_weights": [0.1, 0.1],
                },
            ],
            "lr": 5e-5,
            "scheduler": "constant",
            "fix_iterations": 0,
            **train_keys,
        },
    }


def one_step(recipe: dict, batch: dict) -> tuple[RealBasicVSRGAN, torch.nn.Module, dict, dict]:
    """The objective's step on ``batch`` from fresh weights (CPU, no autocast); the model and discriminator as
    they were before it, and the step's scalars."""
    loaded = load_recipe(recipe)
    objective = build_entry("objective", "train.objective", loaded.train["objective"], recipe=loaded,
                            device=torch.device("cpu"))  # fmt: skip
    model = objective.build_model()
    parts = objective.training_parts(model)
    before = {"model": copy.deepcopy(model), DISCRIMINATOR: copy.deepcopy(parts.modules[DISCRIMINATOR])}
    scalers = {name: torch.amp.GradScaler("cpu", enabled=False) for name in parts.optimizers}
    run = StepContext(model, parts.modules, parts.optimizers, parts.schedulers, scalers, "cpu", None, None,
                      lambda name, loss: None)  # fmt: skip
    return objective, before, parts.modules, objective.step(batch, run)


def test_the_objectives_terms_are_realbasicvsrs(tiny_vgg_file):
    """Generator: l1 and perceptual against the unsharp-masked GT, the cleaning L1 between the cleaned LQ and the
    sharpened GT area-downsampled ×¼, 0.05 × the GAN loss of its output labelled real. Discriminator: the plain
    GT labelled real plus the detached output labelled fake, in one forward (one power iteration)."""
    torch.manual_seed(5)
    batch = {"lq": torch.rand(2, 3, 3, 8, 8), "gt": torch.rand(2, 3, 3, 32, 32)}
    objective, before, _, scalars = one_step(gan_recipe(tiny_vgg_file), batch)
    assert set(scalars) == {"loss", "l1", "perceptual", "cleaning", "adversarial", DISCRIMINATOR}
    sharp = unsharp_mask(batch["gt"])
    assert not torch.equal(sharp, batch["gt"])
    with torch.no_grad():
        output, cleaned = before["model"](batch["lq"], return_cleaned=True)
        d = before[DISCRIMINATOR]
        adversarial = gan_loss(d(output.flatten(0, 1)), real=True)
        real, fake = d(torch.cat([batch["gt"].flatten(0, 1), output.flatten(0, 1)])).chunk(2)
    expected = {
        "l1": (output - sharp).abs().mean(),
        "perceptual": objective.losses.terms["perceptual"](output, sharp),
        "cleaning": (cleaned - F.avg_pool2d(sharp.flatten(0, 1), 4).unflatten(0, (2, 3))).abs().mean(),
        "adversarial": adversarial,
        DISCRIMINATOR: gan_loss(real, real=True) + gan_loss(fake, real=False),
    }
    expected["loss"] = expected["l1"] + expected["perceptual"] + expected["cleaning"] + 0.05 * adversarial
    for name, value in expected.items():
        torch.testing.assert_close(scalars[name], value, rtol=1e-5, atol=1e-7, msg=name)


def test_without_a_cleaning_module_the_cleaning_term_is_off(tiny_vgg_file):
    batch = {"lq": torch.rand(1, 2, 3, 8, 8), "gt": torch.rand(1, 2, 3, 32, 32)}
    objective, _, modules, scalars = one_step(gan_recipe(tiny_vgg_file, TINY_MODEL), batch)
    assert "cleaning" not in scalars and not objective.cleans
    assert set(modules) == {DISCRIMINATOR}


def test_the_objectives_arguments_are_checked(tiny_vgg_file):
    recipe = gan_recipe(tiny_vgg_file)
    recipe["train"]["objective"] = {"name": "realbasicvsr_gan", "adversarial_weight": -1}
    with pytest.raises(RecipeError, match=r"train.objective.adversarial_weight' = -1: must be a number >= 0"):
        load_recipe(recipe)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return tiny_synth(tmp_path_factory.mktemp("synth") / "set")


def test_the_gan_stage_trains_and_resumes_bit_exactly(data_root, tiny_vgg_file, tmp_path, monkeypatch):
    """Three iterations of a tiny BasicVSR with a cleaning module; a run stopped by Ctrl-C inside its third step
    resumes from iteration 2 and ends with the same weights, discriminator and both optimisers' moments."""
    recipe = gan_recipe(tiny_vgg_file, iterations=3, periods=[3], log_every=1, val_every=3, checkpoint_every=2)
    full = train(recipe, tmp_path / "full", data=data_root, progress=False)
    assert full.iterations == 3
    a = read_checkpoint(tmp_path / "full" / "checkpoints" / "latest.pth")
    assert set(a["optimizers"]) == {MAIN, DISCRIMINATOR} == set(a["schedulers"]) and set(a["modules"]) == {
        DISCRIMINATOR
    }
    assert a["objective"] == "realbasicvsr_gan"
    assert a["optimizers"][DISCRIMINATOR]["param_groups"][0]["lr"] == 1e-4
    assert a["optimizers"][DISCRIMINATOR]["param_groups"][0]["betas"] == (0.9, 0.99)
    assert a["optimizers"][MAIN]["param_groups"][0]["lr"] == 5e-5
    logged = [json.loads(line) for line in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    terms = {"loss", "l1", "perceptual", "cleaning", "adversarial", DISCRIMINATOR}
    assert [terms <= set(e) for e in logged if e.get("event") == "train"] == [True] * 3

    with monkeypatch.context() as mp, pytest.raises(KeyboardInterrupt):
        interrupt_step(mp, RealBasicVSRGAN, 3)
        train(recipe, tmp_path / "resumed", data=data_root, progress=False)
    assert read_checkpoint(tmp_path / "resumed" / "checkpoints" / "latest.pth")["iteration"] == 2
    resumed = train(recipe, tmp_path / "resumed", data=data_root, resume=True, progress=False)
    assert resumed.iterations == 3

    b = read_checkpoint(tmp_path / "resumed" / "checkpoints" / "latest.pth")
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for key, value in a["modules"][DISCRIMINATOR].items():
        assert torch.equal(value, b["modules"][DISCRIMINATOR][key]), key
    for name in (MAIN, DISCRIMINATOR):
        moments_a, moments_b = a["optimizers"][name]["state"], b["optimizers"][name]["state"]
        assert moments_a.keys() == moments_b.keys() and moments_a
        for index, moments in moments_a.items():
            for key, value in moments.items():
                assert torch.equal(value, moments_b[index][key]), (name, index, key)
    assert full.metrics == resumed.metrics


def _ddp_worker(rank: int, port: int, recipe: dict, data_root: str, out: str) -> None:
    as_torchrun_rank(rank, port)
    trainer = Trainer(load_recipe(recipe), Path(out), data_root, False, "cpu", False)
    trainer.run()
    state = trainer.state
    held = {"model": trainer.model, DISCRIMINATOR: state.modules[DISCRIMINATOR], "ema": state.ema.module}
    torch.save({name: module.state_dict() for name, module in held.items()}, Path(out).parent / f"rank{rank}.pt")
    leave_without_teardown()


def test_the_gan_stage_runs_under_ddp(data_root, tiny_vgg_file, tmp_path):
    """Two gloo ranks of batch 1 (as ``torchrun --nproc-per-node 2`` starts them) train the generator and the
    U-Net discriminator with spectral norm for two steps, SPyNet frozen for the first and thawed for the second
    (the generator re-wrapped): both ranks end with the same generator, discriminator (its spectral norm's
    power-iteration vectors too) and moving average, both moved, and ``latest.pth`` holds both optimisers'
    moments."""
    recipe = gan_recipe(tiny_vgg_file, iterations=2, periods=[2], fix_iterations=1, ema=0.999, val_every=0)
    recipe["data"] = {**TINY_DATA, "batch_size": 1}
    out = tmp_path / "ddp" / "run"
    spawn_two_ranks(_ddp_worker, recipe, str(data_root), str(out))
    rank0, rank1 = (torch.load(tmp_path / "ddp" / f"rank{r}.pt") for r in range(2))
    for part in ("model", DISCRIMINATOR, "ema"):
        assert rank0[part].keys() == rank1[part].keys()
        for key, value in rank0[part].items():
            assert torch.equal(value, rank1[part][key]), (part, key)
    assert any(k.endswith("weight_u") for k in rank0[DISCRIMINATOR])

    state = read_checkpoint(out / "checkpoints" / "latest.pth")
    assert state["iteration"] == 2 and set(state["optimizers"]) == {MAIN, DISCRIMINATOR}
    for name in (MAIN, DISCRIMINATOR):
        saved = state["optimizers"][name]
        parameters = [i for group in saved["param_groups"] for i in group["params"]]
        moments = saved["state"]
        assert sorted(moments) == sorted(parameters), name  # every parameter was stepped
        assert max(float(m["step"]) for m in moments.values()) == 2, name
        assert any(m["exp_avg"].abs().sum() > 0 for m in moments.values()), name
    for key, value in state["modules"][DISCRIMINATOR].items():
        assert torch.equal(value, rank0[DISCRIMINATOR][key]), key
    last = "upsampling.conv_last.weight"
    assert not torch.equal(state["params_ema"][last], state["model"][last])  # the average moved behind the model
    assert json.loads((out / "result.json").read_text())["world_size"] == 2

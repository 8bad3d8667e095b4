"""``train.init`` starts the model and its moving average as RealBasicVSR's second stage does (notes §3.2, MMagic's
``load_from``): from a checkpoint holding the trained weights and their average apart (vsr's ``model`` and
``params_ema``, an MMagic restorer's ``generator.`` and ``generator_ema.``, BasicSR's ``params`` and
``params_ema``), the model starts from the trained weights and the average (``train.ema``) from the average,
both exactly and both restricted to ``train.init_prefixes``. Without ``train.ema`` the model starts from the
trained weights alike; a file of one set starts the model and the average as a copy of it; a resumed run never
reads ``train.init``."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from tiny import TINY_DATA, TINY_MODEL, interrupt_step, tiny_synth

from vsr.checkpoints import (
    detect_naming,
    extract_state_dict,
    read_checkpoint,
    save_checkpoint,
    to_basicsr_names,
    weights_and_average,
)
from vsr.model import build_model
from vsr.recipe import load_recipe
from vsr.training import Trainer, train
from vsr.training.gan import RealBasicVSRGAN

CLEANING_MODEL = {**TINY_MODEL, "cleaning": {"name": "residual", "num_blocks": 1}}


def stage2(init: Path | None, **train_keys) -> dict:
    """A tiny RealBasicVSR second stage (the GAN objective, L1 alone, EMA 0.999, SPyNet frozen) from ``init``."""
    iterations = train_keys.pop("iterations", 1)
    return {
        "name": "realbasicvsr_tiny",
        "model": CLEANING_MODEL,
        "data": TINY_DATA,
        "train": {
            "objective": {"name": "realbasicvsr_gan", "discriminator_channels": 8},
            "losses": [{"name": "l1", "weight": 1.0}],
            "lr": 5e-5,
            "scheduler": "constant",
            "iterations": iterations,
            "periods": [iterations],
            "fix_iterations": iterations,
            "ema": 0.999,
            "init": None if init is None else str(init),
            "val_every": 0,
            **train_keys,
        },
    }


def weights(seed: int) -> dict[str, torch.Tensor]:
    """The tiny stage's network initialised with ``seed``, every parameter moved by a little noise (so that
    none is zero, as initialised biases are, and any two sets differ in every parameter)."""
    torch.manual_seed(seed)
    model = build_model(stage2(None))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    return {k: v.clone() for k, v in model.state_dict().items()}


def parameter_names() -> set[str]:
    return {name for name, _ in build_model(stage2(None)).named_parameters()}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return tiny_synth(tmp_path_factory.mktemp("synth") / "set")


@pytest.fixture(scope="module")
def trained_and_average() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Two distinct sets of weights: the first stage's trained weights and their moving average."""
    trained, average = weights(1), weights(2)
    assert all(not torch.equal(trained[k], average[k]) for k in parameter_names())
    return trained, average


# ------------------------------------------------------------------------------------ the files' formats
def basicsr_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """RealBasicVSR in BasicSR's names (notes §1.7: RealViformer's port): ``image_cleaning.*`` and
    ``basicvsr.<BasicSR's BasicVSR names>``."""
    cleaning = {
        re.sub(r"^cleaning\.trunk\.input_conv\.", "image_cleaning.0.main.0.", k)
        .replace("cleaning.trunk.blocks.", "image_cleaning.0.main.2.")
        .replace("cleaning.output_conv.", "image_cleaning.1."): v
        for k, v in state.items()
        if k.startswith("cleaning.")
    }
    rest = to_basicsr_names({k: v for k, v in state.items() if not k.startswith("cleaning.")})
    return cleaning | {f"basicvsr.{k}": v for k, v in rest.items()}


def mmagic_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """RealBasicVSR in MMagic's ``RealBasicVSRNet`` names (notes §1.7): BasicSR's names with MMagic's spellings
    (the inverse of :data:`vsr.checkpoints.MMAGIC_TO_BASICSR` for a BasicVSR)."""
    out = {}
    for key, value in basicsr_names(state).items():
        key = re.sub(
            r"^basicvsr\.spynet\.basic_module\.(\d+)\.basic_module\.(\d+)\.",
            lambda m: f"basicvsr.spynet.basic_module.{m[1]}.basic_module.{int(m[2]) // 2}.conv.",
            key,
        )
        key = re.sub(r"^basicvsr\.(backward|forward)_trunk\.", r"basicvsr.\1_resblocks.", key)
        out[re.sub(r"^basicvsr\.upconv(\d)\.", r"basicvsr.upsample\1.upsample_conv.", key)] = value
    return out


def write_init(form: str, path: Path, trained: dict, average: dict | None) -> Path:
    """A first-stage checkpoint of ``form`` holding ``trained`` and, unless None, ``average``."""
    if form == "vsr":
        model = build_model(stage2(None))
        model.load_state_dict(trained)
        extra = {} if average is None else {"params_ema": average}
        return save_checkpoint(model, path, stage2(None), **extra)
    if form == "mmagic":
        state = {f"generator.{k}": v for k, v in mmagic_names(trained).items()}
        if average is not None:
            state |= {f"generator_ema.{k}": v for k, v in mmagic_names(average).items()}
        state |= {"discriminator.conv_0.weight": torch.zeros(8, 3, 3, 3), "step_counter": torch.zeros(1)}
        torch.save({"meta": {"iter": 300000}, "state_dict": state}, path)
    elif form == "basicsr":
        saved = {"params": basicsr_names(trained)}
        if average is not None:
            saved["params_ema"] = basicsr_names(average)
        torch.save(saved, path)
    else:
        save_file({k: v.contiguous() for k, v in trained.items()}, str(path))
    return path


def set_up(recipe: dict, out: Path, data_root: Path) -> Trainer:
    """The trainer of ``recipe`` after its set-up (nothing trained)."""
    return Trainer(load_recipe(recipe), out, data_root, False, "cpu", False)


def assert_weights(module: torch.nn.Module, expected: dict[str, torch.Tensor], keys=None) -> None:
    state = module.state_dict()
    for key in keys if keys is not None else expected:
        assert torch.equal(state[key], expected[key]), key


def assert_weights_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# --------------------------------------------------------------------------------------------- the tests
@pytest.mark.parametrize("form", ["vsr", "mmagic", "basicsr"])
def test_the_model_starts_from_the_trained_weights_and_the_average_from_the_average(
    form, trained_and_average, data_root, tmp_path, caplog
):
    """Each format that holds both: after the trainer's set-up the model holds the trained weights and the
    moving average the file's average, every tensor exactly; the log says which went where."""
    trained, average = trained_and_average
    path = write_init(form, tmp_path / f"{form}.pth", trained, average)
    file = read_checkpoint(path)
    assert weights_and_average(file) is not None
    for key, written in (("params", trained), ("params_ema", average)):  # the file reads back as written
        assert_weights_equal(extract_state_dict(file, key), written)
    if form == "mmagic":
        basicvsr = [k.removeprefix("generator.basicvsr.") for k in file["state_dict"] if ".basicvsr." in k]
        assert detect_naming(basicvsr) == "mmagic"
    with caplog.at_level(logging.INFO, logger="vsr.training.pretrained"):
        trainer = set_up(stage2(path), tmp_path / "run", data_root)
    assert_weights(trainer.model, trained)
    assert_weights(trainer.state.ema.module, average)
    held = {"vsr": ("model", "params_ema"), "mmagic": ("generator.", "generator_ema."),
            "basicsr": ("params", "params_ema")}[form]  # fmt: skip
    said = f"model starts from the trained weights of {path} ({held[0]}) and the moving average from its average "
    assert said + f"({held[1]}); all weights" in caplog.text


def test_init_prefixes_restrict_the_model_and_the_average_alike(trained_and_average, data_root, tmp_path):
    """With ``init_prefixes: [cleaning.]`` only the cleaning module comes from the file (trained weights into the
    model, the average into the average); every other weight is the run's own initialisation in both."""
    trained, average = trained_and_average
    path = write_init("vsr", tmp_path / "stage1.pth", trained, average)
    fresh = set_up(stage2(None), tmp_path / "fresh", data_root).model.state_dict()
    trainer = set_up(stage2(path, init_prefixes=["cleaning."]), tmp_path / "run", data_root)
    cleaning = [k for k in trained if k.startswith("cleaning.")]
    others = [k for k in trained if not k.startswith("cleaning.")]
    assert cleaning and others
    assert_weights(trainer.model, trained, cleaning)
    assert_weights(trainer.state.ema.module, average, cleaning)
    assert_weights(trainer.model, fresh, others)
    assert_weights(trainer.state.ema.module, fresh, others)


def test_without_ema_the_model_starts_from_the_trained_weights(trained_and_average, data_root, tmp_path, caplog):
    """A run without ``train.ema`` starts its model from the trained weights (the reference's generator), not the
    average, whatever the format; a warning says that the file's average is not used."""
    trained, average = trained_and_average
    for form in ("vsr", "mmagic"):
        path = write_init(form, tmp_path / f"{form}.pth", trained, average)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="vsr.training.pretrained"):
            trainer = set_up(stage2(path, ema=None), tmp_path / form, data_root)
        assert trainer.state.ema is None
        assert_weights(trainer.model, trained)
        assert "is not used, since train.ema is off" in caplog.text


@pytest.mark.parametrize("form", ["safetensors", "basicsr", "vsr", "mmagic"])
def test_a_file_of_one_set_starts_the_model_and_the_average_copies_it(
    form, trained_and_average, data_root, tmp_path, caplog
):
    """safetensors, BasicSR's ``params`` alone, a vsr run without EMA, an MMagic file without ``generator_ema.``:
    the model starts from the file's weights and the average is a copy of the model, as before."""
    trained, _ = trained_and_average
    path = write_init(form, tmp_path / ("one.safetensors" if form == "safetensors" else "one.pth"), trained, None)
    assert weights_and_average(read_checkpoint(path)) is None
    with caplog.at_level(logging.INFO, logger="vsr.training.pretrained"):
        trainer = set_up(stage2(path), tmp_path / "run", data_root)
    assert_weights(trainer.model, trained)
    assert_weights(trainer.state.ema.module, trained)
    assert "the moving average starts as a copy of the model" in caplog.text


def test_one_iteration_moves_the_average_from_the_files_average(trained_and_average, data_root, tmp_path):
    """After one training step the average is ``lerp(file's average, model after the step, 1 − 0.999)`` exactly
    for every parameter (buffers copied from the model): it continued from the file's average."""
    trained, average = trained_and_average
    path = write_init("vsr", tmp_path / "stage1.pth", trained, average)
    result = train(stage2(path), tmp_path / "run", data=data_root, progress=False)
    saved = read_checkpoint(result.out_dir / "checkpoints" / "latest.pth")
    parameters = parameter_names()
    assert not torch.equal(saved["model"]["cleaning.output_conv.weight"], trained["cleaning.output_conv.weight"])
    for key, value in saved["params_ema"].items():
        model = saved["model"][key]
        expected = torch.lerp(average[key], model, 1 - 0.999) if key in parameters else model
        assert torch.equal(value, expected), key


def test_a_resumed_run_never_reads_train_init(trained_and_average, data_root, tmp_path, monkeypatch):
    """A run stopped after its first checkpoint resumes bit-exactly although its ``train.init`` file is gone
    since: the model and the average come from ``latest.pth``."""
    trained, average = trained_and_average
    path = write_init("vsr", tmp_path / "stage1.pth", trained, average)
    recipe = stage2(path, iterations=2, checkpoint_every=1)
    full = read_checkpoint(train(recipe, tmp_path / "full", data=data_root, progress=False).checkpoint)
    with monkeypatch.context() as mp, pytest.raises(KeyboardInterrupt):
        interrupt_step(mp, RealBasicVSRGAN, 2)
        train(recipe, tmp_path / "resumed", data=data_root, progress=False)
    path.unlink()  # reading it would fail
    resumed = train(recipe, tmp_path / "resumed", data=data_root, resume=True, progress=False)
    resumed = read_checkpoint(resumed.checkpoint)
    assert resumed["iteration"] == full["iteration"] == 2
    for part in ("model", "params_ema"):
        assert_weights_equal(resumed[part], full[part])

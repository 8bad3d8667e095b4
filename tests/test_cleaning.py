"""RealBasicVSR: the cleaning kind, dynamic refinement, and MMagic's published checkpoints.

Reference for the equivalence tests: BasicSR 1.4.2 (PyPI sdist) ``basicsr/archs/basicvsr_arch.py`` BasicVSR,
behind the cleaning module and refinement loop of MMagic's ``RealBasicVSRNet`` written here in plain torch from
its definition (reference notes §1.2, §1.4); tolerance max abs diff <= 1e-5. The weights are random, in MMagic's
key names and shapes (notes §1.7).
"""

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vsr import CheckpointError, RecipeError, build_model
from vsr.checkpoints import extract_state_dict, load_checkpoint, load_state_dict, save_basicsr_checkpoint
from vsr.components.cleaning import refinement_overrides
from vsr.zoo import ZOO

DATA = Path(__file__).parent / "data"
TOLERANCE = 1e-5
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # SPyNet's ImageNet normalisation buffers


# ----------------------------------------------------------------------------- MMagic's RealBasicVSRNet keys
def mmagic_realbasicvsr_state(mid: int = 64, blocks: int = 20, cleaning_blocks: int = 20, seed: int = 0):
    """A random generator state dict of MMagic's ``RealBasicVSRNet`` (notes §1.7): ``image_cleaning.{0,1}.*``
    and ``basicvsr.<BasicVSRNet keys>`` with the block index running to ``blocks``. Scaled so that activations
    stay of order one through the 20-block trunks (plain ``randn`` overflows)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for line in (DATA / "keys_basicvsr_net.tsv").read_text().splitlines():
        key, _, shape = line.split("\t")
        block = re.search(r"_resblocks\.main\.2\.(\d+)\.", key)
        if block and int(block[1]) >= blocks:
            continue
        dims = tuple(int(s) for s in re.findall(r"\d+", shape))
        if key.startswith("upsample2."):  # its input is mid; it and conv_hr, conv_last are 64 wide at any mid
            dims = (dims[0], mid, *dims[2:]) if len(dims) > 1 else dims
        elif not key.startswith(("spynet.", "conv_hr.", "conv_last.")):  # 64 -> mid (trunk inputs 3 + 64)
            dims = tuple({64: mid, 67: mid + 3, 128: 2 * mid, 256: 4 * mid}.get(d, d) for d in dims)
        shapes[f"basicvsr.{key}"] = dims
    shapes["image_cleaning.0.main.0.weight"], shapes["image_cleaning.0.main.0.bias"] = (mid, 3, 3, 3), (mid,)
    for i in range(cleaning_blocks):
        for conv in ("conv1", "conv2"):
            shapes[f"image_cleaning.0.main.2.{i}.{conv}.weight"] = (mid, mid, 3, 3)
            shapes[f"image_cleaning.0.main.2.{i}.{conv}.bias"] = (mid,)
    shapes["image_cleaning.1.weight"], shapes["image_cleaning.1.bias"] = (3, mid, 3, 3), (3,)

    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("spynet.mean"):
            state[key] = torch.tensor(MEAN).view(1, 3, 1, 1)
        elif key.endswith("spynet.std"):
            state[key] = torch.tensor(STD).view(1, 3, 1, 1)
        elif key.endswith("weight"):
            gain = 0.2 if re.search(r"main\.2\.\d+\.conv", key) else 1.0  # residual blocks start near identity
            state[key] = torch.randn(shape, generator=generator) * gain / (shape[1] * shape[2] * shape[3]) ** 0.5
        else:
            state[key] = torch.randn(shape, generator=generator) * 0.01
    return state


def mmagic_restorer_file(path, generator, ema=None, gan_stage=True):
    """An MMagic restorer checkpoint: ``generator.``, ``generator_ema.`` and the GAN stage's other weights."""
    state = {f"generator.{k}": v for k, v in generator.items()}
    if ema is not None:
        state |= {f"generator_ema.{k}": v for k, v in ema.items()}
    if gan_stage:
        state["discriminator.conv_0.weight"] = torch.randn(64, 3, 3, 3)
        state["discriminator.conv_1.weight_orig"] = torch.randn(128, 64, 4, 4)
        state["perceptual_loss.vgg.vgg_layers.0.weight"] = torch.randn(64, 3, 3, 3)
        state["perceptual_loss.vgg.mean"] = torch.zeros(1, 3, 1, 1)
    state["step_counter"] = torch.zeros(1)
    torch.save({"meta": {"iter": 150000}, "state_dict": state}, path)
    return path


# ----------------------------------------------------------------------------- the independent reference
def mmagic_to_basicsr(state):
    """BasicSR's BasicVSR names for MMagic's ``basicvsr.*`` weights (written from the notes' key table)."""
    out = {}
    for key, value in state.items():
        if not key.startswith("basicvsr."):
            continue
        key = key.removeprefix("basicvsr.")
        key = re.sub(
            r"^spynet\.basic_module\.(\d+)\.basic_module\.(\d+)\.conv\.",
            lambda m: f"spynet.basic_module.{m[1]}.basic_module.{2 * int(m[2])}.",
            key,
        )
        key = key.replace("_resblocks.", "_trunk.")
        key = re.sub(r"^upsample(\d)\.upsample_conv\.", r"upconv\1.", key)
        out[key] = value
    return out


def cleaning_reference(frames, w, blocks):
    """MMagic's image_cleaning: conv 3->c, LeakyReLU(0.1), ``blocks`` × (x + conv2(relu(conv1(x)))), conv c->3."""
    x = F.leaky_relu(
        F.conv2d(frames, w["image_cleaning.0.main.0.weight"], w["image_cleaning.0.main.0.bias"], padding=1), 0.1
    )
    for i in range(blocks):
        p = f"image_cleaning.0.main.2.{i}."
        inner = F.relu(F.conv2d(x, w[p + "conv1.weight"], w[p + "conv1.bias"], padding=1))
        x = x + F.conv2d(inner, w[p + "conv2.weight"], w[p + "conv2.bias"], padding=1)
    return F.conv2d(x, w["image_cleaning.1.weight"], w["image_cleaning.1.bias"], padding=1)


def realbasicvsr_reference(lqs, w, basicvsr, threshold, blocks, max_passes=3):
    """``(sr, cleaned, passes, mean |residue| of each pass)``: up to 3 cleaning passes over the (n·t) frames,
    stopping once a pass's mean |residue| over the whole tensor is below threshold/255; then BasicVSR."""
    n, t, c, h, wd = lqs.shape
    means = []
    for _ in range(max_passes):
        flat = lqs.reshape(n * t, c, h, wd)
        residues = cleaning_reference(flat, w, blocks)
        lqs = (flat + residues).view(n, t, c, h, wd)
        means.append(torch.mean(torch.abs(residues)).item())
        if torch.mean(torch.abs(residues)) < threshold / 255.0:
            break
    return basicvsr(lqs), lqs, len(means), means


@pytest.fixture(scope="module")
def published_shapes():
    """The published architecture (c64b20, cleaning 20 blocks) in MMagic's names, with the BasicSR reference."""
    return mmagic_realbasicvsr_state()


@torch.no_grad()
def test_published_realbasicvsr_matches_basicsr_plus_mmagic_cleaning(basicsr_archs, published_shapes):
    """RealBasicVSR with MMagic-format random weights of the published shapes equals BasicSR 1.4.2's BasicVSR
    behind MMagic's cleaning loop (max abs diff <= 1e-5), at threshold 0 (all 3 passes) and at a threshold
    just above the first pass's mean |residue| (1 pass), the SR output and the cleaned LQ alike."""
    w = published_shapes
    reference = basicsr_archs.BasicVSR(num_feat=64, num_block=20).eval()
    reference.load_state_dict(mmagic_to_basicsr(w))
    lqs = torch.rand(1, 2, 3, 64, 64, generator=torch.Generator().manual_seed(1))  # SPyNet: h, w >= 64
    sr3, cleaned3, passes3, means = realbasicvsr_reference(lqs, w, reference, threshold=0.0, blocks=20)
    assert passes3 == 3 and min(means) > 0
    one_pass = 255.0 * means[0] * 1.01
    sr1, cleaned1, passes1, _ = realbasicvsr_reference(lqs, w, reference, threshold=one_pass, blocks=20)
    assert passes1 == 1

    ours = build_model("realbasicvsr").eval()
    load_state_dict(ours, extract_state_dict({"state_dict": {f"generator.{k}": v for k, v in w.items()}}))
    for threshold, passes, sr, cleaned in [(0.0, 3, sr3, cleaned3), (one_pass, 1, sr1, cleaned1)]:
        ours.cleaning.refine_threshold = threshold
        out, ours_cleaned = ours(lqs, return_cleaned=True)
        assert ours.cleaning.passes_run == passes
        assert (ours_cleaned - cleaned).abs().max() <= TOLERANCE
        assert (out - sr).abs().max() <= TOLERANCE, f"{passes} passes"


@torch.no_grad()
def test_refinement_stops_at_the_first_pass_below_the_threshold(basicsr_archs):
    """Any threshold in 0–255 units: the passes run are those of the reference loop (here at 16 channels)."""
    w = mmagic_realbasicvsr_state(mid=16, blocks=2, cleaning_blocks=2, seed=3)
    reference = basicsr_archs.BasicVSR(num_feat=16, num_block=2).eval()
    reference.load_state_dict(mmagic_to_basicsr(w))
    ours = build_model(
        "realbasicvsr", "model.channels=16", "model.aggregation.num_blocks=2", "model.cleaning.num_blocks=2"
    ).eval()
    load_state_dict(ours, extract_state_dict({"state_dict": {f"generator.{k}": v for k, v in w.items()}}))
    lqs = torch.rand(2, 2, 3, 64, 68, generator=torch.Generator().manual_seed(2))
    means = realbasicvsr_reference(lqs, w, reference, threshold=0.0, blocks=2)[3]
    for threshold in [255.0 * means[0] * 0.99, 255.0 * means[0] * 1.01, 255.0]:
        expected, _, passes, _ = realbasicvsr_reference(lqs, w, reference, threshold, blocks=2)
        ours.cleaning.refine_threshold = threshold
        assert (ours(lqs) - expected).abs().max() <= TOLERANCE
        assert ours.cleaning.passes_run == passes, threshold
    ours.cleaning.refine_threshold, ours.cleaning.max_passes = 0.0, 2
    expected = realbasicvsr_reference(lqs, w, reference, 0.0, blocks=2, max_passes=2)[0]
    assert (ours(lqs) - expected).abs().max() <= TOLERANCE and ours.cleaning.passes_run == 2


def test_cleaning_is_per_frame_and_trains_with_the_cleaned_frames_returned():
    """Changing one frame changes only its cleaned frame; the cleaned frames carry gradients to the cleaning
    module (for the cleaning loss); without a cleaning component the input is returned as the cleaned frames."""
    model = build_model("realbasicvsr_wogan_tiny")
    lrs = torch.rand(1, 4, 3, 16, 16)
    changed = lrs.clone()
    changed[:, 2] = torch.rand(3, 16, 16)
    with torch.no_grad():
        diff = (model(changed, return_cleaned=True)[1] - model(lrs, return_cleaned=True)[1]).abs()
    assert diff[0, 2].amax() > 0 and (diff[0, [0, 1, 3]] == 0).all()
    out, cleaned = model(lrs, return_cleaned=True)  # with autograd: every frame in one batch
    assert out.shape == (1, 4, 3, 64, 64) and cleaned.shape == lrs.shape
    (cleaned - lrs).abs().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.cleaning.parameters())
    plain = build_model("basicvsr_tiny")
    assert plain.cleaning is None and plain(lrs, return_cleaned=True)[1] is lrs


def test_without_data_the_passes_follow_the_threshold():
    """On the meta device (FLOP counting) the stopping test has no data: 255 runs one pass, lower all passes."""
    with torch.device("meta"):
        model = build_model("realbasicvsr_wogan_tiny")
        model(torch.empty(1, 3, 3, 16, 16))
        assert model.cleaning.passes_run == 1
        model.cleaning.refine_threshold = 1.5
        model(torch.empty(1, 3, 3, 16, 16))
        assert model.cleaning.passes_run == 3


# ----------------------------------------------------------------------------- recipe, counts, options
def test_parameter_counts_match_the_reference():
    """RealBasicVSR 6,294,834 = cleaning 1,480,643 + BasicVSR c64b20 4,814,191 (notes §1.6); the models without
    cleaning keep theirs."""
    model = build_model("realbasicvsr")
    counts = model.component_parameters()
    assert sum(p.numel() for p in model.parameters()) == 6_294_834
    assert counts["cleaning"] == 1_480_643
    assert sum(counts.values()) - counts["cleaning"] == 4_814_191
    assert sum(p.numel() for p in build_model("basicvsr").parameters()) == 6_291_311
    assert sum(p.numel() for p in build_model("iconvsr").parameters()) == 8_694_991
    assert "cleaning" not in build_model("basicvsr").component_parameters()


def test_refinement_is_set_by_the_recipe_and_by_overrides():
    model = build_model("realbasicvsr_wogan_tiny", *refinement_overrides(1.5, 2))
    assert (model.cleaning.refine_threshold, model.cleaning.max_passes) == (1.5, 2)
    assert build_model("realbasicvsr_wogan_tiny").cleaning.refine_threshold == 255
    with pytest.raises(RecipeError, match=r"model.cleaning.max_passes.*integer >= 1"):
        build_model("realbasicvsr_wogan_tiny", "model.cleaning.max_passes=0")
    with pytest.raises(RecipeError, match=r"model.cleaning.refine_threshold.*>= 0"):
        build_model("realbasicvsr_wogan_tiny", "model.cleaning.refine_threshold=-1")
    with pytest.raises(RecipeError, match=r"'none' takes no arguments"):
        build_model("basicvsr_tiny", *refinement_overrides(1.5))


def test_upscale_takes_the_refinement_options(tmp_path, monkeypatch):
    """``vsr upscale --refine-threshold --max-refine-passes`` reach the model's cleaning module; a model
    without one refuses them."""
    import numpy as np
    from typer.testing import CliRunner

    import vsr.checkpoints
    from vsr import save_checkpoint
    from vsr.cli import app
    from vsr.recipe import load_recipe
    from vsr.video import FrameReader, FrameWriter

    frames = tmp_path / "lr"
    with FrameWriter(frames, fps=24) as writer:
        for frame in np.random.default_rng(0).integers(0, 255, (3, 16, 20, 3), dtype=np.uint8):
            writer.write(frame)
    built = []
    load = vsr.checkpoints.pretrained_model
    monkeypatch.setattr(vsr.checkpoints, "pretrained_model", lambda *a: built.append(load(*a)) or built[-1])
    for recipe in ("realbasicvsr_wogan_tiny", "basicvsr_tiny"):
        saved = save_checkpoint(build_model(recipe), tmp_path / f"{recipe}.pth", load_recipe(recipe).to_dict())
        args = [saved, frames, "-o", tmp_path / recipe, "--refine-threshold", "1.5", "--max-refine-passes", "2"]
        result = CliRunner().invoke(app, ["upscale", *map(str, args), "--device", "cpu"])
        if recipe == "realbasicvsr_wogan_tiny":
            assert result.exit_code == 0, result.output
            assert (built[-1].cleaning.refine_threshold, built[-1].cleaning.max_passes) == (1.5, 2)
            assert len(list(FrameReader(tmp_path / recipe))) == 3
        else:
            assert result.exit_code == 2 and "'none' takes no arguments" in " ".join(result.output.split())


# ----------------------------------------------------------------------------- published checkpoints
def test_mmagic_restorer_file_loads_the_ema_generator(tmp_path, published_shapes):
    """Both published files are MMagic restorers: ``generator_ema.`` is loaded (``params`` asks for
    ``generator.``); the discriminator, the perceptual loss's VGG and ``step_counter`` are ignored."""
    ema = {k: v + 1 for k, v in published_shapes.items()}
    path = mmagic_restorer_file(tmp_path / "realbasicvsr.pth", published_shapes, ema)
    model = build_model("realbasicvsr")
    load_checkpoint(model, path)  # strict
    assert len(model.state_dict()) == len(published_shapes) == 320  # 318 parameters and SPyNet's 2 buffers
    assert torch.equal(model.cleaning.trunk.input_conv.weight, ema["image_cleaning.0.main.0.weight"])
    assert torch.equal(model.cleaning.trunk.blocks[19].conv2.bias, ema["image_cleaning.0.main.2.19.conv2.bias"])
    assert torch.equal(model.cleaning.output_conv.weight, ema["image_cleaning.1.weight"])
    assert torch.equal(model.upsampling.conv_last.weight, ema["basicvsr.conv_last.weight"])
    load_checkpoint(model, path, param_key="params")
    assert torch.equal(model.cleaning.output_conv.weight, published_shapes["image_cleaning.1.weight"])
    first_stage = mmagic_restorer_file(tmp_path / "wogan.pth", published_shapes, gan_stage=False)
    load_checkpoint(model, first_stage)  # no EMA in the file: the generator
    with pytest.raises(CheckpointError, match=r"no 'generator_ema\.'"):
        load_checkpoint(model, first_stage, param_key="params_ema")
    with pytest.raises(CheckpointError, match=r"no BasicSR name for cleaning\."):
        save_basicsr_checkpoint(path, tmp_path / "basicsr.pth")


def test_zoo_names_both_published_stages():
    gan, first = ZOO["realbasicvsr"], ZOO["realbasicvsr_wogan"]
    assert gan.url == (
        "https://download.openmmlab.com/mmediting/restorers/real_basicvsr/"
        "realbasicvsr_c64b20_1x30x8_lr5e-5_150k_reds_20211104-52f77c2c.pth"
    )
    assert first.url.endswith("/real_basicvsr/realbasicvsr_wogan_c64b20_2x30x8_lr1e-4_300k_reds_20211027-0e2ff207.pth")
    assert (gan.sha256_prefix, first.sha256_prefix) == ("52f77c2c", "0e2ff207")
    assert (gan.recipe, first.recipe) == ("realbasicvsr", "realbasicvsr_wogan")  # the same network

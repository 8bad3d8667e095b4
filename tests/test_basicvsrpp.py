"""BasicVSR++: second-order grid propagation and flow-guided deformable alignment.

Reference: BasicSR 1.4.2 (PyPI sdist) ``basicsr/archs/basicvsrpp_arch.py``; tolerance max abs diff <= 1e-4,
on random weights (the zero-initialised offset predictors included, so that offsets and masks go beyond
the flow). BasicSR builds no alignment where CUDA is unavailable at construction, and its mirror flag stays
set after the first mirror-extended clip: the harness builds it with CUDA reported available and clears the
flag before each call, and two tests show what the reference does otherwise. Its deformable convolution is
``torchvision.ops.deform_conv2d`` (vsr's pure-PyTorch one where torchvision is missing, see
``basicsr_reference``; the two are compared in ``test_edvr.py``).
"""

from __future__ import annotations

import json
import warnings
from unittest import mock

import pytest
import torch
from test_checkpoints import _basicsr_to_mmagic, mmagic_state_from_tsv
from test_zoo import server  # noqa: F401 (the fixture serving checkpoints from 127.0.0.1)
from tiny import TINY_MODEL, tiny_synth
from typer.testing import CliRunner

from vsr import build_model
from vsr.checkpoints import extract_state_dict, load_checkpoint, load_state_dict, pretrained_model
from vsr.cli import app
from vsr.profile import profile
from vsr.studies.schema import load_study
from vsr.training import train
from vsr.upscale import upscale_frames
from vsr.zoo import ZOO, ZooEntry

from basicsr_reference import ReferenceUnavailable, import_basicsr

TOLERANCE = 1e-4
# A narrow reference: 16 channels (its 16 deformable groups then read 2 channels each), 1 block per branch.
WIDTH, BLOCKS = 16, 1
# A BasicVSR++ for two cores: the recipe's structure with the test suite's tiny SPyNet and narrow everything.
TINY = (
    f"model.channels={TINY_MODEL['channels']}",
    f"model.flow={json.dumps(TINY_MODEL['flow'])}",
    "model.propagation={name: grid, order: 2, passes: 2, extract_blocks: 1, reconstruction_blocks: 1}",
    "model.alignment={name: flow_guided_deformable, groups_per_state: 4}",
    "model.aggregation.num_blocks=1",
    "model.upsampling.hr_channels=8",
)


@pytest.fixture(scope="module")
def basicsr_pp():
    try:
        return import_basicsr("basicsr.archs.basicvsrpp_arch")
    except ReferenceUnavailable as err:
        pytest.skip(f"BasicSR reference unavailable: {err}")


def reference_model(module, cuda: bool = True, **kwargs):
    """BasicSR's BasicVSRPlusPlus, built as on a machine with (``cuda``) or without CUDA, with random weights
    that make alignment matter: its default initialisation gives nearly constant sub-pixel flows, offsets
    equal to the flow (zero-initialised offset predictors) and an output that is almost the bilinear
    residual. Here the flows are several pixels and depend on the content, the offsets and masks differ from
    the flow's, and the network's own part of the output is about 0.1."""
    kwargs = {"mid_channels": WIDTH, "num_blocks": BLOCKS, **kwargs}
    with mock.patch.object(torch.cuda, "is_available", return_value=cuda), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Deformable alignment module is not added" without CUDA
        model = module.BasicVSRPlusPlus(**kwargs).eval()
    with torch.no_grad():
        for level in model.spynet.basic_module:
            level.basic_module[-1].weight.normal_(0, 1.0)
            level.basic_module[-1].bias.zero_()
        for align in model.deform_align.values():
            align.conv_offset[-1].weight.normal_(0, 0.02)
            align.conv_offset[-1].bias.normal_(0, 0.5)
        model.conv_last.weight.mul_(30)
    return model


@torch.no_grad()
def reference_output(reference, lrs):
    """The reference's output as a freshly built model gives it: its mirror flag cleared first."""
    reference.is_mirror_extended = False
    return reference(lrs)


def ours(*overrides):
    return build_model("basicvsrpp", f"model.channels={WIDTH}", f"model.aggregation.num_blocks={BLOCKS}", *overrides)


@pytest.fixture(scope="module")
def pair(basicsr_pp):
    """The reference and vsr's BasicVSR++ with the same weights, loaded from a BasicSR checkpoint."""
    torch.manual_seed(0)
    reference = reference_model(basicsr_pp)
    model = ours().eval()
    load_state_dict(model, extract_state_dict({"params": reference.state_dict()}))
    return reference, model


# ------------------------------------------------------------------------------------ exactness
@pytest.mark.parametrize("t", [1, 2, 3])
def test_short_clips_match_basicsr(pair, t):
    """1, 2, 3 frames: no alignment at all, first-order only, and the first step with a second-order state."""
    reference, model = pair
    lrs = torch.rand(1, t, 3, 64, 65)
    with torch.no_grad():
        assert (model(lrs) - reference_output(reference, lrs)).abs().max() <= TOLERANCE


def test_odd_sizes_match_basicsr_through_both_checkpoint_formats(pair):
    """A 5-frame clip of odd size, through a BasicSR (``params``) and an MMagic (``state_dict``,
    ``generator.``, ``upsample1.upsample_conv``, SPyNet's ``.conv``) checkpoint of the same weights."""
    reference, from_basicsr = pair
    mmagic = {f"generator.{k}": v for k, v in _basicsr_to_mmagic(reference.state_dict()).items()}
    assert any(".upsample_conv." in k for k in mmagic) and any(".basic_module.0.conv." in k for k in mmagic)
    from_mmagic = ours().eval()
    load_state_dict(from_mmagic, extract_state_dict({"meta": {}, "state_dict": mmagic}))
    lrs = torch.rand(1, 5, 3, 65, 67)
    expected = reference_output(reference, lrs)
    with torch.no_grad():
        assert (from_basicsr(lrs) - expected).abs().max() <= TOLERANCE
        assert (from_mmagic(lrs) - expected).abs().max() <= TOLERANCE


def test_mirror_extended_clip_matches_basicsr_with_one_flow_pass(pair):
    reference, model = pair
    half = torch.rand(1, 3, 3, 64, 64)
    lrs = torch.cat([half, half.flip(1)], dim=1)
    calls = []
    hook = model.flow.register_forward_hook(lambda *a: calls.append(1))
    try:
        with torch.no_grad():
            assert (model(lrs) - reference_output(reference, lrs)).abs().max() <= TOLERANCE
    finally:
        hook.remove()
    assert len(calls) == 1  # the forward flows are the backward ones reversed


def test_basicsr_keeps_its_mirror_flag_across_calls_vsr_does_not(pair):
    """After a mirror-extended clip BasicSR treats every even-length clip as mirrored (the flag is reset only
    in ``__init__``) and takes wrong forward flows; vsr checks each clip."""
    reference, model = pair
    half = torch.rand(1, 1, 3, 64, 64)
    reference_output(reference, torch.cat([half, half.flip(1)], dim=1))
    assert reference.is_mirror_extended
    clip = torch.rand(1, 2, 3, 64, 64)
    with torch.no_grad():
        stale = reference(clip)  # the flag left set by the previous call
        fresh = reference_output(reference, clip)
        assert (stale - fresh).abs().max() > 10 * TOLERANCE
        assert (model(clip) - fresh).abs().max() <= TOLERANCE


def test_basicsr_drops_the_alignment_without_cuda_vsr_keeps_it(basicsr_pp, pair):
    """Built where CUDA is unavailable, BasicSR's BasicVSR++ has no deformable alignment (propagation then
    passes the unaligned state on) and gives another output; vsr's runs the alignment on any device."""
    reference, model = pair
    without = reference_model(basicsr_pp, cuda=False)
    assert len(without.deform_align) == 0 and not without.is_with_alignment
    without.load_state_dict(reference.state_dict(), strict=False)
    lrs = torch.rand(1, 3, 3, 64, 64)
    expected = reference_output(reference, lrs)
    assert (reference_output(without, lrs) - expected).abs().max() > 100 * TOLERANCE
    with torch.no_grad():
        assert (model(lrs) - expected).abs().max() <= TOLERANCE


def test_full_size_matches_the_reference_parameters_and_mmagic_keys(basicsr_pp):
    """The recipe is the reference's c64n7 network: 7,322,927 parameters; its BasicSR state dict loads
    strictly, and renamed the MMagic way it has exactly the keys and shapes MMagic's network lists."""
    reference = reference_model(basicsr_pp, mid_channels=64, num_blocks=7)
    model = build_model("basicvsrpp")
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters()) == 7_322_927
    load_state_dict(model, extract_state_dict({"params_ema": reference.state_dict()}))
    mmagic = mmagic_state_from_tsv("keys_basicvsr_pp_net.tsv")
    renamed = _basicsr_to_mmagic(reference.state_dict())
    assert {k: tuple(v.shape) for k, v in renamed.items()} == {k: tuple(v.shape) for k, v in mmagic.items()}


def test_mmagic_checkpoint_loads_strictly(tmp_path):
    """A checkpoint with exactly MMagic's key names and shapes (and its ``step_counter``) fills every weight."""
    state = mmagic_state_from_tsv("keys_basicvsr_pp_net.tsv")
    checkpoint = {"meta": {}, "state_dict": {f"generator.{k}": v for k, v in state.items()}}
    checkpoint["state_dict"]["generator.step_counter"] = torch.zeros(1)
    torch.save(checkpoint, tmp_path / "basicvsrpp.pth")
    model = build_model("basicvsrpp")
    load_checkpoint(model, tmp_path / "basicvsrpp.pth")
    ours_state = model.state_dict()
    assert len(ours_state) == len(state)
    assert sorted(v.sum().item() for v in state.values()) == pytest.approx(
        sorted(v.sum().item() for v in ours_state.values())
    )


# ------------------------------------------------------------------------------------ components
def test_first_order_deformable_alignment_and_small_frames():
    """First-order BasicVSR++ (one state per step, its own deformable groups) runs on frames far below
    the reference SPyNet's 64×64 minimum, and every parameter is trained."""
    model = build_model("basicvsrpp", *TINY, "model.propagation.order=1")
    assert model.propagation.backward_1_alignment.weight.shape == (8, 8, 3, 3)  # one state of 8 channels
    with torch.no_grad():  # the zero-initialised offset predictor would stop the gradient upstream of it
        for p in model.parameters():
            if p.dim() > 1 and not p.any():
                p.normal_(0, 0.01)
    out = model(torch.rand(2, 4, 3, 7, 9))
    assert out.shape == (2, 4, 3, 28, 36)
    out.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_grid_passes_and_order_shape_the_network():
    """``passes`` sets the branches; each branch's aggregation receives the frame feature, every earlier
    branch and the aligned state(s)."""
    one = build_model("basicvsrpp", *TINY, "model.propagation.passes=1", "model.alignment=feature")
    assert one.propagation.branches == ("backward_1", "forward_1")
    # [feature, aligned state, second-order state] for backward_1; forward_1 also receives backward_1
    assert one.propagation.aggregation("backward_1").input_conv.in_channels == 3 * 8
    assert one.propagation.aggregation("forward_1").input_conv.in_channels == 4 * 8
    three = build_model("basicvsrpp", *TINY, "model.propagation.passes=3")
    assert three.propagation.branches[-1] == "forward_3"
    assert three.propagation.reconstruction.input_conv.in_channels == 7 * 8
    assert three(torch.rand(1, 3, 3, 8, 8)).shape == (1, 3, 3, 32, 32)


def test_bf16_autocast_matches_fp32():
    model = build_model("basicvsrpp", *TINY).eval()
    lrs = torch.rand(1, 4, 3, 12, 16)
    with torch.no_grad():
        reference = model(lrs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(lrs)
    assert (low.float() - reference).abs().mean() < 0.02


def test_study_variants_are_the_papers_steps():
    """basicvsr -> + second order -> + grid -> + flow-guided deformable alignment, each one change, built
    from the cpu preset's recipe."""
    study = load_study("basicvsrpp")
    assert list(study.variants) == ["basicvsr", "second_order", "grid", "basicvsrpp"]
    preset = study.presets["cpu"]
    models = {
        name: build_model(preset.recipe, *preset.overrides, *variant.overrides, *TINY[:2])
        for name, variant in study.variants.items()
    }
    orders = {name: m.propagation.order for name, m in models.items()}
    passes = {name: len(m.propagation.branches) // 2 for name, m in models.items()}
    alignments = {name: type(m.propagation.backward_1_alignment).__name__ for name, m in models.items()}
    assert orders == {"basicvsr": 1, "second_order": 2, "grid": 2, "basicvsrpp": 2}
    assert passes == {"basicvsr": 1, "second_order": 1, "grid": 2, "basicvsrpp": 2}
    assert alignments["grid"] == "FeatureAlignment" and alignments["basicvsrpp"] == "FlowGuidedDeformableAlignment"


# ------------------------------------------------------------------------- commands and the zoo
def test_vsr_model_prints_the_reference_parameter_count():
    result = CliRunner().invoke(app, ["model", "basicvsrpp"], catch_exceptions=False)
    assert result.exit_code == 0
    assert "7,322,927" in result.output


def test_zoo_lists_the_published_checkpoints():
    """MMagic's basicvsr_pp README: the REDS4 and Vimeo-90K BI/BD models and their numbers."""
    assert ZOO["basicvsrpp_reds4"].results["REDS4 (BIx4)"] == (32.3855, 0.9069)
    assert ZOO["basicvsrpp_vimeo90k_bi"].results["Vimeo-90K-T (BIx4)"] == (37.7864, 0.9500)
    assert ZOO["basicvsrpp_vimeo90k_bd"].results["UDM10 (BDx4)"] == (40.7216, 0.9722)
    prefixes = {name: ZOO[name].sha256_prefix for name in ZOO if name.startswith("basicvsrpp")}
    assert prefixes == {"basicvsrpp_reds4": "db622b2f", "basicvsrpp_vimeo90k_bi": "4ef437e2",
                        "basicvsrpp_vimeo90k_bd": "ab315ab1"}  # fmt: skip
    result = CliRunner().invoke(app, ["zoo"], catch_exceptions=False)
    assert "basicvsrpp_vimeo90k_bd" in result.output and "40.72/0.9722" in result.output


def test_a_published_mmagic_checkpoint_loads_by_name(pair, server, tmp_path, monkeypatch):  # noqa: F811
    """Served from 127.0.0.1 as MMagic publishes it (named by its sha256 prefix), fetched by name, loaded
    into the recipe the zoo entry names, and equal to the reference."""
    import hashlib

    reference, _ = pair
    root, url = server
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    staging = tmp_path / "staging.pth"
    mmagic = {f"generator.{k}": v for k, v in _basicsr_to_mmagic(reference.state_dict()).items()}
    torch.save({"meta": {}, "state_dict": mmagic}, staging)
    name = f"basicvsr_plusplus_tiny-{hashlib.sha256(staging.read_bytes()).hexdigest()[:8]}.pth"
    (root / name).write_bytes(staging.read_bytes())
    overrides = (f"model.channels={WIDTH}", f"model.aggregation.num_blocks={BLOCKS}")
    monkeypatch.setitem(ZOO, "basicvsrpp_test", ZooEntry("basicvsrpp_test", "basicvsrpp", f"{url}/{name}", overrides))
    model = pretrained_model("basicvsrpp_test").eval()
    lrs = torch.rand(1, 3, 3, 64, 64)
    with torch.no_grad():
        assert (model(lrs) - reference_output(reference, lrs)).abs().max() <= TOLERANCE


def test_profile_counts_the_deformable_convolution():
    """The alignment's FLOPs hold its offset convs and the deformable convolution's multiply-adds (on the
    meta device, whichever deformable convolution runs)."""
    frames, (h, w), c = 3, (16, 16), 8
    result = profile(build_model("basicvsrpp", *TINY), frames=frames, size=(h, w), runtime=False)
    steps = 4 * (frames - 1)  # aligned steps: every frame but the first of each of the 4 branches
    offset_convs = 2 * 9 * h * w * ((2 * c + c + 4) * c + c * c + c * c + c * 27 * 8)
    deform_conv = 2 * 9 * h * w * (2 * c) * c
    alignment = result["flops_per_frame_by_component"]["alignment"] * frames
    assert alignment >= steps * (offset_convs + deform_conv)
    assert not any("deform" in op for op in result["uncounted_ops"])


def test_upscale_streams_basicvsrpp_in_bounded_chunks():
    model = build_model("basicvsrpp", *TINY).eval()
    frames = torch.rand(9, 3, 10, 12)
    whole = torch.stack(list(upscale_frames(model, frames, chunk_size=None, device="cpu")))
    with torch.no_grad():
        torch.testing.assert_close(whole, model(frames[None])[0], rtol=0, atol=1e-6)
    chunked = torch.stack(list(upscale_frames(model, frames, chunk_size=4, chunk_overlap=2, device="cpu")))
    assert chunked.shape == whole.shape == (9, 3, 40, 48)


def test_trains_and_evaluates(tmp_path):
    from vsr.evaluate import evaluate

    data = tiny_synth(tmp_path / "synth")
    recipe = build_recipe_dict()
    result = train(recipe, tmp_path / "run", data=data, progress=False)
    metrics = evaluate(recipe, result.checkpoint, {"layout": "synth", "root": str(data), "split": "val"},
                       progress=False)  # fmt: skip
    assert metrics["psnr"] > 0


def build_recipe_dict() -> dict:
    """basicvsrpp with TINY applied, trained for two iterations on 8×8 crops of 3 frames."""
    from vsr.recipe import load_recipe

    recipe = load_recipe("basicvsrpp", *TINY).to_dict()
    recipe["data"].update({"num_frames": 3, "lr_patch": 8, "batch_size": 1, "workers": 0})
    recipe["train"].update({"iterations": 2, "periods": [2], "fix_iterations": 1, "log_every": 1,
                            "val_every": 0, "checkpoint_every": 0})  # fmt: skip
    return recipe

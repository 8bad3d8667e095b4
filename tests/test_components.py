"""Every registered component and every shipped recipe: shapes, gradients, determinism, state-dict round
trip, and device neutrality (meta device, bf16 autocast)."""

import pytest
import torch
from torch import nn

from vsr import RecipeError, build_model
from vsr.components import KIND_SPECS, REGISTRY, Alignment, NoAlignment, Refill, register
from vsr.recipe import shipped_recipes
from vsr.registry import COMPONENT_KINDS, build, choices

# A tiny model per registered component: the base recipe with one component swapped in.
TINY = (
    "model.channels=8",
    "model.aggregation.num_blocks=1",
    "model.flow.levels=2",
    "model.upsampling.hr_channels=8",
)
VARIANTS = [(kind, name) for kind in COMPONENT_KINDS for name in choices(kind)]


def tiny_model(kind: str, name: str):
    overrides = [*TINY, f"model.{kind}={name}"]
    if kind == "aggregation":
        overrides.append("model.aggregation.num_blocks=1")
    if kind == "flow":
        overrides.append("model.flow.levels=2")
    if kind == "refill" and name == "edvr":
        overrides += ["model.refill.keyframe_stride=2", "model.refill.num_extract_blocks=1"]
    return build_model("basicvsr", *overrides)


@pytest.mark.parametrize(("kind", "name"), VARIANTS, ids=[f"{k}-{n}" for k, n in VARIANTS])
def test_component_forward_backward(kind, name):
    model = tiny_model(kind, name)
    with torch.no_grad():  # zero-initialised layers (DCN offsets) would block the gradient upstream of them
        for p in model.parameters():
            if p.dim() > 1 and not p.any():
                p.normal_(0, 0.01)
    lrs = torch.rand(2, 5, 3, 12, 16)
    out = model(lrs)
    assert out.shape == (2, 5, 3, 48, 64)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad, f"parameters without gradient: {no_grad}"


@pytest.mark.parametrize(("kind", "name"), VARIANTS, ids=[f"{k}-{n}" for k, n in VARIANTS])
def test_component_is_deterministic_and_round_trips(kind, name):
    torch.manual_seed(1)
    first = tiny_model(kind, name).eval()
    torch.manual_seed(1)
    second = tiny_model(kind, name).eval()
    lrs = torch.rand(1, 4, 3, 8, 12)
    with torch.no_grad():
        assert torch.equal(first(lrs), second(lrs))
        third = tiny_model(kind, name).eval()
        third.load_state_dict(first.state_dict())
        assert torch.equal(third(lrs), first(lrs))


@pytest.mark.parametrize(("kind", "name"), VARIANTS, ids=[f"{k}-{n}" for k, n in VARIANTS])
def test_component_runs_on_the_meta_device(kind, name):
    """No tensor is made on the CPU inside forward: it would fail here as it would on CUDA."""
    with torch.device("meta"):
        model = tiny_model(kind, name)
        out = model(torch.empty(2, 6, 3, 12, 16))
    assert out.device.type == "meta" and out.shape == (2, 6, 3, 48, 64)


@pytest.mark.parametrize("recipe", sorted(shipped_recipes()))
def test_shipped_recipe_runs_on_the_meta_device(recipe):
    with torch.device("meta"):
        model = build_model(recipe)
        out = model(torch.empty(1, 7, 3, 36, 44))
    assert out.shape == (1, 7, 3, 36 * model.scale, 44 * model.scale)


@pytest.mark.parametrize("recipe", ["basicvsr", "iconvsr"])
def test_bf16_autocast_matches_fp32(recipe):
    model = build_model(recipe, "model.channels=16", "model.aggregation.num_blocks=2").eval()
    lrs = torch.rand(1, 5, 3, 20, 24)
    with torch.no_grad():
        reference = model(lrs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(lrs)
    assert low.shape == reference.shape
    assert (low.float() - reference).abs().mean() < 0.02


@pytest.mark.parametrize("t", [1, 2, 3])
def test_any_clip_length_and_odd_sizes(t):
    model = build_model("iconvsr", "model.channels=8", "model.aggregation.num_blocks=1", "model.flow.levels=2")
    out = model(torch.rand(2, t, 3, 7, 9))
    assert out.shape == (2, t, 3, 28, 36)


def test_local_propagation_keeps_segments_independent():
    """Changing a frame changes only the outputs of its own segment (no information crosses a boundary)."""
    model = build_model("basicvsr", *TINY, "model.propagation={name: local, segment_length: 3}").eval()
    lrs = torch.rand(1, 7, 3, 8, 8)
    changed = lrs.clone()
    changed[:, 4] = torch.rand(3, 8, 8)
    with torch.no_grad():
        diff = (model(lrs) - model(changed)).abs().flatten(2).amax(-1)[0]
    assert (diff[3:6] > 0).all() and (diff[:3] == 0).all() and (diff[6:] == 0).all()


def test_unidirectional_propagation_only_looks_back():
    model = build_model("basicvsr", *TINY, "model.propagation=unidirectional").eval()
    lrs = torch.rand(1, 6, 3, 8, 8)
    changed = lrs.clone()
    changed[:, 3] = torch.rand(3, 8, 8)
    with torch.no_grad():
        diff = (model(lrs) - model(changed)).abs().flatten(2).amax(-1)[0]
    assert (diff[:3] == 0).all() and (diff[3:] > 0).all()


def test_bidirectional_propagation_sees_the_whole_clip():
    model = build_model("basicvsr", *TINY).eval()
    lrs = torch.rand(1, 6, 3, 8, 8)
    changed = lrs.clone()
    changed[:, 5] = torch.rand(3, 8, 8)
    with torch.no_grad():
        diff = (model(lrs) - model(changed)).abs().flatten(2).amax(-1)[0]
    assert (diff > 0).all()


def test_no_alignment_skips_flow_estimation():
    model = build_model("basicvsr", *TINY, "model.alignment=none")
    assert model.flow is None
    assert "flow" not in model.component_parameters()


def test_upsampling_scales():
    for scale in (2, 4, 8):
        model = build_model("basicvsr", *TINY, f"model.scale={scale}")
        assert model(torch.rand(1, 2, 3, 6, 5)).shape == (1, 2, 3, 6 * scale, 5 * scale)


# ------------------------------------------------------------------------------------- kinds and registry
def test_every_kind_is_declared_and_every_component_honours_its_interface():
    assert set(COMPONENT_KINDS) <= set(KIND_SPECS)
    for kind in COMPONENT_KINDS:
        spec = KIND_SPECS[kind]
        assert REGISTRY[kind], f"no {kind} component registered"
        for name, cls in REGISTRY[kind].items():
            assert isinstance(cls, type) and issubclass(cls, spec.interface), f"{kind} {name!r}: {cls}"


def test_refill_none_is_the_optional_kinds_no_component_not_a_registered_none():
    """``refill: none`` is a choice of the optional kind and builds nothing; ``alignment: none`` is a real
    component (NoAlignment)."""
    assert KIND_SPECS["refill"].optional and KIND_SPECS["refill"].interface is Refill
    assert "none" not in REGISTRY["refill"] and "none" in choices("refill")
    assert build("refill", "none", {}, channels=8, branches=("forward",)) is None
    assert not KIND_SPECS["alignment"].optional and REGISTRY["alignment"]["none"] is NoAlignment
    assert isinstance(build("alignment", "none", {}, channels=8, frame_channels=3, order=1), NoAlignment)
    with pytest.raises(ValueError, match="optional"):
        register("refill", "none")


def test_the_model_wires_exactly_the_kinds_wired_arguments():
    assert KIND_SPECS["aggregation"].wired == ("in_channels", "out_channels")
    with pytest.raises(RecipeError, match=r"model.aggregation.in_channels.*vsr sets this.*num_blocks"):
        build("aggregation", "residual", {"in_channels": 3}, in_channels=3, out_channels=8)
    with pytest.raises(TypeError, match="wired with in_channels, out_channels"):
        build("aggregation", "residual", {}, in_channels=3)


def test_a_component_must_subclass_its_kinds_interface():
    with pytest.raises(TypeError, match="must subclass Alignment"):

        @register("alignment", "not_an_alignment")
        class NotAnAlignment(nn.Module):
            pass

    assert "not_an_alignment" not in REGISTRY["alignment"] and issubclass(NoAlignment, Alignment)

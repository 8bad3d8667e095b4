"""Profiling: parameter counts, FLOPs against closed forms (convolutions, warps, a whole small model per
component), and the runtime protocol."""

from __future__ import annotations

import statistics

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vsr.errors import VSRError
from vsr.model import build_model
from vsr.profile import count_flops, profile

# A small BasicVSR: 8 channels, one residual block per branch, a 2-level SPyNet, narrow upsampler.
TINY = {
    "name": "tiny",
    "model": {
        "channels": 8,
        "flow": {"name": "spynet", "levels": 2, "widths": [8, 8, 8, 8]},
        "aggregation": {"name": "residual", "num_blocks": 1},
        "upsampling": {"name": "pixel_shuffle", "hr_channels": 8},
    },
}


def meta(*shape):
    return torch.empty(*shape, device="meta")


@pytest.mark.parametrize(
    ("conv", "shape"),
    [
        (nn.Conv2d(3, 8, 3, padding=1), (2, 3, 16, 20)),
        (nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=2), (1, 8, 15, 9)),
        (nn.Conv2d(4, 4, 1), (3, 4, 7, 5)),
    ],
)
def test_conv_flops_closed_form(conv, shape):
    conv = conv.to("meta")
    n, c_in, h, w = shape
    k, s, p = conv.kernel_size[0], conv.stride[0], conv.padding[0]
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    expected = 2 * n * conv.out_channels * (c_in // conv.groups) * k * k * ho * wo  # 2 FLOPs per MAC
    result = count_flops(conv, meta(*shape))
    assert result["total"] == expected
    assert result["by_op"] == {"aten.convolution": expected}


class Warp(nn.Module):
    def forward(self, x, grid):
        return F.grid_sample(x, grid, mode="bilinear", align_corners=True)


class Resize(nn.Module):
    def forward(self, x):
        return F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)


def test_sampling_flops_closed_forms():
    # Bilinear: 4 multiply-accumulates per output value and channel.
    assert count_flops(Warp(), meta(2, 5, 8, 8), meta(2, 6, 7, 2))["total"] == 2 * 4 * 2 * 5 * 6 * 7
    assert count_flops(Resize(), meta(1, 3, 6, 10))["total"] == 2 * 4 * 3 * 24 * 40


def test_profile_counts_parameters_and_flops_per_component():
    frames, (h, w) = 3, (16, 24)
    result = profile(TINY, frames=frames, size=(h, w), repeats=2, warmup=1)
    model = build_model(TINY)
    params = result["params"]
    assert params["total"] == sum(p.numel() for p in model.parameters())
    assert sum(v for k, v in params.items() if k != "total") == params["total"]

    c, hw = 8, h * w
    by_component = result["flops_per_frame_by_component"]
    # Upsampler per frame: conv 8->32 at h×w, conv 8->32 at 2h×2w (pixel-shuffle stages), conv_hr 8->8 and
    # conv_last 8->3 at 4h×4w, plus the bilinear ×4 residual of the LR frame (4 MACs per output value).
    upsampling_macs = 9 * (c * 4 * c * hw + c * 4 * c * 4 * hw + c * c * 16 * hw + c * 3 * 16 * hw) + 4 * 3 * 16 * hw
    assert by_component["upsampling"] == pytest.approx(2 * upsampling_macs)
    # Aggregation per frame, two branches: 3x3 input conv (3 + c -> c) and one residual block (two c -> c).
    assert by_component["aggregation"] == pytest.approx(2 * 2 * 9 * ((3 + c) * c + 2 * c * c) * hw)
    # Feature alignment: one bilinear warp of the c-channel state per branch and frame but the first.
    assert by_component["alignment"] == pytest.approx(2 * 4 * c * hw * 2 * (frames - 1) / frames)
    assert by_component["propagation"] == pytest.approx(2 * (2 * c) * c * hw)  # the 1x1 direction fusion
    assert by_component["flow"] > 0
    assert sum(by_component.values()) == pytest.approx(result["flops_per_frame"])
    assert result["macs_per_frame"] == pytest.approx(result["flops_per_frame"] / 2)
    assert "aten.add" in result["uncounted_ops"]  # residual additions are listed, not counted

    repeats = result["runtime_ms_per_frame_repeats"]
    assert len(repeats) == 2 and all(t > 0 for t in repeats)
    assert result["runtime_ms_per_frame"] == statistics.median(repeats)
    assert result["device"].startswith("CPU")


def test_profile_without_runtime_and_bad_arguments():
    result = profile(TINY, frames=2, size=(8, 8), runtime=False)
    assert "runtime_ms_per_frame" not in result and result["flops_per_frame"] > 0
    with pytest.raises(VSRError, match="frames >= 1"):
        profile(TINY, frames=0)
    with pytest.raises(VSRError, match="repeats >= 1"):
        profile(TINY, repeats=0)


def test_a_built_model_profiles_like_its_recipe():
    """A study profiles the model it has already built and loaded: the same parameters and FLOPs as from the
    recipe, under the recipe's name."""
    from_recipe = profile(TINY, frames=2, size=(8, 8), runtime=False)
    from_model = profile(build_model(TINY), frames=2, size=(8, 8), runtime=False, name="tiny")
    assert from_model["recipe"] == "tiny" and from_model["params"] == from_recipe["params"]
    assert from_model["flops_per_frame_by_component"] == from_recipe["flops_per_frame_by_component"]
    assert profile(build_model(TINY), frames=2, size=(8, 8), runtime=False)["recipe"] == "VideoSRNet"

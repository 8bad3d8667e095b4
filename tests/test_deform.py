"""vsr's pure-PyTorch deformable convolution against the implementation it replaced.

Reference: ``vsr.components.deform._reference_deform_conv2d``, the previous ``deform_conv2d_torch`` kept
unchanged (itself tested against ``torchvision.ops.deform_conv2d`` and plain convolutions in
``tests/test_edvr.py``). Tolerance: 1e-5 (absolute and relative), fp32, outputs and every gradient.
"""

from __future__ import annotations

import pytest
import torch

import vsr.components.deform as deform
from vsr.components.deform import _reference_deform_conv2d, deform_conv2d_torch

CASES = {  # n, c_in, c_out, (h, w), (kh, kw), stride, padding, dilation, groups, offset_groups
    "edvr-level": (3, 12, 12, (16, 16), (3, 3), (1, 1), (1, 1), (1, 1), 1, 4),
    "basicvsrpp-2nd-order": (2, 16, 8, (9, 13), (3, 3), (1, 1), (1, 1), (1, 1), 1, 8),
    "one-offset-group": (2, 4, 6, (7, 9), (3, 3), (1, 1), (1, 1), (1, 1), 1, 1),
    "dilation-2": (1, 6, 4, (10, 11), (3, 3), (1, 1), (2, 2), (2, 2), 1, 3),
    "stride-groups": (1, 8, 4, (6, 5), (3, 3), (2, 2), (0, 0), (1, 1), 2, 4),
    "rect-kernel": (1, 6, 3, (5, 8), (2, 3), (2, 1), (1, 0), (1, 2), 3, 2),
    "1x1-image": (1, 4, 2, (1, 1), (3, 3), (1, 1), (1, 1), (1, 1), 1, 2),
}


def random_args(case: str, offset_scale: float, seed: int = 0):
    """Random input, offsets (``offset_scale`` pixels: at 4 most samples of a 16-pixel side fall outside),
    weight, bias and mask in [0, 1]."""
    n, c_in, c_out, (h, w), (kh, kw), stride, padding, dilation, groups, og = CASES[case]
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    g = torch.Generator().manual_seed(seed)
    tensors = (
        torch.randn(n, c_in, h, w, generator=g),
        offset_scale * torch.randn(n, 2 * og * kh * kw, ho, wo, generator=g),
        torch.randn(c_out, c_in // groups, kh, kw, generator=g),
        torch.randn(c_out, generator=g),
        torch.rand(n, og * kh * kw, ho, wo, generator=g),
    )
    return tensors, (stride, padding, dilation)


def outputs_and_gradients(fn, tensors, geometry, use_mask: bool):
    leaves = [t.clone().requires_grad_() for t in (tensors if use_mask else tensors[:-1])]
    x, offset, weight, bias, *mask = leaves
    out = fn(x, offset, weight, bias, *geometry, *mask)
    weights = torch.linspace(-1, 1, out.numel()).view_as(out)  # every output position weighs differently
    return (out, *torch.autograd.grad((out * weights).sum(), leaves))


@pytest.mark.parametrize("use_mask", [True, False], ids=["mask", "no-mask"])
@pytest.mark.parametrize("offset_scale", [0.7, 4.0], ids=["near", "outside"])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_reference_forward_and_backward_fp32_1e5(case, offset_scale, use_mask):
    """deform_conv2d_torch == the previous implementation: output and the gradients of input, offset,
    weight, bias and mask (fp32, 1e-5), with many samples outside the image (zero padding)."""
    tensors, geometry = random_args(case, offset_scale)
    ours = outputs_and_gradients(deform_conv2d_torch, tensors, geometry, use_mask)
    reference = outputs_and_gradients(_reference_deform_conv2d, tensors, geometry, use_mask)
    for name, a, b in zip(["output", "input", "offset", "weight", "bias", "mask"], ours, reference, strict=False):
        assert a.shape == b.shape, name
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")


def test_samples_far_outside_read_zeros():
    """Offsets that move every sample beyond the border give the bias alone, and no input gradient."""
    tensors, geometry = random_args("edvr-level", 1.0)
    x, offset, weight, bias, mask = (t.clone() for t in tensors)
    x.requires_grad_()
    out = deform_conv2d_torch(x, torch.full_like(offset, 100.0), weight, bias, *geometry, mask)
    torch.testing.assert_close(out, bias.view(1, -1, 1, 1).expand_as(out))
    out.sum().backward()
    assert torch.count_nonzero(x.grad) == 0


def test_inference_does_not_change_its_inputs():
    """Without autograd the mask is applied in place, to the sampled columns only."""
    tensors, geometry = random_args("basicvsrpp-2nd-order", 2.0)
    copies = [t.clone() for t in tensors]
    with torch.inference_mode():
        out = deform_conv2d_torch(*tensors[:4], *geometry, tensors[4])
    for before, after in zip(copies, tensors, strict=True):
        assert torch.equal(before, after)
    torch.testing.assert_close(out, _reference_deform_conv2d(*tensors[:4], *geometry, tensors[4]), rtol=1e-5, atol=1e-5)


def test_meta_device_shapes():
    tensors, geometry = random_args("stride-groups", 1.0)
    out = deform_conv2d_torch(*(t.to("meta") for t in tensors[:4]), *geometry, tensors[4].to("meta"))
    assert out.device.type == "meta" and out.shape == (1, 4, 2, 2)


def test_recording_names_the_implementation_that_ran():
    tensors, geometry = random_args("one-offset-group", 1.0)
    with deform.recording_implementations() as ran:
        deform.deform_conv2d(*tensors[:4], *geometry, tensors[4])
    expected = deform.TORCHVISION if deform.deform_backend() == "torchvision" else deform.PURE_PYTORCH
    assert ran == {expected}
    assert deform.deform_implementation().startswith(expected)
    with deform.recording_implementations() as ran:
        pass
    assert ran == set()


def test_profile_reports_the_implementation():
    """``vsr profile`` names the deformable convolution that ran (none for a model without one)."""
    from vsr.model import build_model
    from vsr.profile import profile

    small = ["model.channels=8", "model.alignment={name: flow_guided_deformable, groups_per_state: 4}"]
    result = profile(build_model("basicvsrpp_tiny", *small), frames=2, size=(16, 16), repeats=1, warmup=0)
    assert result["deform_conv2d"] == deform.deform_implementation()
    assert profile(build_model("basicvsr_tiny"), frames=2, size=(16, 16), runtime=False)["deform_conv2d"] is None

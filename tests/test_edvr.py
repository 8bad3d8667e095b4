"""Deformable convolution and IconVSR's EDVR-M refill extractor.

References: ``torchvision.ops.deform_conv2d`` (where torchvision imports), plain ``F.conv2d`` on shifted
inputs (everywhere), and BasicSR 1.4.2's ``EDVRFeatureExtractor`` (via ``basicsr_reference``).
"""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

import vsr.components.deform as deform
from vsr.components.deform import ModulatedDeformConvPack, deform_conv2d, deform_conv2d_torch
from vsr.components.edvr import EDVRFeatureExtractor
from vsr.errors import VSRError

from basicsr_reference import ReferenceUnavailable, import_basicsr


def torchvision_deform_conv2d():
    """The real ``torchvision.ops.deform_conv2d``, or skip with the reason."""
    try:
        import torchvision.ops
    except Exception as err:
        pytest.skip(
            f"torchvision not importable beside this torch build ({torch.__version__}): "
            f"{type(err).__name__}: {err}; run under torch 2.14.1 + torchvision 0.29.1"
        )
    if torchvision.ops.deform_conv2d is deform_conv2d_torch:
        pytest.skip(
            "torchvision is not installed here (the module loaded is basicsr_reference's stand-in for BasicSR); "
            "run under torch 2.14.1 + torchvision 0.29.1"
        )
    return torchvision.ops.deform_conv2d


def basicsr_vsr_arch():
    try:
        return import_basicsr("basicsr.archs.basicvsr_arch")
    except ReferenceUnavailable as err:
        pytest.skip(str(err))


def random_deform_args(n, c_in, c_out, size, kernel, stride, padding, dilation, groups, offset_groups, seed=0):
    """Random input/offset/weight/bias/mask; offsets of a few pixels, so many samples fall outside."""
    g = torch.Generator().manual_seed(seed)
    (h, w), (kh, kw) = size, kernel
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    x = torch.randn(n, c_in, h, w, generator=g)
    offset = 3 * torch.randn(n, 2 * offset_groups * kh * kw, ho, wo, generator=g)
    weight = torch.randn(c_out, c_in // groups, kh, kw, generator=g)
    bias = torch.randn(c_out, generator=g)
    mask = torch.rand(n, offset_groups * kh * kw, ho, wo, generator=g)
    return x, offset, weight, bias, mask


CASES = {  # n, c_in, c_out, (h, w), (kh, kw), stride, padding, dilation, groups, offset_groups
    "3x3-pad1": (2, 4, 6, (7, 9), (3, 3), (1, 1), (1, 1), (1, 1), 1, 1),
    "stride2-groups": (1, 8, 4, (6, 5), (3, 3), (2, 2), (0, 0), (1, 1), 2, 4),
    "dilation-rect": (1, 6, 3, (5, 8), (2, 3), (2, 1), (1, 0), (1, 2), 3, 2),
    "1x1-image": (1, 4, 2, (1, 1), (3, 3), (1, 1), (1, 1), (1, 1), 1, 2),
}


@pytest.mark.parametrize("use_mask", [True, False], ids=["mask", "no-mask"])
@pytest.mark.parametrize("case", list(CASES))
def test_pure_deform_conv_matches_torchvision_fp32_1e5(case, use_mask):
    """deform_conv2d_torch == torchvision.ops.deform_conv2d, outputs and all gradients (fp32, 1e-5 rel)."""
    tv_deform_conv2d = torchvision_deform_conv2d()
    n, c_in, c_out, size, kernel, stride, padding, dilation, groups, og = CASES[case]
    tensors = random_deform_args(n, c_in, c_out, size, kernel, stride, padding, dilation, groups, og)
    if not use_mask:
        tensors = tensors[:-1]
    results = []
    for fn in (deform_conv2d_torch, tv_deform_conv2d):
        leaves = [t.clone().requires_grad_() for t in tensors]
        x, offset, weight, bias, *mask = leaves
        out = fn(x, offset, weight, bias, stride, padding, dilation, *mask)
        grads = torch.autograd.grad((out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum(), leaves)
        results.append((out, *grads))
    ours, theirs = results
    assert ours[0].shape == theirs[0].shape
    for name, a, b in zip(["output", "input", "offset", "weight", "bias", "mask"], ours, theirs, strict=False):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")


def shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``out[..., y, x] = x[..., y + dy, x + dx]``, zero where that lies outside."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (abs(dx), abs(dx), abs(dy), abs(dy)))
    return padded[..., abs(dy) + dy : abs(dy) + dy + h, abs(dx) + dx : abs(dx) + dx + w]


def test_pure_deform_conv_zero_offset_is_conv2d():
    x, offset, weight, bias, _ = random_deform_args(2, 6, 3, (7, 8), (3, 3), (2, 1), (1, 2), (2, 1), 3, 2)
    offset = torch.zeros_like(offset)
    expected = F.conv2d(x, weight, bias, stride=(2, 1), padding=(1, 2), dilation=(2, 1), groups=3)
    for mask in (None, torch.ones(offset.shape[0], offset.shape[1] // 2, *offset.shape[2:])):
        out = deform_conv2d_torch(x, offset, weight, bias, (2, 1), (1, 2), (2, 1), mask)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_pure_deform_conv_offsets_are_dy_dx_per_offset_group():
    """Constant offsets shift each offset group's channels: (dy, dx) order, zeros outside, bilinear."""
    x, offset, weight, _, _ = random_deform_args(1, 4, 3, (6, 7), (3, 3), (1, 1), (1, 1), (1, 1), 1, 2)
    shifts = [(1, -2), (-3, 2)]  # per offset group (channels 0-1, 2-3); dy != dx catches a swapped pair
    offset = offset.view(1, 2, 9, 2, 6, 7).clone()
    for group, (dy, dx) in enumerate(shifts):
        offset[:, group, :, 0], offset[:, group, :, 1] = dy, dx
    offset = offset.view(1, 36, 6, 7)
    # deform conv with padding 1 == plain conv of the shifted, zero-padded input
    padded = F.pad(x, (1, 1, 1, 1))
    shifted = torch.cat([shift(padded[:, 2 * g : 2 * g + 2], *shifts[g]) for g in range(2)], dim=1)
    out = deform_conv2d_torch(x, offset, weight, padding=(1, 1))
    torch.testing.assert_close(out, F.conv2d(shifted, weight), rtol=1e-5, atol=1e-5)

    # half a pixel to the right is the mean of the two integer shifts (bilinear, zero beyond the border)
    half = torch.zeros_like(offset).view(1, 2, 9, 2, 6, 7)
    half[:, :, :, 1] = 0.5
    out = deform_conv2d_torch(x, half.view(1, 36, 6, 7), weight, padding=(1, 1))
    expected = 0.5 * (F.conv2d(padded, weight) + F.conv2d(shift(padded, 0, 1), weight))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_pure_deform_conv_mask_scales_each_kernel_point():
    x, offset, weight, bias, _ = random_deform_args(2, 3, 5, (5, 6), (3, 3), (1, 1), (1, 1), (1, 1), 1, 1)
    point_scale = torch.rand(9)
    mask = point_scale.view(1, 9, 1, 1).expand(2, 9, 5, 6)
    out = deform_conv2d_torch(x, torch.zeros_like(offset), weight, bias, padding=(1, 1), mask=mask)
    expected = F.conv2d(x, weight * point_scale.view(1, 1, 3, 3), bias, padding=1)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_pure_deform_conv_gradcheck_fp64():
    x, offset, weight, bias, mask = random_deform_args(1, 2, 2, (4, 5), (3, 3), (1, 1), (1, 1), (1, 1), 1, 2)
    args = [t.double().requires_grad_() for t in (x, offset, weight, bias)]
    fn = lambda x, o, w, b, m: deform_conv2d_torch(x, o, w, b, padding=(1, 1), mask=m)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (*args, mask.double().requires_grad_()))


def test_pure_deform_conv_bfloat16_close_to_fp32():
    tensors = random_deform_args(1, 4, 4, (6, 6), (3, 3), (1, 1), (1, 1), (1, 1), 1, 2)
    reference = deform_conv2d_torch(*tensors[:4], padding=(1, 1), mask=tensors[4])
    low = [t.bfloat16() for t in tensors]
    out = deform_conv2d(*low[:4], padding=(1, 1), mask=low[4])
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), reference, rtol=0.05, atol=0.3)


def test_deform_conv_rejects_wrong_offset_channels():
    x, offset, weight, _, _ = random_deform_args(1, 4, 4, (6, 6), (3, 3), (1, 1), (1, 1), (1, 1), 1, 1)
    with pytest.raises(VSRError, match=r"offset has 17 channels; it needs 2\*offset_groups\*kh\*kw"):
        deform_conv2d_torch(x, offset[:, :17], weight, padding=(1, 1))
    with pytest.raises(VSRError, match=r"offset shape \(1, 18, 6, 6\) does not match the output grid"):
        deform_conv2d_torch(x, offset, weight, padding=(0, 0))


def test_deform_conv2d_logs_its_backend_once(monkeypatch, caplog):
    monkeypatch.setattr(deform, "_backend", None)
    x, offset, weight, bias, mask = random_deform_args(1, 4, 4, (5, 5), (3, 3), (1, 1), (1, 1), (1, 1), 1, 1)
    with caplog.at_level(logging.INFO, logger="vsr"):
        out = deform_conv2d(x, offset, weight, bias, padding=(1, 1), mask=mask)
        deform_conv2d(x, offset, weight, bias, padding=(1, 1), mask=mask)
    messages = [r.getMessage() for r in caplog.records if "deformable convolution" in r.getMessage()]
    backend = deform.deform_backend()
    assert len(messages) == 1
    assert ("torchvision.ops" if backend == "torchvision" else "pure-PyTorch") in messages[0]
    torch.testing.assert_close(out, deform_conv2d_torch(x, offset, weight, bias, padding=(1, 1), mask=mask))


def test_dcn_pack_starts_as_half_weighted_conv_with_reference_names():
    """Zero-initialised conv_offset: offsets 0, mask sigmoid(0) = 0.5, so the pack is 0.5*conv + bias."""
    pack = ModulatedDeformConvPack(8, 6, 3, padding=1, deform_groups=4)
    with torch.no_grad():
        pack.bias.normal_()
    shapes = {k: tuple(v.shape) for k, v in pack.state_dict().items()}
    assert shapes == {
        "weight": (6, 8, 3, 3),
        "bias": (6,),
        "conv_offset.weight": (4 * 3 * 9, 8, 3, 3),
        "conv_offset.bias": (4 * 3 * 9,),
    }
    x, feat = torch.randn(2, 8, 5, 7), torch.randn(2, 8, 5, 7)
    expected = 0.5 * F.conv2d(x, pack.weight, padding=1) + pack.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(pack(x, feat), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings("ignore:distutils Version classes:DeprecationWarning")  # BasicSR 1.4.2's own
@pytest.mark.parametrize("num_frames", [5, 7])
def test_edvr_extractor_matches_basicsr_1e5(num_frames):
    """Our EDVRFeatureExtractor loads BasicSR's state_dict strictly and agrees to 1e-5 (16 channels)."""
    reference_arch = basicsr_vsr_arch()
    torch.manual_seed(0)
    reference = reference_arch.EDVRFeatureExtractor(num_frames, 16, None).eval()
    with torch.no_grad():  # non-zero offset predictors, so the deformable sampling matters
        for name, param in reference.named_parameters():
            if "conv_offset" in name:
                param.normal_(0, 0.05)
    ours = EDVRFeatureExtractor(num_frames, channels=16).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    frames = torch.rand(2, num_frames, 3, 12, 16)
    with torch.no_grad():
        expected, out = reference(frames), ours(frames)
    assert out.shape == (2, 16, 12, 16)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


def test_edvr_extractor_parameters_match_basicsr_at_full_size():
    """64 channels, 5 frames: the same state_dict keys, shapes and order; IconVSR's EDVR-M part, 2.227 M."""
    reference = basicsr_vsr_arch().EDVRFeatureExtractor(5, 64, None)
    ours = EDVRFeatureExtractor(5, channels=64)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [
        (k, v.shape) for k, v in reference.state_dict().items()
    ]
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in reference.parameters())
    assert round(count / 1e6, 3) == 2.227  # BasicSR IconVSR(64, 30): edvr = 2.227M (basicsr-keys.txt)


def test_edvr_extractor_every_parameter_gets_a_gradient():
    model = EDVRFeatureExtractor(3, channels=8, num_extract_blocks=1, deform_groups=2)
    with torch.no_grad():  # zero-initialised offset predictors would block the offset branch's gradient
        for name, param in model.named_parameters():
            if "conv_offset" in name:
                param.normal_(0, 0.05)
    model(torch.rand(1, 3, 3, 8, 8)).square().mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_edvr_extractor_runs_on_meta_device():
    with torch.device("meta"):
        model = EDVRFeatureExtractor(5, center_frame_idx=1, channels=16, deform_groups=4)
        out = model(torch.empty(2, 5, 3, 16, 24))
    assert out.device.type == "meta"
    assert out.shape == (2, 16, 16, 24)


def test_edvr_extractor_rejects_bad_shapes():
    model = EDVRFeatureExtractor(5, channels=8, num_extract_blocks=1, deform_groups=2)
    with pytest.raises(VSRError, match=r"multiples of 4.*got \(1, 5, 3, 10, 8\)"):
        model(torch.rand(1, 5, 3, 10, 8))
    with pytest.raises(VSRError, match=r"expects \(b, 5, 3, h, w\)"):
        model(torch.rand(1, 3, 3, 8, 8))
    with pytest.raises(VSRError, match="center_frame_idx=5 is outside the window"):
        EDVRFeatureExtractor(5, center_frame_idx=5)
    with pytest.raises(VSRError, match="channels=12 must be divisible by deform_groups=8"):
        EDVRFeatureExtractor(5, channels=12)

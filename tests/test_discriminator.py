"""The U-Net discriminator with spectral norm (vsr.training.discriminators) against BasicSR 1.4.2's
``UNetDiscriminatorSN`` (``basicsr/archs/discriminator_arch.py``, from the PyPI sdist via basicsr_reference):
the same weights give the same logits within 1e-5, in training mode (each forward's power iteration updates
``weight_u``) and in eval mode; and the weights of both reference spellings load by name."""

from __future__ import annotations

import pytest
import torch

from vsr.training.discriminators import REFERENCE_NAMES, UNetDiscriminator, discriminator_state_dict

from basicsr_reference import ReferenceUnavailable, import_basicsr

#: The tensors of a reference discriminator: a plain conv (weight, bias) at each end, spectral norm between.
PLAIN, SPECTRAL = ("weight", "bias"), ("weight_orig", "weight_u", "weight_v")


@pytest.fixture(scope="module")
def reference_arch():
    try:
        return import_basicsr("basicsr.archs.discriminator_arch")
    except ReferenceUnavailable as err:
        pytest.skip(f"BasicSR reference unavailable: {err}")


def _pair(reference_arch, channels: int) -> tuple[torch.nn.Module, UNetDiscriminator]:
    torch.manual_seed(1)
    reference = reference_arch.UNetDiscriminatorSN(3, num_feat=channels)
    ours = UNetDiscriminator(3, channels)
    ours.load_state_dict(discriminator_state_dict(reference.state_dict()), strict=True)
    return reference, ours


@pytest.mark.parametrize("channels", [64, 16])
def test_unet_discriminator_matches_basicsr_unet_discriminator_sn_1e5(reference_arch, channels):
    """Training mode: three forwards in turn, each one power iteration, logits and every ``weight_u``/``weight_v``
    within 1e-5 of BasicSR 1.4.2's; then eval mode (no update) likewise; gradients to the input likewise."""
    reference, ours = _pair(reference_arch, channels)
    torch.manual_seed(2)
    frames = [torch.rand(2, 3, 32, 48) for _ in range(3)]
    worst = 0.0
    for mode in ("train", "eval"):
        reference.train(mode == "train")
        ours.train(mode == "train")
        for x in frames:
            expected, got = reference(x), ours(x)
            assert got.shape == (2, 1, 32, 48)
            worst = max(worst, (expected - got).abs().max().item())
        mapped = discriminator_state_dict(reference.state_dict())
        for key, value in ours.state_dict().items():
            torch.testing.assert_close(value, mapped[key], rtol=0, atol=1e-5, msg=f"{mode}: {key}")
    assert worst <= 1e-5, worst

    x_ref, x_ours = (frames[0].clone().requires_grad_() for _ in range(2))
    reference(x_ref).square().mean().backward()
    ours(x_ours).square().mean().backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=0, atol=1e-6)


def test_unet_discriminator_has_the_published_size_and_layout():
    """4,376,897 parameters at 64 channels (RealBasicVSR's, notes §1.6); plain convs at both ends, spectral norm
    on the eight between, no bias under spectral norm."""
    d = UNetDiscriminator()
    assert sum(p.numel() for p in d.parameters()) == 4_376_897
    keys = set(d.state_dict())
    for index, name in REFERENCE_NAMES.items():
        suffixes = PLAIN if index in (0, 9) else SPECTRAL
        assert {k for k in keys if k.startswith(f"{name}.")} == {f"{name}.{s}" for s in suffixes}, name
    assert d.stem.weight.shape == (64, 3, 3, 3) and d.logits.weight.shape == (1, 64, 3, 3)
    assert [conv.weight_orig.shape[:2] for conv in d.down] == [(128, 64), (256, 128), (512, 256)]
    assert [conv.weight_orig.shape[-1] for conv in d.down] == [4, 4, 4]
    assert [conv.weight_orig.shape[:2] for conv in d.up] == [(256, 512), (128, 256), (64, 128)]


def test_mmagic_and_basicsr_spellings_load_alike():
    """MMagic's ``conv_{i}`` (a RealBasicVSR GAN checkpoint's ``discriminator.*``) and BasicSR's ``conv{i}`` map
    to the same names; other prefixes are left out; an unknown key under the prefix is refused by name."""
    d = UNetDiscriminator(channels=8)
    basicsr = {f"conv{i}.{k.split('.')[-1]}": v for i, name in REFERENCE_NAMES.items()
               for k, v in d.state_dict().items() if k.rsplit(".", 1)[0] == name}  # fmt: skip
    mmagic = {f"discriminator.{k.replace('conv', 'conv_')}": v for k, v in basicsr.items()}
    mmagic["generator.conv_last.weight"] = torch.zeros(1)
    assert discriminator_state_dict(basicsr).keys() == d.state_dict().keys()
    assert discriminator_state_dict(mmagic, prefix="discriminator.").keys() == d.state_dict().keys()
    with pytest.raises(KeyError, match="step_counter"):
        discriminator_state_dict({"discriminator.step_counter": torch.zeros(1)}, prefix="discriminator.")


def test_unet_discriminator_refuses_frames_it_cannot_judge():
    with pytest.raises(ValueError, match="multiples of 8"):
        UNetDiscriminator(channels=8)(torch.rand(1, 3, 20, 24))

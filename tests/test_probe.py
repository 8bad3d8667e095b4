"""The temporal-information probe: gain and receptive field, against models whose information flow is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import vsr
from vsr.metrics import psnr
from vsr.probe import TemporalProbe, field_shares, mean_gain, probe, receptive_field_profile, temporal_gain
from vsr.probe import temporal_receptive_field as field_of

T, H, W = 6, 16, 16


class TemporalMixing(nn.Module):
    """``y_i = sum_j A[i, j] x_j``: a model whose Jacobian blocks are known, ``A[i, j] I``."""

    def __init__(self, mixing: torch.Tensor):
        super().__init__()
        self.mixing = mixing

    def forward(self, x):  # (b, t, c, h, w) -> (b, t, c, h, w)
        t = x.shape[1]
        return torch.einsum("ij,bjchw->bichw", self.mixing[:t, :t].to(x), x)


def tiny(propagation: str) -> nn.Module:
    torch.manual_seed(0)
    return vsr.build_model("basicvsr_tiny", f"model.propagation={propagation}").eval()


def clip(seed: int = 0, t: int = T, scale: int = 4) -> dict:
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(t, 3, H * scale, W * scale, generator=g)
    lq = torch.nn.functional.avg_pool2d(gt, scale)
    return {"lq": lq, "gt": gt, "clip": f"clip{seed}"}


def test_field_estimates_the_jacobian_norm_of_a_known_linear_model():
    mixing = torch.tensor(np.triu(np.arange(1.0, 1.0 + T * T).reshape(T, T)) / 10)
    field = field_of(TemporalMixing(mixing), clip()["lq"], probes=8)
    exact = mixing.abs().numpy() * np.sqrt(3 * H * W)  # ||a I||_F over 3 x 16 x 16 pixels
    assert np.all(field[exact == 0] == 0)
    np.testing.assert_allclose(field[exact > 0], exact[exact > 0], rtol=0.1)


def test_a_model_that_ignores_other_frames_has_no_gain_and_a_diagonal_field():
    model = tiny("{name: local, segment_length: 1}")
    gain = temporal_gain(model, [clip(0), clip(1)])
    assert len(gain) == 2 * T and gain.gain.abs().max() < 1e-4
    field = field_of(model, clip()["lq"])
    assert np.all(field[~np.eye(T, dtype=bool)] == 0) and np.all(np.diag(field) > 0)
    shares = field_shares(field)
    np.testing.assert_allclose(shares, np.eye(T))
    profile = receptive_field_profile(field).set_index("distance").share
    assert profile[0] == pytest.approx(1.0) and profile.drop(0).abs().max() == 0


def test_a_unidirectional_model_has_exactly_zero_sensitivity_to_future_frames():
    field = field_of(tiny("unidirectional"), clip()["lq"])
    future = np.triu(np.ones((T, T), dtype=bool), k=1)
    assert np.all(field[future] == 0)
    assert np.all(field[~future] > 0), "every past frame reaches every later output"
    profile = receptive_field_profile(field).set_index("distance").share
    assert profile[profile.index > 0].max() == 0 and profile[profile.index < 0].min() > 0


def test_a_local_model_is_blind_across_segment_boundaries():
    field = field_of(tiny("{name: local, segment_length: 3}"), clip()["lq"])
    segment = np.arange(T) // 3
    same = segment[:, None] == segment[None, :]
    assert np.all(field[~same] == 0) and np.all(field[same] > 0)


def test_a_bidirectional_model_sees_both_directions():
    field = field_of(tiny("bidirectional"), clip()["lq"])
    assert np.all(field > 0)


def test_gain_is_whole_clip_minus_single_frame_psnr_and_probe_round_trips(tmp_path):
    model = tiny("bidirectional")
    clips = [clip(0), clip(1, t=4)]
    result = probe(model, clips, field_clips=1, field_frames=4)  # the field on the first 4 frames
    with torch.no_grad():
        whole = model(clips[1]["lq"][None])[0].clamp(0, 1)
        alone = torch.cat([model(clips[1]["lq"][i : i + 1][None])[0] for i in range(4)]).clamp(0, 1)
    expected = psnr(whole, clips[1]["gt"]) - psnr(alone, clips[1]["gt"])
    ours = result.gain[result.gain["clip"] == "clip1"].gain.to_numpy()
    np.testing.assert_allclose(ours, expected.numpy(), atol=1e-4)
    by_clip = result.gain.groupby("clip").gain.mean()
    assert result.mean_gain == pytest.approx(by_clip.mean()) and mean_gain(result.gain) == result.mean_gain
    assert list(result.fields) == ["clip0"] and result.field().shape == (4, 4)
    np.testing.assert_allclose(result.fields["clip0"], field_of(model, clips[0]["lq"][:4]))

    result.write(tmp_path)
    back = TemporalProbe.read(tmp_path)
    assert back.mean_gain == pytest.approx(result.mean_gain)
    np.testing.assert_allclose(back.fields["clip0"], result.fields["clip0"])
    assert back.gain_by_frame().frame.tolist() == list(range(T))


def test_chunked_restoration_gains_only_from_frames_within_each_chunk():
    """``chunk_frames`` (the protocol's ``data.val_chunk_frames``): the clip is restored chunk by chunk, so with
    1-frame chunks nothing comes from other frames, and with 2-frame chunks each frame's output is its chunk's."""
    mixing = torch.full((T, T), 0.1) + 0.5 * torch.eye(T)
    model, sample = TemporalMixing(mixing), clip(0, scale=1)
    assert temporal_gain(model, [sample], chunk_frames=1).gain.abs().max() == 0
    pairs = torch.cat([model(sample["lq"][i : i + 2][None])[0] for i in range(0, T, 2)]).clamp(0, 1)
    alone = model(sample["lq"][:, None])[:, 0].clamp(0, 1)
    expected = psnr(pairs, sample["gt"]) - psnr(alone, sample["gt"])
    np.testing.assert_allclose(temporal_gain(model, [sample], chunk_frames=2).gain, expected.numpy(), atol=1e-5)
    whole = temporal_gain(model, [sample]).gain.to_numpy()
    assert not np.allclose(whole, expected.numpy(), atol=1e-3)

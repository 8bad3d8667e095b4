"""Checkpoint loading (MMagic, BasicSR, vsr) and output equivalence with BasicSR's implementation.

Reference: BasicSR 1.4.2 (PyPI sdist) ``basicsr/archs/basicvsr_arch.py``; tolerance max abs diff <= 1e-4.
"""

import re
import sys
from pathlib import Path

import pytest
import torch

from vsr import CheckpointError, VSRError, build_model
from vsr.checkpoints import extract_state_dict, load_checkpoint, load_state_dict, read_checkpoint, save_checkpoint

DATA = Path(__file__).parent / "data"
TOLERANCE = 1e-4


def small(recipe: str, *overrides: str):
    return build_model(recipe, "model.channels=16", "model.aggregation.num_blocks=2", *overrides).eval()


def mmagic_state_from_tsv(name: str) -> dict[str, torch.Tensor]:
    """A random state dict with exactly the MMagic key names and shapes listed in the reference notes."""
    state = {}
    for line in (DATA / name).read_text().splitlines():
        key, _, shape = line.split("\t")
        state[key] = torch.randn(tuple(int(s) for s in re.findall(r"\d+", shape)))
    return state


@pytest.mark.parametrize(
    ("recipe", "tsv", "overrides"),
    [
        ("basicvsr", "keys_basicvsr_net.tsv", ()),
        ("iconvsr", "keys_iconvsr_net_p2.tsv", ()),
        ("iconvsr", "keys_iconvsr_net_p3.tsv", ("model.refill.temporal_padding=3",)),
    ],
)
def test_mmagic_checkpoint_loads_strictly(tmp_path, recipe, tsv, overrides):
    state = mmagic_state_from_tsv(tsv)
    checkpoint = {"meta": {"epoch": 1}, "state_dict": {f"generator.{k}": v for k, v in state.items()}}
    checkpoint["state_dict"]["generator.step_counter"] = torch.zeros(1)
    path = tmp_path / "mmagic.pth"
    torch.save(checkpoint, path)
    model = build_model(recipe, *overrides)
    load_checkpoint(model, path)
    ours = model.state_dict()
    assert len(ours) == len(state)
    # Every tensor arrived somewhere, unchanged (the mapping is a bijection onto our keys).
    assert sorted(v.sum().item() for v in state.values()) == pytest.approx(
        sorted(v.sum().item() for v in ours.values())
    )


def test_standalone_spynet_weights_load_into_the_flow_estimator(tmp_path):
    state = mmagic_state_from_tsv("keys_spynet.tsv")
    torch.save({"state_dict": state}, tmp_path / "spynet.pth")
    model = build_model("basicvsr")
    load_checkpoint(model, tmp_path / "spynet.pth", prefixes=["flow."])
    assert torch.equal(model.flow.levels[3][2].weight, state["basic_module.3.basic_module.1.conv.weight"])


def test_mismatch_names_missing_and_unexpected_keys(tmp_path):
    state = mmagic_state_from_tsv("keys_basicvsr_net.tsv")
    torch.save({"state_dict": state}, tmp_path / "basicvsr.pth")
    with pytest.raises(CheckpointError, match=r"missing keys: refill\.extractor.*unexpected keys: propagation\.fusion"):
        load_checkpoint(build_model("iconvsr"), tmp_path / "basicvsr.pth")
    with pytest.raises(CheckpointError, match=r"shape mismatches: .*\(64, 67, 3, 3\) vs model \(16, 19, 3, 3\)"):
        load_checkpoint(small("basicvsr"), tmp_path / "basicvsr.pth")


def test_arbitrary_pickles_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "payload": Path("x")}, path)  # a non-tensor object needs full unpickling
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_checkpoint(build_model("basicvsr"), path)


def test_vsr_checkpoint_round_trip(tmp_path):
    model = small("iconvsr")
    save_checkpoint(model, tmp_path / "ours.pth", recipe={"name": "x"}, iteration=7)
    other = small("iconvsr")
    raw = load_checkpoint(other, tmp_path / "ours.pth")
    assert raw["iteration"] == 7
    for (k, a), b in zip(model.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert not list(tmp_path.glob("*.tmp"))


def test_safetensors_checkpoint(tmp_path):
    from safetensors.torch import save_file

    model = small("basicvsr")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "w.safetensors")
    other = small("basicvsr")
    load_checkpoint(other, tmp_path / "w.safetensors")
    assert torch.equal(other.upsampling.conv_last.weight, model.upsampling.conv_last.weight)


def _basicsr_to_mmagic(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Independent inverse of the MMagic->BasicSR renames (from the reference notes' mapping table)."""
    out = {}
    for k, v in state.items():
        k = re.sub(
            r"spynet\.basic_module\.(\d+)\.basic_module\.(\d+)\.",
            lambda m: f"spynet.basic_module.{m[1]}.basic_module.{int(m[2]) // 2}.conv.",
            k,
        )
        k = (
            k.replace("_trunk.", "_resblocks.")
            .replace("upconv1.", "upsample1.upsample_conv.")
            .replace("upconv2.", "upsample2.upsample_conv.")
        )
        out[k] = v
    return out


@torch.no_grad()
def test_basicvsr_matches_basicsr(basicsr_archs):
    """Same weights, same input: our BasicVSR equals BasicSR's (max abs diff <= 1e-4), via both namings."""
    reference = basicsr_archs.BasicVSR(num_feat=16, num_block=2).eval()
    lrs = torch.rand(2, 5, 3, 36, 44)
    expected = reference(lrs)
    ours = small("basicvsr")
    load_state_dict(ours, extract_state_dict({"params": reference.state_dict()}))
    assert (ours(lrs) - expected).abs().max() <= TOLERANCE
    mmagic = small("basicvsr")
    load_state_dict(mmagic, extract_state_dict({"state_dict": _basicsr_to_mmagic(reference.state_dict())}))
    assert (mmagic(lrs) - expected).abs().max() <= TOLERANCE


@torch.no_grad()
def test_mirror_shortcut_keeps_the_output(basicsr_archs):
    """Vimeo-style mirrored clips reuse the backward flows; the output still equals BasicSR's (which does not)."""
    reference = basicsr_archs.BasicVSR(num_feat=16, num_block=2).eval()
    half = torch.rand(1, 4, 3, 36, 40)
    lrs = torch.cat([half, half.flip(1)], dim=1)
    ours = small("basicvsr")
    load_state_dict(ours, extract_state_dict({"params": reference.state_dict()}))
    calls = []
    ours.flow.register_forward_hook(lambda *a: calls.append(1))
    assert (ours(lrs) - reference(lrs)).abs().max() <= TOLERANCE
    assert len(calls) == 1  # one SPyNet pass instead of two


@torch.no_grad()
@pytest.mark.parametrize("padding", [2, 3])
def test_iconvsr_matches_basicsr(basicsr_archs, padding):
    """IconVSR (coupled propagation + EDVR-M refill), odd spatial size to exercise the reflect padding."""
    reference = basicsr_archs.IconVSR(num_feat=16, num_block=2, keyframe_stride=3, temporal_padding=padding).eval()
    lrs = torch.rand(1, 8, 3, 34, 37)
    ours = small("iconvsr", "model.refill.keyframe_stride=3", f"model.refill.temporal_padding={padding}")
    load_state_dict(ours, extract_state_dict({"params": reference.state_dict()}))
    assert (ours(lrs) - reference(lrs)).abs().max() <= TOLERANCE


def test_full_size_parameter_counts_match_basicsr(basicsr_archs):
    for recipe, reference in [
        ("basicvsr", basicsr_archs.BasicVSR(num_feat=64, num_block=30)),
        ("iconvsr", basicsr_archs.IconVSR(num_feat=64, num_block=30, keyframe_stride=5, temporal_padding=2)),
    ]:
        ours = build_model(recipe)
        load_state_dict(ours, extract_state_dict({"params_ema": reference.state_dict()}))
        assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters())


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda path, good: path.write_bytes(b""), r"not a checkpoint: .*bad\.pth: the file is empty \(0 bytes\)"),
        (lambda path, good: path.write_text("weights\n"), r"not a checkpoint: .*bad\.pth: it is a text file"),
        (lambda path, good: path.write_bytes(good.read_bytes()[:2000]), r"bad\.pth: the file is truncated \(2,000"),
        (lambda path, good: torch.save([torch.zeros(1)], path), r"bad\.pth holds a list, not a mapping of weights"),
    ],
    ids=["empty", "text", "truncated", "list"],
)
def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path, write, message):
    good = save_checkpoint(torch.nn.Linear(64, 64), tmp_path / "good.pth")
    write(tmp_path / "bad.pth", good)
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(tmp_path / "bad.pth")


def test_a_checkpoints_recipe_never_imports_a_module(tmp_path, monkeypatch):
    """A vsr checkpoint's recipe may name plugin modules; loading it imports none (a checkpoint from elsewhere
    must not run code, which weights_only unpickling guards against) and says which --import to pass."""
    from vsr.checkpoints import pretrained_model
    from vsr.recipe import load_recipe

    monkeypatch.chdir(tmp_path)
    (tmp_path / "planted_module.py").write_text("open('ran', 'w').write('code ran')\n")
    model = build_model("basicvsr_tiny")
    recipe = load_recipe("basicvsr_tiny").to_dict() | {"imports": ["planted_module"]}
    save_checkpoint(model, tmp_path / "shared.pth", recipe)
    with pytest.raises(VSRError, match=r"checkpoint .*shared\.pth uses parts of the plugin module\(s\) planted_module, "
                                      r"which vsr does not import .*: pass --import planted_module"):  # fmt: skip
        pretrained_model(tmp_path / "shared.pth")
    assert not (tmp_path / "ran").exists() and "planted_module" not in sys.modules

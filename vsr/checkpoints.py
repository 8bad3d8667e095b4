"""Load MMagic, BasicSR and vsr checkpoints into vsr models; save vsr's own, atomically, and BasicSR's.

RealBasicVSR's checkpoints (MMagic's ``RealBasicVSRNet``) hold a BasicVSR under ``basicvsr.`` and the cleaning
module under ``image_cleaning.``: the prefix is dropped and the cleaning module renamed with the BasicSR rules.
An MMagic restorer's file holds the generator twice, ``generator.`` and its moving average ``generator_ema.``
(what MMagic tests and infers with, and what vsr loads unless asked for ``params``), beside the training-only
weights of :data:`MMAGIC_TRAINING_ONLY`, which are ignored.

Nothing is unpickled beyond tensors and plain containers (``torch.load(weights_only=True)``, or
safetensors). The reference toolkits name the same weights differently; both naming schemes are translated
to vsr's module tree by the ordered rename rules below (MMagic -> BasicSR -> vsr), and vsr's back to
BasicSR's by their inverse (:func:`save_basicsr_checkpoint`: a file BasicSR's ``load_network`` loads).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from vsr.atomic import atomic_open
from vsr.errors import CheckpointError, shorten
from vsr.model import build_model
from vsr.recipe import stored_recipe
from vsr.zoo import ZOO, resolve_checkpoint

log = logging.getLogger("vsr")

# MMagic / MMEditing -> BasicSR names (MMagic uses ConvModule wrappers: `.conv.` inside).
MMAGIC_TO_BASICSR: list[tuple[str, str]] = [
    (
        r"^spynet\.basic_module\.(\d+)\.basic_module\.(\d+)\.conv\.",
        lambda m: f"spynet.basic_module.{m[1]}.basic_module.{2 * int(m[2])}.",
    ),
    (r"^(backward|forward)_resblocks\.", r"\1_trunk."),
    (r"^upsample(\d)\.upsample_conv\.", r"upconv\1."),
    (r"^edvr\.feat_l(\d)_conv(\d)\.", r"edvr.conv_l\1_\2."),
    (r"^edvr\.pcd_alignment\.", r"edvr.pcd_align."),
    (r"^(edvr\..*)\.conv\.(weight|bias)$", r"\1.\2"),
]  # fmt: skip

# BasicSR -> vsr names.
BASICSR_TO_VSR: list[tuple[str, str]] = [
    # RealBasicVSR's cleaning module (an nn.Sequential: BasicVSR's ResidualBlocksWithInputConv, then a conv)
    (r"^image_cleaning\.0\.main\.0\.", r"cleaning.trunk.input_conv."),
    (r"^image_cleaning\.0\.main\.2\.", r"cleaning.trunk.blocks."),
    (r"^image_cleaning\.1\.", r"cleaning.output_conv."),
    (r"^spynet\.basic_module\.(\d+)\.basic_module\.", r"flow.levels.\1."),
    (r"^spynet\.(mean|std)$", r"flow.\1"),
    (r"^(backward|forward)_trunk\.main\.0\.", r"propagation.\1_aggregation.input_conv."),
    (r"^(backward|forward)_trunk\.main\.2\.", r"propagation.\1_aggregation.blocks."),
    (r"^fusion\.", r"propagation.fusion.conv."),
    (r"^upconv(\d)\.", lambda m: f"upsampling.stages.{int(m[1]) - 1}.conv."),
    (r"^conv_(hr|last)\.", r"upsampling.conv_\1."),
    (r"^edvr\.", r"refill.extractor."),
    (r"^(backward|forward)_fusion\.", r"refill.\1_fusion."),
    # BasicVSR++ (MMagic's names are the same apart from SPyNet and the upsampler, renamed above)
    (r"^feat_extract\.main\.0\.", r"propagation.feature_extractor.input_conv."),
    (r"^feat_extract\.main\.2\.", r"propagation.feature_extractor.blocks."),
    (r"^deform_align\.(\w+)\.", r"propagation.\1_alignment."),
    (r"^backbone\.(\w+)\.main\.0\.", r"propagation.\1_aggregation.input_conv."),
    (r"^backbone\.(\w+)\.main\.2\.", r"propagation.\1_aggregation.blocks."),
    (r"^reconstruction\.main\.0\.", r"propagation.reconstruction.input_conv."),
    (r"^reconstruction\.main\.2\.", r"propagation.reconstruction.blocks."),
]

# vsr -> BasicSR names: the inverse of BASICSR_TO_VSR (checked by translating back, in to_basicsr_names).
VSR_TO_BASICSR: list[tuple[str, str]] = [
    (r"^flow\.levels\.(\d+)\.", r"spynet.basic_module.\1.basic_module."),
    (r"^flow\.(mean|std)$", r"spynet.\1"),
    (r"^propagation\.(backward|forward)_aggregation\.input_conv\.", r"\1_trunk.main.0."),
    (r"^propagation\.(backward|forward)_aggregation\.blocks\.", r"\1_trunk.main.2."),
    (r"^propagation\.fusion\.conv\.", r"fusion."),
    (r"^upsampling\.stages\.(\d+)\.conv\.", lambda m: f"upconv{int(m[1]) + 1}."),
    (r"^upsampling\.conv_(hr|last)\.", r"conv_\1."),
    (r"^refill\.extractor\.", r"edvr."),
    (r"^refill\.(backward|forward)_fusion\.", r"\1_fusion."),
    # BasicVSR++ (branches backward_1, forward_1, ...)
    (r"^propagation\.feature_extractor\.input_conv\.", r"feat_extract.main.0."),
    (r"^propagation\.feature_extractor\.blocks\.", r"feat_extract.main.2."),
    (r"^propagation\.(\w+)_alignment\.", r"deform_align.\1."),
    (r"^propagation\.(\w+)_aggregation\.input_conv\.", r"backbone.\1.main.0."),
    (r"^propagation\.(\w+)_aggregation\.blocks\.", r"backbone.\1.main.2."),
    (r"^propagation\.reconstruction\.input_conv\.", r"reconstruction.main.0."),
    (r"^propagation\.reconstruction\.blocks\.", r"reconstruction.main.2."),
]  # fmt: skip

VSR_FORMAT = "vsr-checkpoint-v1"

#: The generator's prefixes in an MMagic restorer's state dict, by the ``param_key`` that picks each.
MMAGIC_GENERATORS = {"params": "generator.", "params_ema": "generator_ema."}
#: What else an MMagic restorer's file holds, ignored when loading a generator: the GAN stage's discriminator,
#: the VGG of its perceptual loss, and MMagic 0.x's persistent iteration counter.
MMAGIC_TRAINING_ONLY = ("discriminator.", "perceptual_loss.", "step_counter")


def _rename(state: Mapping[str, Tensor], rules) -> dict[str, Tensor]:
    out = {}
    for key, value in state.items():
        for pattern, replacement in rules:
            key = re.sub(pattern, replacement, key)
        out[key] = value
    return out


def detect_naming(keys) -> str:
    """``"mmagic"``, ``"basicsr"`` or ``"vsr"`` from the parameter names of a state dict."""
    keys = list(keys)
    if any(k.startswith(("flow.", "propagation.", "upsampling.", "refill.", "cleaning.")) for k in keys):
        return "vsr"
    if any(re.search(r"_resblocks\.|upsample_conv\.|basic_module\.\d+\.conv\.|pcd_alignment\.", k) for k in keys):
        return "mmagic"
    return "basicsr"


def to_vsr_names(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Translate an MMagic or BasicSR state dict to vsr's names (a vsr one is returned unchanged)."""
    # RealBasicVSR wraps its BasicVSR as `basicvsr.` (MMagic, and the third-party BasicSR-named ports).
    state = {k.removeprefix("basicvsr."): v for k, v in state.items() if k != "step_counter"}
    if state and all(k.startswith("basic_module.") or k in ("mean", "std") for k in state):  # SPyNet alone
        state = {f"spynet.{k}": v for k, v in state.items()}
    naming = detect_naming(state)
    if naming == "mmagic":
        state = _rename(state, MMAGIC_TO_BASICSR)
        naming = "basicsr"
    if naming == "basicsr":
        state = _rename(state, BASICSR_TO_VSR)
    return state


READS = "vsr reads torch.save files of tensors (loaded with weights_only=True) and .safetensors files"


def _not_a_checkpoint(path: Path, err: Exception) -> CheckpointError:
    """The error for a file that does not load: empty, text, truncated, or holding more than tensors."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if not head:
        why = "the file is empty (0 bytes)"
    elif b"\0" not in head and head.isascii():
        why = "it is a text file"
    elif "central directory" in str(err) or isinstance(err, EOFError):
        why = f"the file is truncated ({path.stat().st_size:,} bytes): it was cut short while being written or copied"
    else:
        line = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
        why = shorten(re.split(r"(?<=\.)\s", line.strip())[0].rstrip("."), 200)
    return CheckpointError(f"not a checkpoint: {path}: {why}. {READS}; pass one of those, or a published name")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint file safely: ``.safetensors`` or a ``torch.save`` file of tensors and containers.

    A file that is empty, truncated, text, or not a mapping fails with a :class:`CheckpointError` naming it
    ("not a checkpoint: ...")."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            raw = load_file(str(path))
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors, truncated files, unsafe globals
        raise _not_a_checkpoint(path, err) from None
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"not a checkpoint: {path} holds a {type(raw).__name__}, not a mapping of weights")
    return raw


def extract_state_dict(
    checkpoint: Mapping[str, Any], param_key: str | None = None, source: str = "the checkpoint"
) -> dict[str, Tensor]:
    """The model weights inside a checkpoint of any supported format, in vsr's names (``source`` names the file
    in messages).

    * vsr: ``{"format": "vsr-checkpoint-v1", "model": {...}, ...}``, and with a moving average of the weights
      (``train.ema``) also ``"params_ema"``: the average unless ``param_key="params"`` (the trained weights);
    * MMagic: ``{"meta": ..., "state_dict": {"generator.<name>": ...}}``, and with a moving average also
      ``generator_ema.<name>``: the average unless ``param_key="params"`` (:func:`mmagic_generator`);
    * BasicSR: ``{"params": {...}}`` and/or ``{"params_ema": {...}}`` (``param_key`` picks; ``params`` first);
    * a bare state dict.
    """
    if checkpoint.get("format") == VSR_FORMAT:
        if param_key == "params_ema" and "params_ema" not in checkpoint:
            raise CheckpointError("vsr checkpoint has no 'params_ema' (it was trained without train.ema)")
        averaged = "params_ema" in checkpoint and param_key != "params"
        if not averaged and "model" not in checkpoint:
            held = _describe(sorted(map(str, checkpoint)))
            raise CheckpointError(
                f"{source} is a vsr checkpoint without its 'model' (the weights); it holds only {held}. It was damaged "
                "or edited: use another checkpoint of the run (checkpoints/last.pth, best.pth)"
            )
        state = checkpoint["params_ema"] if averaged else checkpoint["model"]
    elif "state_dict" in checkpoint:
        state = mmagic_generator(checkpoint["state_dict"], param_key)
    elif "params" in checkpoint or "params_ema" in checkpoint:
        key = param_key or ("params" if "params" in checkpoint else "params_ema")
        if key not in checkpoint:
            raise CheckpointError(f"BasicSR checkpoint has no '{key}'; it has {sorted(checkpoint)}")
        state = checkpoint[key]
    else:
        state = checkpoint
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError("checkpoint does not hold a state dict of tensors")
    return to_vsr_names(state)


def weights_and_average(checkpoint: Mapping[str, Any]) -> tuple[str, str] | None:
    """Where ``checkpoint`` holds the trained weights and their moving average, when it holds both: vsr's
    ``("model", "params_ema")``, an MMagic restorer's ``("generator.", "generator_ema.")`` or BasicSR's
    ``("params", "params_ema")``; None for a file of one set. :func:`extract_state_dict` takes the first with
    ``param_key="params"`` and the second with ``param_key="params_ema"``."""
    if checkpoint.get("format") == VSR_FORMAT:
        names = ("model", "params_ema")
    elif "state_dict" in checkpoint:
        state = checkpoint["state_dict"]
        prefixes = tuple(MMAGIC_GENERATORS.values())
        held = isinstance(state, Mapping) and all(any(str(k).startswith(p) for k in state) for p in prefixes)
        return prefixes if held else None
    else:
        names = ("params", "params_ema")
    return names if all(name in checkpoint for name in names) else None


def mmagic_generator(state: Mapping[str, Any], param_key: str | None = None) -> Mapping[str, Any]:
    """The generator of an MMagic restorer's state dict, its prefix removed: ``generator_ema.`` (the moving
    average, which MMagic infers with) where the file has one unless ``param_key="params"``, else
    ``generator.``. The keys of :data:`MMAGIC_TRAINING_ONLY` are ignored; any other key beside the generators
    is ignored with a warning naming it. A state dict without a ``generator.`` prefix is returned as it is."""
    if not isinstance(state, Mapping) or not any(k.startswith(tuple(MMAGIC_GENERATORS.values())) for k in state):
        return state
    if param_key not in (None, *MMAGIC_GENERATORS):
        raise CheckpointError(f"param_key {param_key!r} of an MMagic checkpoint: use params or params_ema")
    has_ema = any(k.startswith(MMAGIC_GENERATORS["params_ema"]) for k in state)
    if param_key == "params_ema" and not has_ema:
        raise CheckpointError("MMagic checkpoint has no 'generator_ema.' weights (it was trained without EMA)")
    prefix = MMAGIC_GENERATORS["params_ema" if has_ema and param_key != "params" else "params"]
    other = [k for k in state if not k.startswith((*MMAGIC_GENERATORS.values(), *MMAGIC_TRAINING_ONLY))]
    if other:
        log.warning("ignored in the MMagic checkpoint (neither generator nor training-only): %s", _describe(other))
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}


def to_basicsr_names(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Translate a vsr state dict to BasicSR's names (its BasicVSR, IconVSR and BasicVSR++ archs). A weight
    that has no BasicSR name (a component those archs lack) fails with a :class:`CheckpointError` naming it."""
    out, foreign = {}, []
    for key, value in state.items():
        name = next(iter(_rename({key: value}, VSR_TO_BASICSR)))
        if detect_naming([name]) == "vsr" or _rename({name: value}, BASICSR_TO_VSR).keys() != {key}:
            foreign.append(key)
        out[name] = value
    if foreign:
        raise CheckpointError(
            f"no BasicSR name for {_describe(foreign)}: BasicSR's archs (BasicVSR, IconVSR, BasicVSR++) have no "
            "such weights. Only models built from the components of those three have a BasicSR form"
        )
    return out


def _describe(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", … ({len(keys)} in all)" if len(keys) > limit else "")


def load_state_dict(model: nn.Module, state: Mapping[str, Tensor], strict: bool = True, prefixes=None) -> None:
    """Copy ``state`` into ``model``; with ``strict`` every key must match in name and shape.

    ``prefixes`` restricts loading to parameters under those prefixes (e.g. ``["flow."]``), non-strictly.
    """
    own = model.state_dict()
    if prefixes:
        state = {k: v for k, v in state.items() if k.startswith(tuple(prefixes))}
        own = {k: v for k, v in own.items() if k.startswith(tuple(prefixes))}
        if not state:
            raise CheckpointError(f"checkpoint has no weights under {list(prefixes)}")
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if mismatched or (strict and (missing or unexpected)):
        parts = []
        if missing:
            parts.append(f"missing keys: {_describe(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_describe(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatches: {_describe(mismatched)}")
        raise CheckpointError(
            "checkpoint does not match the model (" + "; ".join(parts) + "). Check that the recipe matches the "
            "checkpoint (e.g. iconvsr vs basicvsr, model.channels, model.aggregation.num_blocks)"
        )
    with torch.no_grad():
        for key, value in state.items():
            if key in own:
                own[key].copy_(value.to(own[key].dtype))


def load_checkpoint(
    model: nn.Module, checkpoint: str | Path, strict: bool = True, param_key: str | None = None, prefixes=None
) -> dict[str, Any]:
    """Load a checkpoint (path or model-zoo name, see :mod:`vsr.zoo`) into ``model``; returns the raw file."""
    path = resolve_checkpoint(checkpoint)
    raw = read_checkpoint(path)
    load_state_dict(model, extract_state_dict(raw, param_key, str(path)), strict=strict, prefixes=prefixes)
    return raw


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename: a crash never leaves half a file, and
    a full disk is an ``OSError`` naming ``path`` (not torch's "unexpected pos"), the old file left whole."""
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)
    return Path(path)


def save_checkpoint(model: nn.Module, path: str | Path, recipe: dict | None = None, **extra: Any) -> Path:
    """Save a vsr checkpoint: the model's weights, the resolved recipe and any ``extra`` training state."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return atomic_save({"format": VSR_FORMAT, "model": state, "recipe": recipe, **extra}, path)


#: Beside BasicSR's ``params`` in a file vsr export wrote: what lets ``vsr export --overwrite`` replace it.
EXPORT_KEY = "vsr_export"


def save_basicsr_checkpoint(checkpoint: str | Path | Mapping[str, Any], path: str | Path) -> Path:
    """Write the weights of ``checkpoint`` (a file, a zoo name or a read checkpoint) as BasicSR saves a network,
    in BasicSR's names: ``{"params": trained}``, and with a moving average (``train.ema``) also
    ``"params_ema"``, which BasicSR's ``load_network(net, path, param_key="params_ema")`` loads (its test
    option ``param_key_g: params_ema``). Names only: BasicSR's strict load checks that its arch has the widths
    of these weights. :data:`EXPORT_KEY` marks the file as vsr's."""
    if not isinstance(checkpoint, Mapping):
        checkpoint = read_checkpoint(resolve_checkpoint(checkpoint))
    saved: dict[str, Any] = {"params": to_basicsr_names(extract_state_dict(checkpoint, param_key="params"))}
    if "params_ema" in checkpoint:
        saved["params_ema"] = to_basicsr_names(extract_state_dict(checkpoint, param_key="params_ema"))
    saved[EXPORT_KEY] = {"written_by": "vsr"}  # BasicSR reads its param_key alone; --overwrite checks this
    return atomic_save(saved, path)


def pretrained_model(model: str | Path, checkpoint: str | Path | None = None, overrides=()) -> nn.Module:
    """A model with weights, from what a user names:

    * a published checkpoint's name (``basicvsr_reds4``): its recipe and weights;
    * a vsr checkpoint file: the recipe saved in it and its weights;
    * a recipe (path or shipped name) together with ``checkpoint`` (a file of any supported format or a name).
    """
    name = str(model)
    if name in ZOO and not Path(name).is_file():
        entry = ZOO[name]
        net = build_model(entry.recipe, *entry.overrides, *overrides)
        load_checkpoint(net, checkpoint or name)
        return net
    path = Path(name)
    if path.is_file() and path.suffix in (".pth", ".pt", ".ckpt", ".safetensors"):
        raw = read_checkpoint(path)
        if raw.get("format") == VSR_FORMAT and raw.get("recipe") and not isinstance(raw["recipe"], Mapping):
            raise CheckpointError(
                f"{path}: its recipe is a {type(raw['recipe']).__name__}, not a mapping (the file was damaged or "
                "edited): name the recipe as MODEL and pass this file as --checkpoint"
            )
        if raw.get("format") != VSR_FORMAT or not raw.get("recipe"):
            raise CheckpointError(
                f"{path} holds no recipe (it is not a vsr checkpoint): name the recipe as MODEL and pass this file "
                "as --checkpoint, e.g. vsr upscale basicvsr in.mp4 -o out.mp4 --checkpoint " + str(path)
            )
        state = extract_state_dict(raw, source=str(path))  # before building: a damaged file fails at once
        net = build_model(stored_recipe(raw["recipe"], f"checkpoint {path}"), *overrides)
        load_state_dict(net, state)
        return net
    if checkpoint is None:
        raise CheckpointError(
            f"{name} is a recipe without weights: pass --checkpoint (a file or one of: {', '.join(ZOO)})"
        )
    net = build_model(name, *overrides)
    load_checkpoint(net, checkpoint)
    return net

"""What a run trains, how it takes a step, and how it is scored: the ``objective`` kind (``train.objective``).

* ``sr`` trains the whole network on LR -> GT clips with the weighted losses ``train.losses`` (Charbonnier,
  eps 1e-12, in the papers) and validates the recipe's ``data.val_metrics`` (PSNR and SSIM by default)
  exactly as ``vsr test`` reports them.
* ``flow`` trains only the flow estimator ``model.flow`` on the data set's true optical flow (end-point
  error at LR resolution), to pretrain it where no pretrained SPyNet can be downloaded. Its checkpoint
  starts SR runs through ``train.init`` with ``train.init_prefixes: [flow.]``.
* ``realbasicvsr_wogan`` and ``realbasicvsr_gan`` are RealBasicVSR's two stages, in modules of their own
  (:mod:`vsr.training.realbasicvsr`, :mod:`vsr.training.gan`).

An objective owns its training step (:meth:`Objective.step`): the default takes one optimiser step on
:meth:`Objective.loss`; an objective that trains more (a GAN's discriminator, with an optimiser of its own)
declares its parts in :meth:`Objective.training_parts` and alternates them in its ``step``. A new objective
is a registered subclass (``@register("objective", "<name>")``); its constructor arguments beyond ``recipe``
and ``device`` are its recipe arguments (``train.objective: {name: <name>, <argument>: ...}``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vsr.data.datasets import TestClips
from vsr.data.layouts import ClipSet
from vsr.evaluate import Bicubic, Protocol, bicubic_upsample, measure, restore
from vsr.losses import build_losses, endpoint_error
from vsr.metrics import vimeo_center_frame
from vsr.model import assemble
from vsr.recipe import Recipe
from vsr.registry import build, declare_kind, register
from vsr.training.optim import build_optimizer
from vsr.training.schedule import build_scheduler
from vsr.training.steps import MAIN, StepContext, TrainingParts


@declare_kind("objective", wired=("recipe", "device"))
class Objective:
    """Interface of the ``objective`` kind: ``build_model``, ``training_parts``, ``step``, ``validate``.

    ``build_model`` is the network that is saved and exported; ``training_parts`` what trains it (by default
    Adam and the schedule of the ``train`` keys, under the name ``model``); ``step`` one training step on a
    batch, returning the scalars to log (``loss`` among them, the one the run checks for divergence).
    ``validate`` returns the metrics of the current weights; ``baseline`` those of the trivial predictor
    (bicubic upsampling, zero flow). ``primary`` is the metric that picks ``best.pth``. ``example`` is an
    image that shows the current weights at work (TensorBoard's ``val/<example_name>``), or None."""

    primary: str = ""
    baseline_name: str = ""
    higher_is_better: bool = True
    with_flow: bool = False
    validate_first: bool = False  # also validate the initial weights (cheap for flow: "EPE before")
    example_name: str = "example"

    def __init__(self, recipe: Recipe, device: torch.device):
        self.recipe, self.device = recipe, device
        self.val_source: ClipSet | None = None

    def build_model(self) -> nn.Module:
        raise NotImplementedError  # pragma: no cover - interface

    def training_parts(self, model: nn.Module) -> TrainingParts:
        """The optimisers and schedules (and any other trained module) of the run: Adam and the schedule of
        the ``train`` keys for ``model``, under the name ``model``."""
        optimizer = build_optimizer(model, self.recipe.train)
        return TrainingParts({MAIN: optimizer}, {MAIN: build_scheduler(optimizer, self.recipe.train)})

    def step(self, batch: Mapping[str, Any], run: StepContext) -> dict[str, Tensor]:
        """One training step: the loss of ``batch`` (and its terms), one step of the ``model`` optimiser."""
        with run.autocast():
            loss = self.loss(run.net, batch)
        total, terms = loss if isinstance(loss, tuple) else (loss, {})
        run.optimise(MAIN, total)
        return {"loss": total, **(terms if len(terms) > 1 else {})}

    def loss(self, net: nn.Module, batch: Mapping[str, Any]) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """The default step's loss: a scalar, or the total and its terms by name."""
        raise NotImplementedError  # pragma: no cover - interface

    def validate(self, model: nn.Module) -> dict[str, float]:
        raise NotImplementedError  # pragma: no cover - interface

    def baseline(self) -> dict[str, float]:
        raise NotImplementedError  # pragma: no cover - interface

    def example(self, model: nn.Module) -> Tensor | None:
        return None

    @property
    def directions(self) -> dict[str, bool]:
        """Whether higher is better, for each metric ``validate`` returns."""
        return {self.primary: self.higher_is_better}

    def better(self, value: float, best: float | None) -> bool:
        return best is None or (value > best if self.higher_is_better else value < best)


@register("objective", "sr")
class SuperResolution(Objective):
    """Train the whole network: ``net(lq)`` against ``gt`` with ``train.losses``; validate the recipe's
    ``data.val_metrics`` with :func:`vsr.evaluate.measure` (exactly what ``vsr test`` reports) under its
    ``data.val_*``."""

    baseline_name = "bicubic"
    example_name = "bicubic_output_gt"

    def __init__(self, recipe: Recipe, device: torch.device):
        super().__init__(recipe, device)
        self.losses = build_losses(recipe.train["losses"]).to(device)
        self.protocol = Protocol.from_recipe(recipe)
        # best.pth follows the first of data.val_metrics, in its direction (lower is better for some)
        self.primary = self.protocol.primary
        self.higher_is_better = self.protocol.scorers[0].higher_is_better
        self._directions = {
            n: m.higher_is_better for n, m in zip(self.protocol.names, self.protocol.scorers, strict=True)
        }
        self._clips: TestClips | None = None

    @property
    def directions(self) -> dict[str, bool]:
        return dict(self._directions)

    def build_model(self) -> nn.Module:
        return assemble(self.recipe.model)

    def loss(self, net: nn.Module, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        return self.losses(net(batch["lq"]), batch["gt"])

    @property
    def clips(self) -> TestClips:
        """The validation clips, read once (frames stay cached between validations)."""
        if self._clips is None:
            self._clips = self.protocol.test_clips(self.val_source)
        return self._clips

    def validate(self, model: nn.Module) -> dict[str, float]:
        return self._scores(model, self.device)

    def baseline(self) -> dict[str, float]:
        return self._scores(Bicubic(self.clips.source.scale), torch.device("cpu"))

    def example(self, model: nn.Module) -> Tensor:
        """The middle frame of the first validation clip (its centre frame under the Vimeo-90K-T protocol) as
        bicubic | output | GT side by side, ``(3, H, 3W)`` in [0, 1]."""
        model.eval()
        sample = self.clips[0]
        out = restore(model, sample["lq"], self.device)
        if self.protocol.center_frame:
            out, lq, gt = (
                vimeo_center_frame(out[None], mirrored=True)[0],
                sample["lq"][sample["center"]],
                sample["gt"][0],
            )
        else:
            middle = out.shape[0] // 2
            out, lq, gt = out[middle], sample["lq"][middle], sample["gt"][middle]
        bicubic = bicubic_upsample(lq, self.clips.source.scale)
        return torch.cat([bicubic, out.clamp(0, 1), gt], dim=-1)

    def _scores(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        return measure(model, self.clips, self.protocol, device, bicubic=False).means()


class FlowPretraining(nn.Module):
    """The recipe's flow estimator alone, under the attribute ``flow``: its checkpoint keys (``flow.*``)
    load into the full model. ``forward(lrs (n, t, 3, h, w))`` returns the flows between consecutive
    frames in both directions, ``next`` (frame k -> k+1) and ``prev`` (k+1 -> k), each ``(n, t-1, 2, h, w)``."""

    def __init__(self, flow: nn.Module):
        super().__init__()
        self.flow = flow

    def forward(self, lrs: Tensor) -> tuple[Tensor, Tensor]:
        n, t = lrs.shape[:2]
        current, following = lrs[:, :-1].flatten(0, 1), lrs[:, 1:].flatten(0, 1)
        both = self.flow(torch.cat([current, following]), torch.cat([following, current]))
        flow_next, flow_prev = both.unflatten(0, (2, n, t - 1))
        return flow_next, flow_prev


@register("objective", "flow")
class FlowObjective(Objective):
    """Pretrain ``model.flow`` on the data set's true flows (embedded set): end-point error between the
    estimated and true LR-resolution flows, both directions of every consecutive frame pair. Validation is
    the EPE on the whole validation clips; the baseline is the EPE of predicting zero flow."""

    primary = "epe"
    baseline_name = "zero flow"
    higher_is_better = False
    with_flow = True
    validate_first = True

    def __init__(self, recipe: Recipe, device: torch.device):
        super().__init__(recipe, device)
        self._clips: TestClips | None = None

    def build_model(self) -> nn.Module:
        entry = dict(self.recipe.model["flow"])
        return FlowPretraining(build("flow", entry.pop("name"), entry, key="model.flow"))

    def loss(self, net: nn.Module, batch: Mapping[str, Any]) -> Tensor:
        flow_next, flow_prev = net(batch["lq"])
        return endpoint_error(torch.cat([flow_next, flow_prev]), torch.cat([batch["flow_next"], batch["flow_prev"]]))

    def _pairs(self) -> Iterator[tuple[str, Tensor, Tensor]]:
        """(clip, LR frames (t, 3, h, w), true flows next+prev (2, t-1, 2, h, w)) of each validation clip."""
        if self._clips is None:
            self._clips = TestClips(self.val_source, max_frames=self.recipe.data["val_max_frames"], cache_frames=None)
        clips = self._clips
        for index, clip in enumerate(self.val_source.clips):
            sample = clips[index]
            t = sample["lq"].shape[0]
            (gh, gw), _ = clips.reader.sizes[index]
            flows = []
            for direction in (0, 1):
                paths = [clip.flow_paths(i)[direction] for i in range(t - 1)]
                flows.append(clips.reader.flows(paths, (0, gh, 0, gw)))
            yield clip.name, sample["lq"], torch.stack(flows)

    @torch.no_grad()
    def validate(self, model: nn.Module) -> dict[str, float]:
        model.eval()
        per_clip = []
        for _, lq, true in self._pairs():
            flow_next, flow_prev = model(lq[None].to(self.device))
            per_clip.append(endpoint_error(torch.stack([flow_next[0], flow_prev[0]]).float().cpu(), true).item())
        return {"epe": float(np.mean(per_clip))}

    def baseline(self) -> dict[str, float]:
        return {"epe": float(np.mean([endpoint_error(torch.zeros_like(t), t).item() for _, _, t in self._pairs()]))}


__all__ = ["FlowObjective", "FlowPretraining", "Objective", "SuperResolution"]

# Objectives in modules of their own register when the kind's home is imported (RealBasicVSR's two stages).
from vsr.training import gan, realbasicvsr  # noqa: E402, F401

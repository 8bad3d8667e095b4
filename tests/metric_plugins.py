"""Metrics registered from outside vsr for the metric seam's tests (tests/test_evaluate.py, test_reports.py,
test_studies.py): a lower-is-better one and a no-reference one. A study file names this module in its
``imports:``."""

from __future__ import annotations

from torch import Tensor

from vsr.metrics import Metric
from vsr.registry import register


@register("metric", "abs_error")
class AbsoluteError(Metric):
    """Mean absolute error per frame on the 0..255 scale, after the protocol's border crop (RGB only)."""

    higher_is_better, unit, needs_gt, label, digits = False, "levels", True, "AbsErr", 3

    def per_frame(self, pred: Tensor, gt: Tensor | None) -> Tensor:
        b = self.crop_border
        if b:
            pred, gt = pred[..., b:-b, b:-b], gt[..., b:-b, b:-b]
        return (pred.double().clamp(0, 1) - gt.double().clamp(0, 1)).abs().mul(255).flatten(-3).mean(-1)


@register("metric", "brightness")
class Brightness(Metric):
    """A no-reference score: the mean level of the restored frame on the 0..255 scale (it must see no GT)."""

    higher_is_better, unit, needs_gt, label, digits = True, "", False, "Brightness", 2

    def per_frame(self, pred: Tensor, gt: Tensor | None) -> Tensor:
        assert gt is None, "a no-reference metric is given no ground truth"
        return pred.double().clamp(0, 1).mul(255).flatten(-3).mean(-1)

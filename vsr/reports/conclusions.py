"""Conclusions: whether each ordering a study expects (from the paper) holds, by how much, and whether the
seeds can tell, one sentence each; where the runs were probed, the temporal gains of the two variants follow as
the evidence of *why* (how much each draws from other frames), tested over seeds the same way.

An ordering ``at`` the first or last frame is tested on each run's metric at that frame minus its clip
average (per clip, then averaged over clips): a within-run contrast, in which how good a run is as a whole
(what scatters most from seed to seed) cancels out."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from vsr.reports.stats import seeds_to_resolve, welch_t_test
from vsr.reports.tables import format_p
from vsr.reports.variants import Info
from vsr.studies.schema import FRAME_POSITIONS

_UNITS = {"psnr": "dB", "ssim": ""}


def conclusions(runs: pd.DataFrame, info: Info, per_frame: pd.DataFrame | None = None) -> list[str]:
    """One sentence per expected ordering of each study: does it hold, by how much, relative to the
    seed-to-seed spread (the pooled standard deviation over seeds of the two variants), with the Welch p.
    ``per_frame`` (``collect_per_frame``) is needed by the orderings ``at`` a frame."""
    lines = []
    for study, data in info.items():
        for expectation in data.get("expect", []):
            metric = expectation.get("metric", "psnr")
            if expectation.get("at"):
                lines.append(_frame_conclusion(expectation, per_frame, study, data.get("preset", "this")))
                continue

            def values(variant: str, study=study, metric=metric) -> np.ndarray:
                return _per_seed(runs[runs.metric == metric], study, variant)

            better, worse = values(expectation["better"]), values(expectation["worse"])
            line = _conclusion(expectation, better, worse, data.get("preset", "this"))
            gains = (
                values(expectation["better"], metric="temporal_gain"),
                values(expectation["worse"], metric="temporal_gain"),
            )
            lines.append(line + _temporal_evidence(expectation, *gains))
    return lines


def _per_seed(rows: pd.DataFrame, study: str, variant: str) -> np.ndarray:
    """The ``value`` of each seed of one variant (long-form rows with ``study``, ``variant``, ``seed``)."""
    return rows[(rows.study == study) & (rows.variant == variant)].sort_values("seed").value.to_numpy()


def _temporal_evidence(e: Mapping[str, Any], better: np.ndarray, worse: np.ndarray) -> str:
    """The temporal gains (``vsr probe``) of the two variants, with the Welch p over seeds: whether the
    expected-better variant draws more from other frames, whatever the PSNR ordering shows."""
    if len(better) < 2 or len(worse) < 2:
        return ""
    delta, p = better.mean() - worse.mean(), welch_t_test(better, worse).p
    stats = f"Welch p {'< 0.001' if p < 0.001 else '= ' + format_p(p)}"
    gains = f"temporal gain {better.mean():.3f} vs {worse.mean():.3f} dB, {stats}"
    if p < 0.05:
        more = "more" if delta > 0 else "less"
        return (
            f" Evidence: {e['better']} draws {abs(delta):.3f} dB {more} from other frames than {e['worse']} ({gains})."
        )
    return f" Evidence: their temporal gains do not separate at the 5% level ({gains})."


def frame_contrast(per_frame: pd.DataFrame, at: str, metric: str = "psnr") -> pd.DataFrame:
    """Each run's ``metric`` at the ``first`` or ``last`` frame of each clip minus that clip's average, averaged
    over clips: one row per run (``study``, ``variant``, ``seed``, ``value``)."""
    if at not in FRAME_POSITIONS:
        raise ValueError(f"frame_contrast: at={at!r}; expected one of {', '.join(FRAME_POSITIONS)}")
    runs_clips = ["study", "variant", "seed", "clip"]
    index = 0 if at == "first" else -1  # positionally: a missing (NaN) value is not skipped over

    def contrast(values: pd.Series) -> float:
        return float(values.iloc[index] - values.mean())

    ordered = per_frame.sort_values([*runs_clips, "frame"]).groupby(runs_clips)[metric]
    per_run = ordered.agg(contrast).groupby(["study", "variant", "seed"]).mean()
    return per_run.rename("value").reset_index()


def _frame_conclusion(e: Mapping[str, Any], per_frame: pd.DataFrame | None, study: str, preset: str) -> str:
    """The sentence for an ordering ``at`` a frame: the two variants' contrasts (frame minus clip average)."""
    metric, at = e.get("metric", "psnr"), e["at"]
    claim = f"**{e['better']} > {e['worse']} at the {at} frame, relative to the clip** ({metric.upper()} at the "
    claim += f"{at} frame minus the clip average"
    source = f" [{e['source']}]" if e.get("source") else ""
    if per_frame is None or per_frame.empty:
        return f"{claim}): not measured (no per-frame results).{source}"
    contrast = frame_contrast(per_frame, at, metric)

    better, worse = _per_seed(contrast, study, e["better"]), _per_seed(contrast, study, e["worse"])
    for variant, found in ((e["better"], better), (e["worse"], worse)):
        if not len(found):
            return f"{claim}): not measured (no per-frame results of {variant}).{source}"
        if not np.isfinite(found).all():
            return f"{claim}): not measured (a per-frame {metric.upper()} of {variant} is not finite).{source}"
    unit, digits = _UNITS.get(metric, ""), 3 if metric == "psnr" else 4
    claim += f": {e['better']} {better.mean():+.{digits}f}, {e['worse']} {worse.mean():+.{digits}f} {unit}".rstrip()
    return _conclusion(e, better, worse, preset, claim=claim + ")")


def _conclusion(
    e: Mapping[str, Any], better: np.ndarray, worse: np.ndarray, preset: str, claim: str | None = None
) -> str:
    """The sentence for one expected ordering, ``better`` and ``worse`` being the two variants' values
    (``claim``: its opening words, when not the plain ordering)."""
    metric = e.get("metric", "psnr")
    unit, digits = _UNITS.get(metric, ""), 3 if metric == "psnr" else 4
    paper = e.get("paper")
    if claim is None:
        claim = f"**{e['better']} > {e['worse']}** ({metric.upper()}"
        claim += f"; paper: {paper:+.2f} {unit}".rstrip() + ")" if paper is not None else ")"
    source = f" [{e['source']}]" if e.get("source") else ""
    if not len(better) or not len(worse):
        missing = e["better"] if not len(better) else e["worse"]
        return f"{claim}: not measured (no finished runs of {missing}).{source}"
    delta = better.mean() - worse.mean()
    shown = f"{delta:+.{digits}f} {unit}".rstrip()
    if len(better) < 2 or len(worse) < 2:
        verdict = "holds" if delta > 0 else "is reversed"
        return (f"{claim}: {verdict} as measured ({shown}), but with a single seed the seed-to-seed "
                f"spread is unknown, so this is not established.{source}")  # fmt: skip
    spread = math.sqrt((better.var(ddof=1) + worse.var(ddof=1)) / 2)
    p = welch_t_test(better, worse).p
    spread_text = f"{spread:.{digits}f} {unit}".rstrip()
    stats = f"Welch p {'< 0.001' if p < 0.001 else '= ' + format_p(p)}, {len(better)} + {len(worse)} seeds"
    if abs(delta) <= spread:
        return (f"{claim}: {shown} is within the seed-to-seed spread of {spread_text} ({stats}): the "
                f"{preset} preset cannot resolve this difference{_seeds_needed(delta, spread)}.{source}")  # fmt: skip
    verdict = "holds" if delta > 0 else "is reversed"
    ratio = abs(delta) / spread if spread > 0 else math.inf
    sentence = f"{claim}: {verdict}, {shown}, {ratio:.1f}× the seed-to-seed spread of {spread_text} ({stats})"
    if p >= 0.05:
        sentence += f"; not significant at the 5% level with these seeds{_seeds_needed(delta, spread)}"
    if paper and delta > 0:
        sentence += f"; {delta / abs(paper):.0%} of the paper's difference"
    return sentence + "." + source


def _seeds_needed(delta: float, spread: float) -> str:
    """How many seeds per variant would resolve a true difference of the size of ``delta`` (either sign) at
    this ``spread``; nothing for a zero difference, which no number of seeds resolves."""
    if delta == 0:
        return ""
    seeds = seeds_to_resolve(delta, spread)
    size = "were the true difference this size (in either direction)"
    if seeds is None:
        return f"; {size}, more than 1000 seeds per variant would be needed to resolve it"
    return f"; {size}, about {seeds} seeds per variant would resolve it (two-sided 5% test, 80% power)"

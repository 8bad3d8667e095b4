"""Conclusions: whether each ordering a study expects (from the paper) holds, by how much, and whether the
seeds can tell, one sentence each; where the runs were probed, the temporal gains of the two variants follow as
the evidence of *why* (how much each draws from other frames), tested over seeds the same way.

An ordering ``at`` the first or last frame (or either side of each cut between segments) is tested on each
run's metric at those frames minus its clip average (per clip, then averaged over clips): a within-run
contrast, in which how good a run is as a whole (what scatters most from seed to seed) cancels out.

An ordering ``on: real`` is tested on the real-video set's scores (the rows ``<metric>_real``, the metric one of
the study's ``real_metrics``), and its evidence is the temporal gain there, where the set has ground truth.

"Better" follows the metric's direction (:attr:`vsr.metrics.Metric.higher_is_better`): for a lower-is-better
metric an ordering holds when the expected-better variant's value is lower. The differences shown are always
``better - worse`` as measured, in the metric's unit; the sentence says which way is better."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from vsr.metrics import Metric, metric_class
from vsr.reports.collect import REAL_SUFFIX
from vsr.reports.stats import paired_t_test, seeds_to_resolve, welch_t_test
from vsr.reports.tables import format_p
from vsr.reports.variants import Info, share_weights
from vsr.studies.schema import FRAME_POSITIONS


def _holds(kind: type[Metric], delta: float) -> bool:
    """Whether ``better - worse = delta`` puts the expected-better variant ahead on a metric of ``kind``."""
    return delta > 0 if kind.higher_is_better else delta < 0


def _named(kind: type[Metric]) -> str:
    """The metric's label, with its direction where lower is better: ``PSNR``, ``MAE, lower is better``."""
    return kind.label if kind.higher_is_better else f"{kind.label}, lower is better"


def conclusions(
    runs: pd.DataFrame, info: Info, per_frame: pd.DataFrame | None = None, real_data: str | None = None
) -> list[str]:
    """One sentence per expected ordering of each study: does it hold, by how much, relative to the
    seed-to-seed spread (the pooled standard deviation over seeds of the two variants), with the Welch p.
    ``per_frame`` (``collect_per_frame``) is needed by the orderings ``at`` a frame; ``real_data`` names the
    real-video set that the orderings ``on: real`` are judged on (:func:`vsr.reports.collect.real_set`)."""
    lines = []
    for study, data in info.items():
        preset = data.get("preset", "this")
        for expectation in data.get("expect", []):
            if expectation.get("at"):
                lines.append(_frame_conclusion(expectation, per_frame, study, preset))
            else:
                lines.append(_mean_conclusion(expectation, runs, study, preset, real_data, info))
    return lines


def _mean_conclusion(
    e: Mapping[str, Any], runs: pd.DataFrame, study: str, preset: str, real_data: str | None, info: Info
) -> str:
    """The sentence for an ordering of the runs' scores over the clips (on the real-video set for ``on: real``),
    with the temporal gains as evidence; paired seed by seed where the two variants share their weights."""
    suffix = REAL_SUFFIX if e.get("on") == "real" else ""

    def values(variant: str, name: str) -> np.ndarray:
        return _per_seed(runs[runs.metric == name + suffix], study, variant)

    metric = e.get("metric", "psnr")
    better, worse = values(e["better"], metric), values(e["worse"], metric)
    rows = runs[runs.metric == metric + suffix]
    paired = share_weights(study, e["better"], e["worse"], info) and _seeds(rows, study, e["better"]) == _seeds(
        rows, study, e["worse"]
    )
    if suffix:
        claim = _real_claim(e, real_data)
        unmeasured = _unmeasured_on_real(runs[runs.study == study], metric) if not len(better) + len(worse) else ""
        if unmeasured:
            source = f" [{e['source']}]" if e.get("source") else ""
            return f"{claim}: not measured ({unmeasured}).{source}"
        line = _conclusion(e, better, worse, preset, claim, missing="no real-video scores", paired=paired)
    else:
        line = _conclusion(e, better, worse, preset, paired=paired)
    gains = values(e["better"], "temporal_gain"), values(e["worse"], "temporal_gain")
    return line + _temporal_evidence(e, *gains, real=bool(suffix))


def _unmeasured_on_real(runs: pd.DataFrame, metric: str) -> str:
    """Why a study's runs have no ``metric`` on the real-video set, where the reason is the study's and not one
    variant's: none of its runs was evaluated there, or the set has no ground truth and ``metric`` needs it; ``""``
    otherwise."""
    if not runs.metric.str.endswith(REAL_SUFFIX).any():
        return ("no run of this study was evaluated on the real-video set: its preset's real_data is false, or the "
                "runs finished before the set existed")  # fmt: skip
    if metric_class(metric).needs_gt and "temporal_gain" + REAL_SUFFIX not in set(runs.metric):
        label = metric_class(metric).label
        lack = "needs ground truth, which the real-video clips these runs were scored on lack"
        return f"{label} {lack}: order the variants on a no-reference metric in real_metrics, e.g. niqe"
    return ""


def _real_claim(e: Mapping[str, Any], real_data: str | None) -> str:
    """The opening words of an ordering ``on: real``: the ordering, the metric and the set it is judged on, named
    as the report's text on that set names it (``vsr data real``, its name)."""
    kind = metric_class(e.get("metric", "psnr"))
    claim = f"**{e['better']} > {e['worse']} on the real-video set** ({_named(kind)}; `vsr data real`"
    claim += f", {real_data}" if real_data else ""
    paper = e.get("paper")
    return claim + (f"; paper: {paper:+.2f} {kind.unit}".rstrip() if paper is not None else "") + ")"


def _seeds(rows: pd.DataFrame, study: str, variant: str) -> list[int]:
    """The seeds of one variant's rows, in order."""
    return sorted(rows[(rows.study == study) & (rows.variant == variant)].seed)


def _per_seed(rows: pd.DataFrame, study: str, variant: str) -> np.ndarray:
    """The ``value`` of each seed of one variant (long-form rows with ``study``, ``variant``, ``seed``)."""
    return rows[(rows.study == study) & (rows.variant == variant)].sort_values("seed").value.to_numpy()


def _temporal_evidence(e: Mapping[str, Any], better: np.ndarray, worse: np.ndarray, real: bool = False) -> str:
    """The temporal gains (``vsr probe``) of the two variants, with the Welch p over seeds: whether the
    expected-better variant draws more from other frames, whatever the ordering's metric shows. The probe
    measures the gain in PSNR, whatever the study's metrics, and the sentence says so; ``real``: the gains
    on the real-video set (none where it has no ground truth: then nothing is said)."""
    if len(better) < 2 or len(worse) < 2:
        return ""
    delta, p = better.mean() - worse.mean(), welch_t_test(better, worse).p
    stats = f"Welch p {'< 0.001' if p < 0.001 else '= ' + format_p(p)}"
    where = " on the real-video set" if real else ""
    gains = f"temporal gain (PSNR){where} {better.mean():.3f} vs {worse.mean():.3f} dB, {stats}"
    if p < 0.05:
        more = "more" if delta > 0 else "less"
        return (
            f" Evidence: {e['better']} draws {abs(delta):.3f} dB {more} from other frames than {e['worse']} ({gains})."
        )
    return f" Evidence: their temporal gains do not separate at the 5% level ({gains})."


def _frame_positions(t: int, at: str, segment_length: int | None = None) -> np.ndarray:
    """The frame indices of a ``t``-frame clip that an ordering ``at`` looks at: ``first``, ``last``, or
    ``segment_ends``, the two frames on either side of each cut between consecutive ``segment_length``-frame
    segments (not the clip's own first and last frame: every model is cut off there)."""
    if at not in FRAME_POSITIONS:
        raise ValueError(f"frame_contrast: at={at!r}; expected one of {', '.join(FRAME_POSITIONS)}")
    if at != "segment_ends":
        return np.array([0 if at == "first" else t - 1])
    if segment_length is None or segment_length < 2:
        raise ValueError(f"frame_contrast: at='segment_ends' needs segment_length >= 2, got {segment_length!r}")
    cuts = np.arange(segment_length, t, segment_length)  # the first frame of every segment but the first
    return np.sort(np.concatenate([cuts - 1, cuts]))


def frame_contrast(
    per_frame: pd.DataFrame, at: str, metric: str = "psnr", segment_length: int | None = None
) -> pd.DataFrame:
    """Each run's ``metric`` at the frames ``at`` looks at (:func:`_frame_positions`) minus the clip's average,
    averaged over clips: one row per run (``study``, ``variant``, ``seed``, ``value``). Frames are taken by
    their ``frame`` number. A run's contrast is NaN, rather than computed from what is left, when any of its
    clips has a NaN value, lacks a frame, or has no frame to look at (one segment long)."""
    _frame_positions(2, at, segment_length)  # the arguments' errors even for an empty table
    runs_clips = ["study", "variant", "seed", "clip"]

    def contrast(clip: pd.DataFrame) -> float:
        frames, values = clip["frame"].to_numpy(), clip[metric].to_numpy(dtype=float)
        positions = _frame_positions(len(values), at, segment_length)
        if not len(positions) or not np.array_equal(frames, np.arange(len(values))):
            return math.nan
        return float(values[positions].mean() - values.mean())

    ordered = per_frame.sort_values([*runs_clips, "frame"]).groupby(runs_clips)[["frame", metric]]
    per_clip = ordered.apply(contrast).rename("value")
    per_run = per_clip.groupby(["study", "variant", "seed"]).agg(lambda v: v.to_numpy().mean())  # NaN propagates
    return per_run.reset_index()


def _where(e: Mapping[str, Any]) -> str:
    """Where along the clip an ordering ``at`` looks, in words."""
    if e["at"] == "segment_ends":
        return f"on either side of each cut between {e['segment_length']}-frame segments"
    return f"at the {e['at']} frame"


def _frame_conclusion(e: Mapping[str, Any], per_frame: pd.DataFrame | None, study: str, preset: str) -> str:
    """The sentence for an ordering ``at`` some frames: the two variants' contrasts (those frames minus the clip
    average)."""
    metric, where = e.get("metric", "psnr"), _where(e)
    kind = metric_class(metric)
    claim = f"**{e['better']} > {e['worse']} {where}, relative to the clip** ({kind.label} {where} minus the "
    claim += "clip average" + ("" if kind.higher_is_better else "; lower is better")
    source = f" [{e['source']}]" if e.get("source") else ""
    if e.get("on") == "real":
        return f"{claim}): not measured (per-frame results are collected on the validation clips only).{source}"
    if per_frame is None or per_frame.empty:
        return f"{claim}): not measured (no per-frame results).{source}"
    compared = per_frame[(per_frame.study == study) & per_frame.variant.isin([e["better"], e["worse"]])]
    if e["at"] == "segment_ends" and compared.groupby(["variant", "seed", "clip"]).size().min() <= e["segment_length"]:
        return f"{claim}): not measured (a validation clip is not longer than one segment: it has no cut).{source}"
    contrast = frame_contrast(compared, e["at"], metric, e.get("segment_length"))

    better, worse = _per_seed(contrast, study, e["better"]), _per_seed(contrast, study, e["worse"])
    for variant, found in ((e["better"], better), (e["worse"], worse)):
        if not len(found):
            return f"{claim}): not measured (no per-frame results of {variant}).{source}"
        if not np.isfinite(found).all():
            return f"{claim}): not measured (a per-frame {kind.label} of {variant} is not finite).{source}"
    unit, digits = kind.unit, kind.digits
    claim += f": {e['better']} {better.mean():+.{digits}f}, {e['worse']} {worse.mean():+.{digits}f} {unit}".rstrip()
    return _conclusion(e, better, worse, preset, claim=claim + ")")


def _conclusion(
    e: Mapping[str, Any],
    better: np.ndarray,
    worse: np.ndarray,
    preset: str,
    claim: str | None = None,
    missing: str = "no finished runs",
    paired: bool = False,
) -> str:
    """The sentence for one expected ordering, ``better`` and ``worse`` being the two variants' values, in seed
    order (``claim``: its opening words, when not the plain ordering; ``missing``: what a variant without values
    lacks). ``paired``: the two share their weights seed by seed (a test-time variant and its source), so the
    spread is that of the per-seed differences and the test is the paired t-test."""
    kind = metric_class(e.get("metric", "psnr"))
    unit, digits = kind.unit, kind.digits
    paper = e.get("paper")
    if claim is None:
        claim = f"**{e['better']} > {e['worse']}** ({_named(kind)}"
        claim += f"; paper: {paper:+.2f} {unit}".rstrip() + ")" if paper is not None else ")"
    source = f" [{e['source']}]" if e.get("source") else ""
    if not len(better) or not len(worse):
        lacking = e["better"] if not len(better) else e["worse"]
        return f"{claim}: not measured ({missing} of {lacking}).{source}"
    delta = better.mean() - worse.mean()
    shown = f"{delta:+.{digits}f} {unit}".rstrip()
    holds = _holds(kind, delta)
    if len(better) < 2 or len(worse) < 2:
        verdict = "holds" if holds else "is reversed"
        return (f"{claim}: {verdict} as measured ({shown}), but with a single seed the seed-to-seed "
                f"spread is unknown, so this is not established.{source}")  # fmt: skip
    seeds_run = {e["better"]: len(better), e["worse"]: len(worse)}
    if paired:  # the same weights evaluated two ways: what scatters from seed to seed cancels in each difference
        spread, p = float((better - worse).std(ddof=1)), paired_t_test(better, worse).p
        spread_name, counted = "spread of the per-seed differences", f"{len(better)} seeds, paired"
    else:
        spread, p = math.sqrt((better.var(ddof=1) + worse.var(ddof=1)) / 2), welch_t_test(better, worse).p
        spread_name, counted = "seed-to-seed spread", f"{len(better)} + {len(worse)} seeds"
    spread_text = f"{spread:.{digits}f} {unit}".rstrip()
    test = "paired" if paired else "Welch"
    stats = f"{test} p {'< 0.001' if p < 0.001 else '= ' + format_p(p)}, {counted}"
    needed = _seeds_needed(delta, spread, seeds_run, paired)
    if abs(delta) <= spread:
        return (f"{claim}: {shown} is within the {spread_name} of {spread_text} ({stats}): the "
                f"{preset} preset cannot resolve this difference{needed}.{source}")  # fmt: skip
    verdict = "holds" if holds else "is reversed"
    ratio = abs(delta) / spread if spread > 0 else math.inf
    sentence = f"{claim}: {verdict}, {shown}, {ratio:.1f}× the {spread_name} of {spread_text} ({stats})"
    if p >= 0.05:
        sentence += f"; not significant at the 5% level with these seeds{needed}"
    if paper and holds:
        sentence += f"; {abs(delta) / abs(paper):.0%} of the paper's difference"
    return sentence + "." + source


def _seeds_needed(delta: float, spread: float, seeds_run: Mapping[str, int], paired: bool = False) -> str:
    """How many seeds per variant would resolve a true difference of the size of ``delta`` (either sign) at
    this ``spread``; nothing for a zero difference, which no number of seeds resolves. ``seeds_run``: each
    variant's seeds so far; where the least-run one already has that many, what fails is its seed count.
    ``paired``: seeds of the shared weights, for the paired test."""
    if delta == 0:
        return ""
    seeds = seeds_to_resolve(delta, spread, paired=paired)
    size = "were the true difference this size (in either direction)"
    if seeds is None:
        return f"; {size}, more than 1000 seeds per variant would be needed to resolve it"
    sentence = f"; {size}, about {seeds} seeds per variant would resolve it (two-sided 5% test, 80% power)"
    if paired:
        return sentence
    (fewest, few), (_, most) = sorted(seeds_run.items(), key=lambda item: item[1])
    if few >= seeds and few < most:
        sentence += (f"; that many are run, but {fewest}'s {few} seeds against {most} leave Welch's test few "
                     f"degrees of freedom: more seeds of {fewest} are what it lacks")  # fmt: skip
    return sentence

"""Reports: the t-test against known values and an independent implementation (mpmath), the results table
against numbers computed here, the conclusions' verdicts (on a lower-is-better metric the right way round), and
a whole report written from run folders, by default where its study's report is shipped."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import metric_plugins  # noqa: F401  (registers abs_error: lower is better)
import mpmath
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from source_text import string_literals

import vsr.reports
import vsr.reports.index
from vsr import build_model, load_recipe, save_checkpoint
from vsr.atomic import OUTPUT_MARKER
from vsr.errors import VSRError
from vsr.reports import (
    collect_per_frame,
    collect_runs,
    collect_training,
    conclusions,
    default_report_folder,
    figure_visual_comparison,
    frame_contrast,
    regularized_incomplete_beta,
    results_table,
    seeds_to_resolve,
    student_t_cdf,
    student_t_quantile,
    student_t_two_sided_p,
    table_latex,
    table_markdown,
    visual_crops,
    welch_t_test,
    write_report,
)
from vsr.studies import runs as run_folders


# ------------------------------------------------------------------------------------------ statistics
@pytest.mark.parametrize(
    ("a", "b", "x"),
    [(0.5, 0.5, 0.3), (2.0, 3.0, 0.4), (5.0, 0.5, 0.9), (0.3, 0.7, 0.01), (50.0, 30.0, 0.6), (1.5, 12.0, 0.99)],
)
def test_incomplete_beta_matches_mpmath(a, b, x):
    expected = float(mpmath.betainc(a, b, 0, x, regularized=True))
    assert regularized_incomplete_beta(a, b, x) == pytest.approx(expected, rel=1e-10, abs=1e-14)


def test_incomplete_beta_closed_forms():
    for x in (0.0, 0.05, 0.5, 0.77, 1.0):
        assert regularized_incomplete_beta(3.0, 1.0, x) == pytest.approx(x**3, abs=1e-13)  # I_x(a, 1) = x^a
        assert regularized_incomplete_beta(1.0, 4.0, x) == pytest.approx(1 - (1 - x) ** 4, abs=1e-13)
        arcsine = 2 / math.pi * math.asin(math.sqrt(x))  # I_x(1/2, 1/2)
        assert regularized_incomplete_beta(0.5, 0.5, x) == pytest.approx(arcsine, abs=1e-12)
    with pytest.raises(ValueError, match="0 <= x <= 1"):
        regularized_incomplete_beta(1.0, 1.0, 1.5)


@pytest.mark.parametrize("t", [-7.0, -1.0, -0.3, 0.0, 0.4, 1.0, 2.5, 30.0])
def test_student_t_closed_forms(t):
    # df = 1 is the Cauchy distribution, df = 2 has the CDF 1/2 + t / (2 sqrt(2 + t^2)).
    assert student_t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)
    assert student_t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)


@pytest.mark.parametrize(("t", "df"), [(12.7062, 1), (4.3027, 2), (2.2281, 10), (2.0423, 30)])
def test_student_t_table_critical_values(t, df):
    # Two-sided 5% critical values of Student's t tables.
    assert student_t_two_sided_p(t, df) == pytest.approx(0.05, abs=2e-5)


@pytest.mark.parametrize(("t", "df"), [(12.7062, 1), (4.3027, 2), (2.2281, 10), (2.0423, 30)])
def test_student_t_quantile_inverts_the_table(t, df):
    assert student_t_quantile(0.975, df) == pytest.approx(t, abs=1e-4)
    assert student_t_quantile(0.025, df) == pytest.approx(-t, abs=1e-4)
    assert student_t_cdf(student_t_quantile(0.8, df), df) == pytest.approx(0.8, abs=1e-10)


def _exact_power(seeds: int, effect: float) -> float:
    """Power of the two-sided 5% two-sample t-test with ``seeds`` per group for a true difference of
    ``effect`` standard deviations: the noncentral t, integrated over the chi-square of the variance."""
    df = mpmath.mpf(2 * seeds - 2)
    shift, critical = effect * mpmath.sqrt(seeds / 2), student_t_quantile(0.975, float(df))

    def chi2_pdf(v):
        return v ** (df / 2 - 1) * mpmath.exp(-v / 2) / (2 ** (df / 2) * mpmath.gamma(df / 2))

    def rejects(v):
        scaled = critical * mpmath.sqrt(v / df)
        return mpmath.ncdf(shift - scaled) + mpmath.ncdf(-scaled - shift)

    return float(mpmath.quad(lambda v: chi2_pdf(v) * rejects(v), [0, df, mpmath.inf]))


@pytest.mark.parametrize(("effect", "table"), [(0.5, 64), (0.8, 26), (1.0, 17), (2.0, 6), (3.0, None), (4.0, None)])
def test_seeds_to_resolve_is_the_fewest_with_80_percent_power(effect, table):
    """Against the exact noncentral-t power and the sample-size tables (Cohen 1988, Table 2.4.1; large
    effects, where one seed fewer drops below 80% power, from the exact power alone)."""
    seeds = seeds_to_resolve(0.05 * effect, 0.05)
    assert table is None or seeds == table
    assert _exact_power(seeds, effect) >= 0.8 > _exact_power(seeds - 1, effect)
    assert seeds_to_resolve(-0.05 * effect, 0.05) == seeds  # the sign does not matter
    assert seeds_to_resolve(0.001, 1.0) is None and seeds_to_resolve(0.0, 1.0) is None
    with pytest.raises(ValueError, match="spread >= 0"):
        seeds_to_resolve(1.0, -1.0)


def test_welch_t_test_against_formulas_and_mpmath():
    a, b = [31.2, 31.5, 31.1, 31.4], [30.9, 31.0, 30.7, 31.2, 30.8]
    ma, mb = statistics.mean(a), statistics.mean(b)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    t = (ma - mb) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    p = float(mpmath.betainc(df / 2, 0.5, 0, df / (df + t * t), regularized=True))
    result = welch_t_test(a, b)
    assert result.difference == pytest.approx(ma - mb)
    assert result.t == pytest.approx(t)
    assert result.df == pytest.approx(df)
    assert result.p == pytest.approx(p, rel=1e-9)
    assert welch_t_test(b, a).p == pytest.approx(result.p)
    assert welch_t_test([1.0, 1.0], [1.0, 1.0]).p == 1.0
    with pytest.raises(ValueError, match="at least 2 values"):
        welch_t_test([1.0], [2.0, 3.0])


# Samples of unequal size and spread, as seeds of two variants give them.
WELCH_SAMPLES = [
    ([31.2, 31.5, 31.1, 31.4], [30.9, 31.0, 30.7, 31.2, 30.8]),
    ([25.92, 25.93, 25.91], [25.87, 25.82, 25.93]),
    ([0.81, 0.83], [0.79, 0.80, 0.78, 0.82, 0.80, 0.79]),
    ([1.0, 2.0, 3.0, 4.0, 5.0], [1.5, 1.6]),
]


@pytest.mark.parametrize(("a", "b"), WELCH_SAMPLES)
def test_welch_t_test_matches_scipy(a, b):
    """scipy is no declared dependency (scikit-image brings it): an independent implementation to test against."""
    stats = pytest.importorskip("scipy.stats")
    expected = stats.ttest_ind(a, b, equal_var=False)
    result = welch_t_test(a, b)
    assert result.t == pytest.approx(expected.statistic, rel=1e-12)
    assert result.p == pytest.approx(expected.pvalue, rel=1e-9)
    assert student_t_two_sided_p(result.t, result.df) == pytest.approx(2 * stats.t.sf(abs(result.t), result.df))


# ------------------------------------------------------------------------------------------ table
def _runs(values: dict[str, list[float]], study: str = "s", metric: str = "psnr") -> pd.DataFrame:
    rows = [
        {"study": study, "variant": v, "seed": i, "metric": metric, "value": x, "run_dir": ""}
        for v, xs in values.items()
        for i, x in enumerate(xs)
    ]
    return pd.DataFrame(rows)


def _info(variants, base, expect=(), preset="cpu", study="s"):
    return {study: {"name": study, "base": base, "preset": preset, "variants": {v: {} for v in variants},
                    "expect": list(expect)}}  # fmt: skip


def test_results_table_numbers():
    values = {"a": [30.0, 30.4, 30.2], "b": [31.0, 31.3]}
    table = results_table(_runs(values), None, _info(["a", "b"], "b")).set_index("variant")
    assert list(table.index) == ["a", "b"]
    assert table.loc["a", "psnr_mean"] == pytest.approx(statistics.mean(values["a"]))
    assert table.loc["a", "psnr_std"] == pytest.approx(statistics.stdev(values["a"]))
    delta = statistics.mean(values["a"]) - statistics.mean(values["b"])
    assert table.loc["a", "psnr_delta"] == pytest.approx(delta)
    assert table.loc["a", "psnr_p"] == pytest.approx(welch_t_test(values["a"], values["b"]).p)
    assert table.loc["b", "psnr_delta"] == 0 and math.isnan(table.loc["b", "psnr_p"])
    assert table.loc["a", "seeds"] == 3
    md, tex = table_markdown(table.reset_index()), table_latex(table.reset_index(), caption="t_1")
    assert "30.200 ± 0.200" in md and "b (base)" in md and "-0.950" in md
    assert r"30.200 $\pm$ 0.200" in tex and r"\toprule" in tex and r"t\_1" in tex


def test_conclusions_verdicts():
    expect = [{"better": "b", "worse": "a", "paper": 0.5, "metric": "psnr", "source": "paper"}]
    info = _info(["a", "b"], "b", expect)
    holds = conclusions(_runs({"a": [30.0, 30.1, 29.9], "b": [30.6, 30.5, 30.7]}), info)[0]
    assert "holds, +0.600 dB, 6.0× the seed-to-seed spread of 0.100 dB" in holds and "120% of the paper" in holds
    assert f"(Welch p = {welch_t_test([30.6, 30.5, 30.7], [30.0, 30.1, 29.9]).p:.3f}, 3 + 3 seeds)" in holds
    tiny = conclusions(_runs({"a": [30.0, 30.01, 29.99], "b": [31.0, 31.01, 30.99]}), info)[0]
    assert welch_t_test([31.0, 31.01, 30.99], [30.0, 30.01, 29.99]).p < 0.001 and "(Welch p < 0.001, 3 + 3" in tiny
    reversed_ = conclusions(_runs({"a": [31.0, 31.1, 30.9], "b": [30.0, 30.1, 29.9]}), info)[0]
    assert "is reversed, -1.000 dB" in reversed_
    unresolved = conclusions(_runs({"a": [30.0, 31.0], "b": [30.2, 31.1]}), info)[0]
    assert "within the seed-to-seed spread" in unresolved and "cpu preset cannot resolve" in unresolved
    spread = math.sqrt((statistics.variance([30.2, 31.1]) + statistics.variance([30.0, 31.0])) / 2)
    needed = seeds_to_resolve(0.15, spread)
    assert needed > 100 and f"(in either direction), about {needed} seeds per variant would resolve it" in unresolved
    level = conclusions(_runs({"a": [30.0, 31.0], "b": [31.0, 30.0]}), info)[0]  # equal means: no seed count
    assert "cannot resolve this difference. [paper]" in level
    weak = conclusions(_runs({"a": [30.0, 30.3], "b": [30.4, 30.7]}), info)[0]
    assert welch_t_test([30.4, 30.7], [30.0, 30.3]).p > 0.05 and "not significant at the 5% level" in weak
    assert f"about {seeds_to_resolve(0.4, statistics.stdev([30.0, 30.3]))} seeds per variant" in weak
    single = conclusions(_runs({"a": [30.0], "b": [30.2]}), info)[0]
    assert "single seed" in single


def test_a_lower_is_better_metric_is_ordered_the_right_way_round():
    """``abs_error`` (lower is better): "b better than a" holds when b's error is lower; the difference shown
    is b - a as measured (negative), the table marks the metric ↓, and a higher error is a reversal."""
    expect = [{"better": "b", "worse": "a", "paper": -2.0, "metric": "abs_error", "source": "paper"}]
    info = _info(["a", "b"], "b", expect)
    a, b = [10.0, 10.2, 9.8], [8.5, 8.4, 8.6]
    holds = conclusions(_runs({"a": a, "b": b}, metric="abs_error"), info)[0]
    delta = statistics.mean(b) - statistics.mean(a)
    spread = math.sqrt((statistics.variance(a) + statistics.variance(b)) / 2)
    assert holds.startswith("**b > a** (AbsErr, lower is better; paper: -2.00 levels)")
    assert f"holds, {delta:+.3f} levels, {abs(delta) / spread:.1f}× the seed-to-seed spread of {spread:.3f}" in holds
    assert f"{abs(delta) / 2.0:.0%} of the paper's difference" in holds
    reversed_ = conclusions(_runs({"a": b, "b": a}, metric="abs_error"), info)[0]
    assert f"is reversed, {-delta:+.3f} levels" in reversed_ and "of the paper" not in reversed_
    single = conclusions(_runs({"a": [10.0], "b": [9.0]}, metric="abs_error"), info)[0]
    assert "holds as measured (-1.000 levels)" in single
    table = results_table(_runs({"a": a, "b": b}, metric="abs_error"), None, info)
    assert table.set_index("variant").loc["a", "abs_error_delta"] == pytest.approx(-delta)
    header = table_markdown(table).splitlines()[0]
    assert "| AbsErr (levels) ↓ | ΔAbsErr (levels) | p (AbsErr) |" in header and "PSNR" not in header
    assert r"AbsErr (levels) $\downarrow$" in table_latex(table)


def test_a_frame_ordering_on_a_lower_is_better_metric():
    """At the first frame, b's error rises less above its clip average than a's: b is better there."""
    rows = [{"study": "s", "variant": v, "seed": seed, "clip": "c", "frame": i, "abs_error": level}
            for v, first in (("a", 3.0), ("b", 1.0)) for seed in range(3)
            for i, level in enumerate([5 + first + 0.1 * seed, 5.0, 5.0, 5.0 - 0.01 * seed])]  # fmt: skip
    per_frame = pd.DataFrame(rows)
    expect = [{"better": "b", "worse": "a", "metric": "abs_error", "at": "first"}]
    line = conclusions(_runs({"a": [6.0] * 3, "b": [5.5] * 3}, metric="abs_error"), _info(["a", "b"], "b", expect),
                       per_frame)[0]  # fmt: skip
    contrast = frame_contrast(per_frame, "first", "abs_error").groupby("variant").value.mean()
    assert contrast.b < contrast.a
    assert "(AbsErr at the first frame minus the clip average; lower is better: " in line
    assert f"holds, {contrast.b - contrast.a:+.3f} levels" in line


def _per_frame(offsets: dict[str, list[float]], profile: dict[str, list[float]], clips: dict[str, int]) -> pd.DataFrame:
    """Per-frame PSNR of each variant's seeds: the seed's offset (how good the run is as a whole) plus the
    variant's profile along the clip (cut to each clip's length) plus a per-clip level."""
    rows = [
        {"study": "s", "variant": v, "seed": seed, "clip": clip, "frame": i,
         "psnr": 30 + level + offset + profile[v][i], "ssim": 0.9}
        for v, seed_offsets in offsets.items()
        for seed, offset in enumerate(seed_offsets)
        for level, (clip, length) in enumerate(clips.items())
        for i in range(length)
    ]  # fmt: skip
    return pd.DataFrame(rows)


def test_orderings_at_a_frame_cancel_what_scatters_from_seed_to_seed():
    """Whole runs scatter by ±0.3 dB (unresolved on the clip average), yet the first-frame deficit of
    \"a\" shows in every seed: its contrast (first frame minus clip average) resolves."""
    offsets = {"a": [0.3, -0.2, 0.1, -0.3], "b": [-0.1, 0.25, -0.3, 0.2]}
    noise = [0.0, 0.01, -0.01, 0.005]
    profile = {"a": [-0.4, -0.1, 0.0, 0.05, 0.05, 0.05], "b": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]}
    clips = {"c1": 6, "c2": 4}  # clips of different lengths: "last" is each clip's own last frame
    per_frame = _per_frame(offsets, profile, clips)
    per_frame.loc[per_frame.frame == 0, "psnr"] += np.tile(np.repeat(noise, len(clips)), 2)  # seeds differ a little
    expect = [{"better": "b", "worse": "a", "metric": "psnr"}, {"better": "b", "worse": "a", "at": "first"},
              {"better": "a", "worse": "b", "at": "last", "source": "paper, Fig. 4"}]  # fmt: skip
    runs = _runs({v: [30.5 + o for o in offs] for v, offs in offsets.items()})
    average, first, last = conclusions(runs, _info(["a", "b"], "b", expect), per_frame)
    assert "within the seed-to-seed spread" in average

    def contrast(variant: str, at: str) -> np.ndarray:  # independently: per seed, mean over clips
        out = []
        for seed in range(4):
            per_clip = []
            for clip in clips:
                psnr = per_frame[
                    (per_frame.variant == variant) & (per_frame.seed == seed) & (per_frame["clip"] == clip)
                ]
                psnr = psnr.sort_values("frame").psnr.to_numpy()
                per_clip.append((psnr[0] if at == "first" else psnr[-1]) - psnr.mean())
            out.append(np.mean(per_clip))
        return np.array(out)

    b_first, a_first = contrast("b", "first"), contrast("a", "first")
    frame = frame_contrast(per_frame, "first").set_index(["variant", "seed"]).value
    assert frame.loc["a"].to_numpy() == pytest.approx(a_first) and frame.loc["b"].to_numpy() == pytest.approx(b_first)
    p = welch_t_test(b_first, a_first).p
    assert p < 0.001
    assert first.startswith("**b > a at the first frame, relative to the clip** (PSNR at the first frame minus")
    assert (
        f"b {b_first.mean():+.3f}, a {a_first.mean():+.3f} dB): holds, {b_first.mean() - a_first.mean():+.3f} dB"
        in first
    )
    assert "(Welch p < 0.001, 4 + 4 seeds)" in first
    a_last, b_last = contrast("a", "last"), contrast("b", "last")
    assert a_last.mean() - b_last.mean() > 0 and "[paper, Fig. 4]" in last
    assert f"holds, {a_last.mean() - b_last.mean():+.3f} dB" in last
    missing = conclusions(runs, _info(["a", "b"], "b", expect[1:2]))[0]
    assert "not measured (no per-frame results)" in missing
    only_b = conclusions(runs, _info(["a", "b"], "b", expect[1:2]), per_frame[per_frame.variant == "b"])[0]
    assert "not measured (no per-frame results of a)" in only_b
    gap = per_frame.copy()
    gap.loc[(gap.variant == "a") & (gap.frame == 0) & (gap.seed == 1), "psnr"] = np.nan  # not the second frame
    assert (
        "not measured (a per-frame PSNR of a is not finite)"
        in conclusions(runs, _info(["a", "b"], "b", expect[1:2]), gap)[0]
    )
    with pytest.raises(ValueError, match="at='middle'; expected one of first, last, segment_ends"):
        frame_contrast(per_frame, "middle")


def test_orderings_at_segment_ends_look_at_the_cuts_between_segments():
    """A local model restoring 4-frame segments on its own dips on either side of each cut (frames 3|4, 7|8
    of a 10-frame clip; not at the clip's own ends, where every model starts cold); a recurrent one does
    not. The contrast is those frames minus the clip average, checked against the frames listed by hand,
    on clips of 10 and 8 frames (8: a whole number of segments, whose last frame is the clip's, not a cut)."""
    dip = [0.0, 0.0, 0.0, -0.2, -0.25, 0.0, 0.0, -0.2, -0.25, 0.0]
    profile = {"local": [d - 0.3 * (i in (0, 9)) for i, d in enumerate(dip)], "recurrent": [-0.3, *[0.0] * 8, -0.3]}
    offsets = {"local": [0.2, -0.1, 0.0], "recurrent": [-0.2, 0.15, 0.05]}
    per_frame = _per_frame(offsets, profile, {"c1": 10, "c2": 8})
    per_frame.loc[per_frame.frame == 4, "psnr"] += np.tile(np.repeat([0.01, -0.02, 0.0], 2), 2)  # seeds differ
    cuts = {10: [3, 4, 7, 8], 8: [3, 4]}

    def contrast(variant: str) -> np.ndarray:  # independently: per seed, mean over clips
        rows = per_frame[per_frame.variant == variant]
        per_clip = rows.groupby(["seed", "clip"]).apply(
            lambda r: r.set_index("frame").psnr.loc[cuts[len(r)]].mean() - r.psnr.mean(), include_groups=False
        )
        return per_clip.groupby("seed").mean().to_numpy()

    frame = frame_contrast(per_frame, "segment_ends", segment_length=4).set_index(["variant", "seed"]).value
    assert frame.loc["local"].to_numpy() == pytest.approx(contrast("local"))
    assert frame.loc["recurrent"].to_numpy() == pytest.approx(contrast("recurrent"))
    expect = {"better": "recurrent", "worse": "local", "at": "segment_ends", "segment_length": 4}
    runs = _runs({v: [30.0 + o for o in offs] for v, offs in offsets.items()})
    (line,) = conclusions(runs, _info(["local", "recurrent"], "recurrent", [expect]), per_frame)
    delta = contrast("recurrent").mean() - contrast("local").mean()
    assert line.startswith(
        "**recurrent > local on either side of each cut between 4-frame segments, relative to the clip**"
    )
    assert f"holds, {delta:+.3f} dB" in line and "(Welch p < 0.001, 3 + 3 seeds)" in line
    short = per_frame[per_frame.frame < 4]  # one segment per clip: no cut to look at
    (line,) = conclusions(runs, _info(["local", "recurrent"], "recurrent", [expect]), short)
    assert "not measured (a validation clip is not longer than one segment: it has no cut)" in line
    with pytest.raises(ValueError, match="at='segment_ends' needs segment_length >= 2, got None"):
        frame_contrast(per_frame, "segment_ends")
    # A run with one clip that lacks a frame, or has a NaN frame, has no contrast (not one from its other clip).
    for broken in (
        per_frame.drop(per_frame[(per_frame.variant == "local") & (per_frame.seed == 1) & (per_frame.frame == 5)
                                 & (per_frame["clip"] == "c2")].index),
        per_frame.assign(psnr=per_frame.psnr.mask((per_frame.variant == "local") & (per_frame.seed == 1)
                                                  & (per_frame.frame == 1) & (per_frame["clip"] == "c1"))),
    ):  # fmt: skip
        values = frame_contrast(broken, "segment_ends", segment_length=4).set_index(["variant", "seed"]).value
        assert np.isnan(values.loc[("local", 1)]) and np.isfinite(values.drop(("local", 1))).all()
        (line,) = conclusions(runs, _info(["local", "recurrent"], "recurrent", [expect]), broken)
        assert "not measured (a per-frame PSNR of local is not finite)" in line


def test_an_unresolved_ordering_with_fewer_seeds_of_one_variant_says_that_is_what_it_lacks():
    """Spreads so small that 2 seeds per variant would do, yet 2 seeds of one against 5 of the other leave
    Welch's test about one degree of freedom: the sentence names the variant that needs more seeds."""
    values = {"a": [30.0, 30.001, 29.999, 30.0005, 29.9995], "b": [30.06, 30.08]}
    (line,) = conclusions(_runs(values), _info(["a", "b"], "b", [{"better": "b", "worse": "a"}]))
    assert welch_t_test(values["b"], values["a"]).p > 0.05
    spread = math.sqrt((statistics.variance(values["a"]) + statistics.variance(values["b"])) / 2)
    needed = seeds_to_resolve(statistics.mean(values["b"]) - statistics.mean(values["a"]), spread)
    assert needed <= 2
    assert f"about {needed} seeds per variant would resolve it" in line
    assert "that many are run, but b's 2 seeds against 5 leave Welch's test few degrees of freedom" in line


def test_conclusions_add_the_temporal_gain_as_evidence():
    """PSNR unresolved, but the probe's temporal gains separate the variants: the sentence says both."""
    info = _info(["a", "b"], "b", [{"better": "b", "worse": "a", "metric": "psnr", "source": ""}])
    psnr = _runs({"a": [30.0, 31.0, 30.5], "b": [30.2, 31.1, 30.4]})
    gain_a, gain_b = [0.10, 0.11, 0.09], [0.16, 0.17, 0.15]
    gains = _runs({"a": gain_a, "b": gain_b}, metric="temporal_gain")
    line = conclusions(pd.concat([psnr, gains]), info)[0]
    assert "within the seed-to-seed spread" in line
    p = welch_t_test(gain_b, gain_a).p
    assert p < 0.05
    evidence = "Evidence: b draws 0.060 dB more from other frames than a (temporal gain (PSNR) 0.160 vs 0.100 dB"
    assert f"{evidence}, Welch p = {p:.3f})" in line
    alike = _runs({"a": [0.10, 0.20], "b": [0.12, 0.19]}, metric="temporal_gain")
    assert (
        "Evidence: their temporal gains do not separate at the 5% level"
        in conclusions(pd.concat([psnr, alike]), info)[0]
    )
    assert "Evidence" not in conclusions(psnr, info)[0]  # runs without a probe: no evidence sentence


# ------------------------------------------------------------------------------------------ whole report
def _fake_study(root, values: dict[str, list[float]]):
    """Run folders as vsr.studies writes them (no checkpoints: the report is written without crops)."""
    study = root / "toy"
    info = {"name": "toy", "title": "Toy study", "base": "b", "preset": "cpu", "metrics": ["psnr", "ssim"],
            "variants": {"a": {"label": "A"}, "b": {"label": "B"}},
            "expect": [{"better": "b", "worse": "a", "paper": 0.5, "metric": "psnr", "source": ""}]}  # fmt: skip
    study.mkdir(parents=True)
    (study / "study.json").write_text(json.dumps(info))
    rng = np.random.default_rng(0)
    for variant, psnrs in values.items():
        for seed, value in enumerate(psnrs):
            run = study / variant / f"seed{seed}"
            run.mkdir(parents=True)
            frames = pd.DataFrame({"clip": ["c0"] * 4 + ["c1"] * 4, "frame": list(range(4)) * 2})
            frames["psnr"] = value + rng.normal(0, 0.1, len(frames))
            frames["psnr"] += value - frames.groupby("clip").psnr.transform("mean")  # clip means = value
            frames["ssim"] = 0.8 + 0.01 * seed
            frames.to_csv(run / "per_frame.csv", index=False)
            metrics = {"psnr": value, "ssim": 0.8 + 0.01 * seed, "bicubic": {"psnr": 25.0, "ssim": 0.7}}
            (run / "metrics.json").write_text(json.dumps(metrics))
            log = [{"event": "train", "iteration": i, "loss": 0.1 / i, "lr": 1e-3} for i in (1, 2, 3)]
            log.append({"event": "val", "iteration": 3, "psnr": value, "ssim": 0.8})
            (run / "log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in log))
            profile = {"params": {"total": 1000 * (seed + 1)}, "flops_per_frame": 2e9, "runtime_ms_per_frame": 5.0,
                       "device": "CPU test", "frames": 10, "size": [180, 320]}  # fmt: skip
            (run / "profile.json").write_text(json.dumps(profile))
            (run / "run.json").write_text(json.dumps({"study": "toy", "variant": variant, "seed": seed}))
    return study


def test_write_report_from_run_folders(tmp_path):
    values = {"a": [30.0, 30.2], "b": [30.9, 31.1]}
    study = _fake_study(tmp_path / "runs", values)
    (study / "b" / "seed2").mkdir()  # an unfinished run (no run.json) is not reported
    index = write_report([study], tmp_path / "report", visual=False)

    runs = collect_runs(study)
    assert len(runs) == 4 * 4  # 2 variants × 2 seeds × (psnr, ssim, bicubic_psnr, bicubic_ssim)
    assert len(collect_per_frame(study)) == 4 * 8
    assert set(collect_training(study).key) == {"loss", "lr", "psnr", "ssim"}
    csv = pd.read_csv(tmp_path / "report" / "results.csv").set_index("variant")
    for variant, xs in values.items():
        assert csv.loc[variant, "psnr_mean"] == pytest.approx(statistics.mean(xs))
        assert csv.loc[variant, "psnr_std"] == pytest.approx(statistics.stdev(xs))
    assert csv.loc["a", "psnr_delta"] == pytest.approx(-0.9)
    text = index.read_text()
    assert "## Conclusions" in text and "**b > a**" in text and "holds" in text
    for figure in ("per_frame_psnr.png", "psnr_vs_params.png", "psnr_vs_runtime.png", "training_curves.png"):
        assert f"]({figure})" in text
        with Image.open(tmp_path / "report" / figure) as image:
            assert image.size[0] > 500
    # no temporary files left behind: the one hidden file is vsr's marker of a report
    assert [p.name for p in (tmp_path / "report").glob(".*")] == [OUTPUT_MARKER]


def test_report_combines_studies_and_rejects_missing_runs(tmp_path):
    first = _fake_study(tmp_path / "one", {"a": [30.0, 30.2], "b": [30.9, 31.1]})
    second = _fake_study(tmp_path / "two", {"a": [29.0, 29.2], "b": [29.9, 30.1]})
    (second / "study.json").write_text((second / "study.json").read_text().replace('"toy"', '"toy2"'))
    for path in second.rglob("run.json"):
        path.write_text(path.read_text().replace('"toy"', '"toy2"'))
    write_report([first, second], tmp_path / "report", visual=False)
    table = pd.read_csv(tmp_path / "report" / "results.csv")
    assert list(zip(table.study, table.variant, strict=True)) == [
        ("toy", "a"),
        ("toy", "b"),
        ("toy2", "a"),
        ("toy2", "b"),
    ]
    assert table.psnr_delta.tolist() == pytest.approx([-0.9, 0.0, -0.9, 0.0])
    with pytest.raises(VSRError, match="no finished runs"):
        write_report([tmp_path / "report"], tmp_path / "empty")


def test_a_report_takes_its_metrics_from_the_study(tmp_path):
    """A study whose first metric is lower-is-better (``abs_error``, registered by the module its study.json
    imports): per_frame.csv, results.csv, the figures and the conclusions follow it, numbers checked against
    the per-frame values the runs were given."""
    study = _fake_study(tmp_path / "runs", {"a": [30.0, 30.2], "b": [30.9, 31.1]})
    info = json.loads((study / "study.json").read_text())
    info |= {"metrics": ["abs_error", "psnr"], "imports": ["metric_plugins"],
             "expect": [{"better": "b", "worse": "a", "metric": "abs_error", "source": ""}]}  # fmt: skip
    (study / "study.json").write_text(json.dumps(info))
    rng = np.random.default_rng(1)
    expected = {}
    for run in sorted(study.glob("*/seed*")):
        frames = pd.read_csv(run / "per_frame.csv")
        frames.insert(2, "abs_error", (6.0 if run.parent.name == "a" else 5.0) + rng.normal(0, 0.3, len(frames)))
        frames.to_csv(run / "per_frame.csv", index=False)
        value = frames.groupby("clip").abs_error.mean().mean()  # frames per clip, then clips
        expected.setdefault(run.parent.name, []).append(value)
        metrics = json.loads((run / "metrics.json").read_text())
        metrics |= {"abs_error": value, "bicubic": metrics["bicubic"] | {"abs_error": 9.0}}
        (run / "metrics.json").write_text(json.dumps(metrics))
        record = json.loads((run / "run.json").read_text())
        record["metrics"] = {"abs_error": value, "psnr": metrics["psnr"]}
        (run / "run.json").write_text(json.dumps(record))
    index = write_report([study], tmp_path / "report", visual=False).read_text()

    per_frame = pd.read_csv(tmp_path / "report" / "per_frame.csv")
    assert list(per_frame.columns) == ["study", "variant", "seed", "clip", "frame", "abs_error", "psnr"]
    results = pd.read_csv(tmp_path / "report" / "results.csv").set_index("variant")
    for variant, values in expected.items():
        assert results.loc[variant, "abs_error_mean"] == pytest.approx(statistics.mean(values), abs=1e-12)
        assert results.loc[variant, "abs_error_std"] == pytest.approx(statistics.stdev(values), abs=1e-12)
    delta = statistics.mean(expected["b"]) - statistics.mean(expected["a"])
    assert delta < 0 and results.loc["b", "bicubic_abs_error"] == 9.0
    assert list(results.columns).index("abs_error_mean") < list(results.columns).index("psnr_mean")
    assert "**b > a** (AbsErr, lower is better): holds" in index
    assert f"{delta:+.3f} levels" in index and "Lower is better for AbsErr (↓)" in index
    assert "The bicubic baseline's AbsErr is 9.000 levels on the same frames." in index
    for figure in ("per_frame_abs_error.png", "abs_error_vs_params.png", "abs_error_vs_runtime.png"):
        assert f"]({figure})" in index and (tmp_path / "report" / figure).is_file()


def test_a_report_goes_where_its_study_report_is_shipped(tmp_path, monkeypatch):
    """Without a folder, one study's report goes to its preset's: ``reports/<study>`` for the shipped preset
    (cpu), ``reports/<study>-<preset>`` otherwise; several studies need one named."""
    study = _fake_study(tmp_path / "runs", {"a": [30.0, 30.2], "b": [30.9, 31.1]})
    monkeypatch.chdir(tmp_path)
    assert default_report_folder(study) == Path("reports/toy")
    assert write_report(study, visual=False) == Path("reports/toy/index.md")
    assert (tmp_path / "reports/toy/results.csv").is_file()
    info = json.loads((study / "study.json").read_text())
    (study / "study.json").write_text(json.dumps(info | {"preset": "paper"}))
    assert default_report_folder(study) == Path("reports/toy-paper")
    other = _fake_study(tmp_path / "more", {"a": [1.0], "b": [2.0]})
    (other / "study.json").write_text((other / "study.json").read_text().replace('"toy"', '"toy2"'))
    with pytest.raises(VSRError, match=r"name the report folder \(--out\): the runs hold 2 studies"):
        default_report_folder([study, other])


# ------------------------------------------------------------------------------------------ run folders
def test_reports_read_run_folders_only_through_vsr_studies_runs(tmp_path, monkeypatch):
    """vsr.studies.runs owns the run folder's layout: renaming its files there is all the reports need."""
    study = _fake_study(tmp_path / "runs", {"a": [30.0, 30.2], "b": [30.9, 31.1]})
    write_report([study], tmp_path / "before", visual=False)
    renamed = {"RUN_FILE": "done.json", "STUDY_FILE": "definition.json", "METRICS_FILE": "scores.json",
               "PER_FRAME_FILE": "frames.csv", "LOG_FILE": "train.jsonl", "PROFILE_FILE": "cost.json"}  # fmt: skip
    for constant, name in renamed.items():
        for path in study.rglob(getattr(run_folders, constant)):
            path.rename(path.with_name(name))
        monkeypatch.setattr(run_folders, constant, name)
    write_report([study], tmp_path / "after", visual=False)
    for name in ("results.csv", "per_frame.csv", "index.md"):
        assert (tmp_path / "after" / name).read_text() == (tmp_path / "before" / name).read_text()


def test_reports_spell_no_run_folder_file_name():
    names = {v for k, v in vars(run_folders).items() if k.endswith(("_FILE", "_CHECKPOINT"))}
    names.discard(vsr.reports.index.PER_FRAME_CSV)  # the report's own per_frame.csv: every run's frames together
    assert {"run.json", "metrics.json", "checkpoints/last.pth"} <= names
    for path in sorted(Path(vsr.reports.__file__).parent.glob("*.py")):
        for literal in string_literals(path):
            assert not [name for name in names if name in literal], f"{path.name} spells {literal!r}"


# ------------------------------------------------------------------------------------------ captions
TINY_MODEL = {"channels": 8, "alignment": "none", "aggregation": {"name": "residual", "num_blocks": 1},
              "upsampling": {"name": "pixel_shuffle", "hr_channels": 8}}  # fmt: skip


def _clips(root: Path, frames: int = 6, size: int = 32) -> Path:
    """A ``folder`` data set of two clips of noise frames (LR made on the fly: ``size / 4`` pixels)."""
    rng = np.random.default_rng(0)
    for clip in ("c0", "c1"):
        (root / "GT" / clip).mkdir(parents=True)
        for i in range(frames):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "GT" / clip / f"{i:08d}.png")
    return root


def _tiny_checkpoint(run_dir: Path, data: Path) -> dict:
    """An untrained ×4 model's checkpoint where a study run keeps it; returns the run's resolved recipe."""
    recipe = load_recipe(
        {"name": "tiny", "model": TINY_MODEL, "data": {"val": {"layout": "folder", "root": str(data)}}}
    )
    save_checkpoint(build_model(recipe), run_dir / "checkpoints" / "last.pth", recipe.to_dict())
    return recipe.to_dict()


def test_visual_crops_record_the_settings_their_caption_states(tmp_path):
    run = tmp_path / "run"
    recipe = _tiny_checkpoint(run, _clips(tmp_path / "data"))
    panels = visual_crops([("tiny", run, recipe)], lr_crop=4, max_frames=3, device="cpu")
    assert len(panels) == 2
    for panel in panels:
        assert (panel["lr_crop"], panel["window"], panel["scale"]) == (4, 3, 4)
        assert panel["gt"].shape == panel["outputs"]["tiny"].shape == (3, 16, 16)
    caption = figure_visual_comparison(panels, tmp_path / "visual.png").caption
    assert "a window of 3 frames and a 4×4 LR crop of validation clips (×4)" in caption


def test_report_captions_state_the_crops_and_clips_actually_used(tmp_path):
    """Frames smaller than the default 48×48 crop, clips shorter than the 10-frame window, a profile on
    another clip than the paper's: the index says what was run."""
    study = _fake_study(tmp_path / "runs", {"a": [30.0, 30.2], "b": [30.9, 31.1]})
    data = _clips(tmp_path / "data", frames=6, size=32)
    for path in study.rglob("run.json"):
        path.write_text(json.dumps(json.loads(path.read_text()) | {"recipe": _tiny_checkpoint(path.parent, data)}))
    for path in study.rglob("profile.json"):
        path.write_text(json.dumps(json.loads(path.read_text()) | {"frames": 2, "size": [8, 8]}))
    index = write_report([study], tmp_path / "report").read_text()
    assert "](visual_comparison.png)" in index
    assert "run on a window of 6 frames and a 8×8 LR crop of validation clips (×4)" in index
    assert "48×48" not in index and "≤10" not in index
    assert "Runtime per frame on a 2×8×8 LR clip" in index
    assert "per frame of a 2×8×8 (frames×h×w) LR clip (the paper's protocol is 10×180×320)" in index

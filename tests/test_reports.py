"""Reports: the t-test against known values and an independent implementation (mpmath), the results table
against numbers computed here, the conclusions' verdicts, and a whole report written from run folders."""

from __future__ import annotations

import json
import math
import statistics

import mpmath
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from vsr.errors import VSRError
from vsr.reports import (
    collect_per_frame,
    collect_runs,
    collect_training,
    conclusions,
    regularized_incomplete_beta,
    results_table,
    student_t_cdf,
    student_t_two_sided_p,
    table_latex,
    table_markdown,
    welch_t_test,
    write_report,
)


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
    single = conclusions(_runs({"a": [30.0], "b": [30.2]}), info)[0]
    assert "single seed" in single


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
    assert not list((tmp_path / "report").glob(".*"))  # no temporary files left behind


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

"""Reports of studies scored on the real-video set with metrics of its own (``real_metrics``: NIQE on clips without
ground truth, where the validation set is scored by PSNR/SSIM), with a test-time variant (the weights of another
variant evaluated otherwise) and one trained from another's weights, and an ordering judged on the real-video set
for a lower-is-better metric: the table's columns and the conclusion's numbers checked against values computed
here (scipy's Welch test), and a study record written before ``real_metrics`` existed reported as before."""

from __future__ import annotations

import json
import math
import shutil
import statistics
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_reports import _clips, _fake_study, _tiny_checkpoint

from vsr.checkpoints import load_checkpoint
from vsr.data.datasets import TestClips
from vsr.data.layouts import open_dataset
from vsr.data.specs import evaluation_spec
from vsr.model import assemble
from vsr.probe import TemporalProbe
from vsr.recipe import load_recipe
from vsr.reports import (
    collect_runs,
    collect_training,
    conclusions,
    results_table,
    table_markdown,
    visual_crops,
    write_report,
)
from vsr.reports.collect import study_info
from vsr.studies import runs as run_folders

stats = pytest.importorskip("scipy.stats")

#: NIQE of each run on the real low-quality clips (lower is better), by variant and seed.
NIQE = {"a": [6.10, 6.32, 6.21], "b": [5.52, 5.61, 5.40], "b_chunked": [5.31, 5.22, 5.35], "b_tuned": [5.0, 5.1, 4.9]}
#: Their validation PSNR.
PSNR = {"a": [30.0, 30.2, 30.1], "b": [30.9, 31.1, 31], "b_chunked": [30.8, 31.0, 30.9], "b_tuned": [31.2, 31.3, 31.2]}
BICUBIC_NIQE = 7.25
LQ_SET = "real:/data/real/lq"  # the name evaluate records for the set (its ClipSet's name)


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _study(root: Path, *, real_metrics: bool = True) -> Path:
    """Finished run folders of a study with four variants × three seeds: a, b (the base), ``b_chunked`` (test-time:
    b's weights, clips restored in chunks) and ``b_tuned`` (trained from b's final weights). With
    ``real_metrics`` the real-video set is the GT-less one, scored by NIQE alone; without, the study record is
    one written before studies named real metrics, and the set is the GT one, scored like the validation set and
    probed for its temporal gain."""
    study = _fake_study(root, {v: PSNR[v] for v in ("a", "b")})
    for variant in ("b_chunked", "b_tuned"):  # the fixture's runs of b, with their own scores
        for seed, value in enumerate(PSNR[variant]):
            run = study / variant / f"seed{seed}"
            shutil.copytree(study / "b" / f"seed{seed}", run)
            metrics = json.loads((run / run_folders.METRICS_FILE).read_text()) | {"psnr": value}
            _write_json(run / run_folders.METRICS_FILE, metrics)
    info = json.loads((study / run_folders.STUDY_FILE).read_text())
    info["variants"] |= {"b_chunked": {"label": "B, chunked", "evaluates": "b", "starts_from": None},
                         "b_tuned": {"label": "B, tuned", "evaluates": None, "starts_from": "b"}}  # fmt: skip
    info["expect"] = [
        {"better": "b", "worse": "a", "metric": "niqe" if real_metrics else "psnr",
         "paper": -0.5 if real_metrics else 0.5, "source": "paper", "on": "real"},
        {"better": "b", "worse": "a", "metric": "psnr", "source": "", "on": None},
    ]  # fmt: skip
    if real_metrics:
        info["real_metrics"] = ["niqe"]
    else:
        for entry in info["expect"]:
            del entry["on"]
        for entry in info["variants"].values():
            entry.pop("evaluates", None), entry.pop("starts_from", None)
    _write_json(study / run_folders.STUDY_FILE, info)
    for variant in NIQE:
        for seed in range(3):
            run = study / variant / f"seed{seed}"
            record = {"study": "toy", "variant": variant, "seed": seed}
            if real_metrics:
                record |= {"evaluates": info["variants"][variant].get("evaluates"),
                           "starts_from": info["variants"][variant].get("starts_from")}  # fmt: skip
            _write_json(run / run_folders.RUN_FILE, record)
            real = run_folders.real_folder(run)
            if real_metrics:
                scores = {"niqe": NIQE[variant][seed], "bicubic": {"niqe": BICUBIC_NIQE}, "skipped": ["psnr", "ssim"],
                          "data": LQ_SET, "clips": {"lq0": {}, "lq1": {}}, "frames": 60}  # fmt: skip
            else:
                scores = {"psnr": PSNR[variant][seed] - 2, "ssim": 0.8, "bicubic": {"psnr": 26.5, "ssim": 0.75},
                          "data": "real:/data/real/gt", "clips": {"c0": {}}, "frames": 30}  # fmt: skip
                gain = pd.DataFrame({"clip": "c0", "frame": [0, 1], "psnr": 28.0, "psnr_alone": 27.9, "gain": 0.1})
                TemporalProbe(gain, {}).write(run_folders.temporal_folder(real))
            _write_json(real / run_folders.METRICS_FILE, scores)
    return study


def test_real_rows_use_the_studys_real_metrics(tmp_path):
    study = _study(tmp_path / "runs")
    runs = collect_runs(study)
    real = sorted({m for m in runs.metric if m.endswith("_real")})
    assert real == ["bicubic_niqe_real", "niqe_real"]  # no PSNR, SSIM or temporal gain: the set has no GT
    niqe = runs[runs.metric == "niqe_real"].set_index(["variant", "seed"]).value
    for variant, values in NIQE.items():
        assert niqe.loc[variant].tolist() == values
    assert set(collect_training(study).variant) == {"a", "b", "b_tuned"}  # b_chunked trained nothing itself


def test_the_real_content_group_has_a_column_per_real_metric(tmp_path):
    study = _study(tmp_path / "runs")
    index = write_report([study], tmp_path / "report", visual=False).read_text()
    table = pd.read_csv(tmp_path / "report" / "results.csv").set_index("variant")
    real_columns = [c for c in table.columns if "_real" in c]
    assert real_columns == ["niqe_real_mean", "niqe_real_std", "bicubic_niqe_real"]
    for variant, values in NIQE.items():
        assert table.loc[variant, "niqe_real_mean"] == pytest.approx(statistics.mean(values), abs=1e-12)
        assert table.loc[variant, "niqe_real_std"] == pytest.approx(statistics.stdev(values), abs=1e-12)
        assert table.loc[variant, "bicubic_niqe_real"] == BICUBIC_NIQE
    assert table.loc["b_chunked", "evaluates"] == "b" and table.loc["b_tuned", "starts_from"] == "b"

    markdown = (tmp_path / "report" / "results.md").read_text()
    header, _, *rows = markdown.splitlines()
    assert "| temporal gain (dB) | NIQE, real ↓ | params (M) |" in header
    assert "PSNR, real" not in header and "temporal gain, real" not in header
    cells = {row.split(" | ")[0].removeprefix("| "): row.split(" | ") for row in rows}
    chunked = cells["B, chunked (test-time: weights of `b`)"]
    niqe = f"{statistics.mean(NIQE['b_chunked']):.4f} ± {statistics.stdev(NIQE['b_chunked']):.4f}"
    assert chunked[header.split(" | ").index("NIQE, real ↓")] == niqe
    assert chunked[header.split(" | ").index("params (M)")] == "as `b`"  # its parameters are b's, not its own
    tuned = cells["B, tuned (trained from `b`)"]
    assert tuned[header.split(" | ").index("params (M)")] == "0.001"  # 1000 parameters (the fixture's first seed)
    assert r"B, chunked (test-time: weights of \texttt{b})" in (tmp_path / "report" / "results.tex").read_text()

    assert f"(`vsr data real`, {LQ_SET}: 2 clips, 60 frames), genuinely degraded footage without ground" in index
    assert f"where the bicubic baseline's NIQE is {BICUBIC_NIQE:.4f}." in index
    assert "A variant marked test-time is not trained" in index


def test_an_ordering_on_the_real_video_set_is_judged_on_its_scores(tmp_path):
    """b's NIQE on the real clips is lower than a's: the ordering b > a holds there; its numbers are the means,
    spread and Welch p over seeds computed here, the sentence names the set, and no temporal gain is cited (the
    set has no ground truth to probe it with)."""
    study = _study(tmp_path / "runs")
    index = write_report([study], tmp_path / "report", visual=False).read_text()
    better, worse = NIQE["b"], NIQE["a"]
    delta = statistics.mean(better) - statistics.mean(worse)
    spread = math.sqrt((statistics.variance(better) + statistics.variance(worse)) / 2)
    p = stats.ttest_ind(better, worse, equal_var=False).pvalue
    assert delta < 0 and p < 0.05
    line = next(line for line in index.splitlines() if "on the real-video set**" in line)
    assert line.startswith(f"- **b > a on the real-video set** (NIQE, lower is better; `vsr data real`, {LQ_SET}; "
                           "paper: -0.50): holds, ")  # fmt: skip
    p_text = "< 0.001" if p < 0.001 else f"= {p:.3f}"
    numbers = f"holds, {delta:+.4f}, {abs(delta) / spread:.1f}× the seed-to-seed spread of {spread:.4f} "
    assert numbers + f"(Welch p {p_text}, 3 + 3 seeds); {abs(delta) / 0.5:.0%} of the paper's difference." in line
    assert "Evidence" not in line
    psnr_line = next(line for line in index.splitlines() if line.startswith("- **b > a** (PSNR)"))
    assert f"{statistics.mean(PSNR['b']) - statistics.mean(PSNR['a']):+.3f} dB" in psnr_line


def test_an_ordering_on_the_real_video_set_cites_its_temporal_gain_and_names_what_is_missing():
    info = {"s": {"real_metrics": ["niqe"], "variants": {"a": {}, "b": {}},
                  "expect": [{"better": "b", "worse": "a", "metric": "niqe", "on": "real"}]}}  # fmt: skip
    # The validation set's temporal gains (reversed here) are not the evidence of an ordering on the real clips.
    values = {("a", "niqe_real"): [6.0, 6.1], ("b", "niqe_real"): [5.0, 5.1],
              ("a", "temporal_gain_real"): [0.10, 0.11], ("b", "temporal_gain_real"): [0.2, 0.21],
              ("a", "temporal_gain"): [9.0, 9.1], ("b", "temporal_gain"): [0.0, 0.1]}  # fmt: skip
    runs = pd.DataFrame([{"study": "s", "variant": v, "seed": seed, "metric": metric, "value": value, "run_dir": ""}
                         for (v, metric), seeds in values.items() for seed, value in enumerate(seeds)])  # fmt: skip
    (line,) = conclusions(runs, info)
    assert line.startswith("**b > a on the real-video set** (NIQE, lower is better; `vsr data real`): holds")
    p = stats.ttest_ind([0.2, 0.21], [0.10, 0.11], equal_var=False).pvalue
    assert f"(temporal gain (PSNR) on the real-video set 0.205 vs 0.105 dB, Welch p = {p:.3f})" in line
    (missing,) = conclusions(runs[~((runs.variant == "a") & (runs.metric == "niqe_real"))], info)
    assert "not measured (no real-video scores of a)." in missing
    table = results_table(runs, None, info)
    assert [c for c in table.columns if "_real" in c] == [
        "niqe_real_mean", "niqe_real_std", "temporal_gain_real_mean", "temporal_gain_real_std"]  # fmt: skip
    assert "| NIQE, real ↓ | temporal gain, real (dB) |" in table_markdown(table).splitlines()[0]


def test_a_record_without_real_metrics_reports_as_before(tmp_path):
    """A study.json written before ``real_metrics``: the real-video set's rows are the validation metrics'
    (``psnr_real``, ``ssim_real``) and its temporal gain, in the columns, headings and text that reports had."""
    study = _study(tmp_path / "runs", real_metrics=False)
    assert "real_metrics" not in study_info(study)["toy"]
    index = write_report([study], tmp_path / "report", visual=False).read_text()
    table = pd.read_csv(tmp_path / "report" / "results.csv").set_index("variant")
    assert [c for c in table.columns if "_real" in c] == [
        "psnr_real_mean", "psnr_real_std", "ssim_real_mean", "ssim_real_std", "temporal_gain_real_mean",
        "temporal_gain_real_std", "bicubic_psnr_real", "bicubic_ssim_real",
    ]  # fmt: skip
    assert "evaluates" not in table.columns and "starts_from" not in table.columns
    for variant, values in PSNR.items():
        assert table.loc[variant, "psnr_real_mean"] == pytest.approx(statistics.mean(values) - 2, abs=1e-12)
    assert table.loc["a", "temporal_gain_real_mean"] == pytest.approx(0.1)
    header = (tmp_path / "report" / "results.md").read_text().splitlines()[0]
    assert "| PSNR, real (dB) | SSIM, real | temporal gain, real (dB) | params (M) |" in header
    assert ("Columns marked *real*: the same networks, protocol and temporal gain on the real-video set (`vsr data "
            "real`, real:/data/real/gt: 1 clips, 30 frames) — real camera footage") in index  # fmt: skip
    assert "where the bicubic baseline's PSNR is 26.500 dB. The synthetic columns'" in index
    assert "- **b > a** (PSNR; paper: +0.50 dB): holds" in index and "test-time" not in index


def test_an_ordering_on_the_real_video_set_of_runs_never_scored_there_says_why(tmp_path):
    """A preset with ``real_data: false`` evaluates no run on the real-video set: its ordering on: real is not
    measured, and the conclusion says it is the study's runs that were not scored there, not one variant."""
    study = _study(tmp_path / "runs")
    for run in study.glob("*/seed*"):
        shutil.rmtree(run_folders.real_folder(run))
    index = write_report([study], tmp_path / "report", visual=False).read_text()
    line = next(line for line in index.splitlines() if "on the real-video set**" in line)
    assert line == (
        "- **b > a on the real-video set** (NIQE, lower is better; `vsr data real`; paper: -0.50): not measured (no "
        "run of this study was evaluated on the real-video set: its preset's real_data is false, or the runs "
        "finished before the set existed). [paper]"
    )
    assert "NIQE, real" not in (tmp_path / "report" / "results.md").read_text()


def test_an_ordering_on_the_real_video_set_by_a_metric_its_clips_cannot_score_says_why():
    """real_metrics may name PSNR beside NIQE (for a preset whose real-video set has ground truth); on clips without
    it PSNR is skipped, and an ordering on: real by PSNR says so and names the fix, rather than blaming a variant."""
    info = {"s": {"real_metrics": ["niqe", "psnr"], "variants": {"a": {}, "b": {}},
                  "expect": [{"better": "b", "worse": "a", "metric": "psnr", "on": "real",
                              "source": "§1"}]}}  # fmt: skip
    values = {("a", "niqe_real"): [6.0, 6.1], ("b", "niqe_real"): [5.0, 5.1],
              ("a", "psnr"): [30.0, 30.1], ("b", "psnr"): [31.0, 31.1]}  # fmt: skip
    runs = pd.DataFrame([{"study": "s", "variant": v, "seed": seed, "metric": metric, "value": value, "run_dir": ""}
                         for (v, metric), seeds in values.items() for seed, value in enumerate(seeds)])  # fmt: skip
    (line,) = conclusions(runs, info, real_data=LQ_SET)
    assert line == (
        f"**b > a on the real-video set** (PSNR; `vsr data real`, {LQ_SET}): not measured (PSNR needs ground truth, "
        "which the real-video clips these runs were scored on lack: order the variants on a no-reference metric in "
        "real_metrics, e.g. niqe). [§1]"
    )
    # where the set has ground truth (a temporal gain there) and one variant lacks its scores, that variant is named
    gt = pd.concat([runs, runs.assign(metric="temporal_gain_real", value=0.1)])
    gt = pd.concat([gt, runs[(runs.variant == "b") & (runs.metric == "psnr")].assign(metric="psnr_real")])
    assert ": not measured (no real-video scores of a). [§1]" in conclusions(gt, info)[0]


def test_a_test_time_variant_whose_source_has_no_finished_run_shows_its_own_parameters(tmp_path):
    """``vsr report`` over a folder holding a test-time variant's runs but not its source's (deleted, or not yet
    finished): the parameter cell says the number its runs measured, not 'as `b`', which would point at no row."""
    study = _study(tmp_path / "runs")
    shutil.rmtree(study / "b")
    write_report([study], tmp_path / "report", visual=False)
    header, _, *rows = (tmp_path / "report" / "results.md").read_text().splitlines()
    cells = {row.split(" | ")[0].removeprefix("| "): row.split(" | ") for row in rows}
    chunked = cells["B, chunked (test-time: weights of `b`)"]
    assert chunked[header.split(" | ").index("params (M)")] == "0.001"  # 1000 parameters (the fixture's first seed)
    assert "as `b`" not in (tmp_path / "report" / "results.md").read_text()


def test_runs_scored_before_real_metrics_changed_are_reported_with_what_they_were_scored_by(tmp_path):
    """A study file's real_metrics edited after some runs finished (a rerun keeps them): each run's real-video
    scores are read by the metrics its run.json says it was scored with, not the study's new list, which its
    ``real/metrics.json`` cannot hold (that file was neither edited nor cut short)."""
    study = _study(tmp_path / "runs")
    for run in study.glob("*/seed*"):
        record = json.loads((run / run_folders.RUN_FILE).read_text())
        scores = json.loads((run_folders.real_folder(run) / run_folders.METRICS_FILE).read_text())
        del scores["skipped"]  # scored by NIQE alone, as real_metrics said then
        _write_json(run_folders.real_folder(run) / run_folders.METRICS_FILE, scores)
        _write_json(run / run_folders.RUN_FILE, record | {"real": {"metrics": {"niqe": scores["niqe"]}}})
    info = json.loads((study / run_folders.STUDY_FILE).read_text())
    _write_json(study / run_folders.STUDY_FILE, info | {"real_metrics": ["niqe", "ssim"]})  # SSIM added since
    write_report([study], tmp_path / "report", visual=False)
    table = pd.read_csv(tmp_path / "report" / "results.csv").set_index("variant")
    assert [c for c in table.columns if "_real" in c] == ["niqe_real_mean", "niqe_real_std", "bicubic_niqe_real"]
    for variant, values in NIQE.items():
        assert table.loc[variant, "niqe_real_mean"] == pytest.approx(statistics.mean(values), abs=1e-12)


@pytest.mark.parametrize("chunk", [1, 2, 4])
def test_the_visual_comparison_restores_a_chunked_variants_frame_from_its_chunk(chunk, tmp_path):
    """A test-time variant evaluated in chunks (data.val_chunk_frames) has its source's weights: its crop is the
    shown frame (frame 3 of a 6-frame window) restored from that frame's chunk of the clip, as its evaluation
    restores it — not, as its source's, from the whole window."""
    whole = tmp_path / "whole"
    recipe = _tiny_checkpoint(whole, _clips(tmp_path / "data", frames=6, size=32))
    chunked = tmp_path / "chunked"
    shutil.copytree(whole, chunked)
    chunked_recipe = recipe | {"data": recipe["data"] | {"val_chunk_frames": chunk}}
    runs = [("whole", whole, recipe), ("chunked", chunked, chunked_recipe)]
    panels = visual_crops(runs, clips=1, lr_crop=8, max_frames=6, device="cpu")  # the whole 8×8 LR frames

    model = assemble(load_recipe(recipe).model).eval()
    load_checkpoint(model, whole / "checkpoints" / "last.pth")
    lq = TestClips(open_dataset(evaluation_spec(load_recipe(recipe))))[0]["lq"]
    first = 3 // chunk * chunk
    with torch.inference_mode():
        expected = model(lq[None, first : first + chunk])[0, 3 - first].clamp(0, 1)
        from_window = model(lq[None])[0, 3].clamp(0, 1)
    assert panels[0]["frame"] == "00000003"
    torch.testing.assert_close(panels[0]["outputs"]["chunked"], expected)
    torch.testing.assert_close(panels[0]["outputs"]["whole"], from_window)
    assert (expected - from_window).abs().max() > 1e-4


def test_paired_t_test_matches_scipy():
    from vsr.reports import paired_t_test

    a, b = [5.31, 5.22, 5.35], [5.52, 5.61, 5.40]
    expected = stats.ttest_rel(a, b)
    result = paired_t_test(a, b)
    assert (result.name, result.df) == ("paired", 2)
    assert result.t == pytest.approx(expected.statistic, rel=1e-12) and result.p == pytest.approx(expected.pvalue)
    assert paired_t_test([1.0, 2.0], [0.5, 1.5]).p == 0.0  # every seed differs by the same amount: exact
    with pytest.raises(ValueError, match="two samples of the same length >= 2"):
        paired_t_test([1.0, 2.0], [1.0])


def test_a_test_time_variant_is_compared_with_its_source_seed_by_seed(tmp_path):
    """``b_chunked`` evaluates ``b``'s weights: against ``b`` the table's p and an ordering's sentence use the paired
    test over seeds (the spread is the per-seed differences'), against ``a`` (trained on its own) Welch's."""
    study = _study(tmp_path / "runs")
    info = study_info([study])
    ordering = {"better": "b_chunked", "metric": "niqe", "on": "real", "source": ""}
    info["toy"]["expect"] = [ordering | {"worse": "b"}, ordering | {"worse": "a"}]
    runs = collect_runs(study)
    paired, unpaired = conclusions(runs, info, real_data=LQ_SET)
    p = stats.ttest_rel(NIQE["b_chunked"], NIQE["b"]).pvalue
    spread = statistics.stdev([x - y for x, y in zip(NIQE["b_chunked"], NIQE["b"], strict=True)])
    assert f"spread of the per-seed differences of {spread:.3f}" in paired
    assert f"(paired p = {p:.3f}, 3 seeds, paired)" in paired
    welch = stats.ttest_ind(NIQE["b_chunked"], NIQE["a"], equal_var=False).pvalue
    assert "(Welch p < 0.001, 3 + 3 seeds)" in unpaired if welch < 0.001 else f"Welch p = {welch:.3f}" in unpaired

    table = results_table(runs, info=info).set_index("variant")
    assert table.loc["b_chunked", "psnr_p"] == pytest.approx(stats.ttest_rel(PSNR["b_chunked"], PSNR["b"]).pvalue)
    assert table.loc["a", "psnr_p"] == pytest.approx(stats.ttest_ind(PSNR["a"], PSNR["b"], equal_var=False).pvalue)
    assert table.loc["b_tuned", "psnr_p"] == pytest.approx(
        stats.ttest_ind(PSNR["b_tuned"], PSNR["b"], equal_var=False).pvalue
    )  # trained from b, so its own weights: Welch


@pytest.mark.parametrize("effect", [0.3, 0.5, 1.0, 2.0])
def test_seeds_to_resolve_a_paired_difference(effect):
    """The paired criterion at n - 1 degrees of freedom, by scipy's Student t: ``((t_.975 + t_.8) / effect)^2 <= n``."""
    from vsr.reports import seeds_to_resolve

    def enough(n: int) -> bool:
        return ((stats.t.ppf(0.975, n - 1) + stats.t.ppf(0.8, n - 1)) / effect) ** 2 <= n

    expected = next(n for n in range(2, 1000) if enough(n))
    assert seeds_to_resolve(effect, 1.0, paired=True) == expected
    assert seeds_to_resolve(effect, 1.0, paired=True) <= seeds_to_resolve(effect, 1.0)

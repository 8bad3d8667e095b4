"""Reports of studies: the comparison tables and figures an ablation paper needs, from the run folders.

Everything is fed from tidy pandas DataFrames read from the run folders that :func:`vsr.studies.run_study`
writes (one function each, so a new figure is a new small function):

* :func:`collect_runs`: one row per (study, variant, seed, metric) from ``run.json`` / ``metrics.json``;
* :func:`collect_per_frame`: one row per (study, variant, seed, clip, frame) from ``per_frame.csv``;
* :func:`collect_training`: one row per logged value from ``log.jsonl`` (loss, validation PSNR/SSIM);
* :func:`collect_profiles`: parameters, FLOPs and runtime per run from ``profile.json``.

:func:`write_report` writes ``results.md/.csv/.tex`` (mean ± std over seeds, the difference to the base
variant with a Welch t-test p-value, parameters, FLOPs, runtime), the figures (PSNR along the sequence,
PSNR vs parameters and vs runtime, training curves, a visual comparison of crops) and ``index.md`` with a
"Conclusions" section checking the study's expected orderings against the seed-to-seed spread.

Significance: scipy is not a dependency, so the two-sided Welch t-test uses Student's t distribution
through the regularized incomplete beta function (:func:`regularized_incomplete_beta`, a Lentz continued
fraction), ``P(|T| > t) = I_{df/(df+t²)}(df/2, 1/2)``, with Welch–Satterthwaite degrees of freedom.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vsr.atomic import write_text, write_with
from vsr.errors import VSRError

RUN_FILE, STUDY_FILE, FAILED_FILE = "run.json", "study.json", "failed.json"  # as written by vsr.studies
_TABLE_METRICS = ("psnr", "ssim")
_UNITS = {"psnr": "dB", "ssim": ""}


# --------------------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------------------


def _beta_continued_fraction(a: float, b: float, x: float, eps: float = 1e-15, max_terms: int = 1000) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz), converging for x < (a+1)/(a+b+2)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, max_terms + 1):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),  # even step d_{2m}
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),  # odd step d_{2m+1}
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= c * d
        if abs(c * d - 1.0) < eps:
            return h
    raise ArithmeticError(f"incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})")


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """``I_x(a, b) = B(x; a, b) / B(a, b)`` for ``a, b > 0`` and ``0 <= x <= 1``."""
    if a <= 0 or b <= 0:
        raise ValueError(f"regularized_incomplete_beta needs a, b > 0, got a={a}, b={b}")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"regularized_incomplete_beta needs 0 <= x <= 1, got x={x}")
    if x in (0.0, 1.0):
        return x
    log_front = a * math.log(x) + b * math.log1p(-x) - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def student_t_two_sided_p(t: float, df: float) -> float:
    """``P(|T| >= |t|)`` for Student's t with ``df`` degrees of freedom (``df`` may be fractional)."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if math.isinf(t):
        return 0.0
    return regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t))


def student_t_cdf(t: float, df: float) -> float:
    """``P(T <= t)`` for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * student_t_two_sided_p(t, df)
    return 1.0 - tail if t > 0 else tail


@dataclass(frozen=True)
class WelchTest:
    """Two-sided Welch t-test of ``mean(a) - mean(b)``: statistic, Welch–Satterthwaite df and p-value."""

    difference: float
    t: float
    df: float
    p: float


def welch_t_test(a: Sequence[float], b: Sequence[float]) -> WelchTest:
    """Welch's unequal-variance t-test between two samples of at least two values each."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"welch_t_test needs at least 2 values per sample, got {len(a)} and {len(b)}")
    diff = float(a.mean() - b.mean())
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se2 = va + vb
    if se2 == 0:  # both samples constant: the difference is exact
        return WelchTest(diff, math.copysign(math.inf, diff) if diff else 0.0, math.inf, 0.0 if diff else 1.0)
    t = diff / math.sqrt(se2)
    df = se2**2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return WelchTest(diff, t, df, student_t_two_sided_p(t, df))


# --------------------------------------------------------------------------------------------------------
# Collecting the run folders
# --------------------------------------------------------------------------------------------------------


def _as_dirs(runs_dirs: str | Path | Iterable[str | Path]) -> list[Path]:
    dirs = [Path(runs_dirs)] if isinstance(runs_dirs, str | Path) else [Path(d) for d in runs_dirs]
    for d in dirs:
        if not d.is_dir():
            raise VSRError(f"runs folder {d} does not exist; pass the folder a study wrote (OUT/<study>)")
    return dirs


def _run_folders(runs_dirs) -> list[tuple[Path, dict[str, Any]]]:
    """Every finished run (a folder with ``run.json``) under the given folders, once each, sorted."""
    found: dict[Path, dict[str, Any]] = {}
    for d in _as_dirs(runs_dirs):
        for path in sorted(d.rglob(RUN_FILE)):
            found.setdefault(path.parent.resolve(), json.loads(path.read_text()))
    return sorted(found.items(), key=lambda item: (item[1]["study"], item[1]["variant"], item[1]["seed"]))


def failed_runs(runs_dirs) -> list[tuple[Path, str]]:
    """Run folders whose last attempt failed (``failed.json`` and no ``run.json``), with the error."""
    failed = []
    for d in _as_dirs(runs_dirs):
        for path in sorted(d.rglob(FAILED_FILE)):
            if not (path.parent / RUN_FILE).is_file():
                failed.append((path.parent, json.loads(path.read_text()).get("error", "?")))
    return failed


def study_info(runs_dirs) -> dict[str, dict[str, Any]]:
    """``study.json`` of every study under the folders (variant order, base, labels, expected orderings)."""
    info: dict[str, dict[str, Any]] = {}
    for d in _as_dirs(runs_dirs):
        for path in sorted([*d.glob(STUDY_FILE), *d.glob(f"*/{STUDY_FILE}")]):
            data = json.loads(path.read_text())
            info.setdefault(data["name"], data | {"dir": str(path.parent)})
    return info


def collect_runs(runs_dirs) -> pd.DataFrame:
    """One row per (study, variant, seed, metric): ``value`` from the run's ``metrics.json`` (PSNR/SSIM of the
    network and ``bicubic_psnr``/``bicubic_ssim`` of the bicubic baseline), with ``run_dir``."""
    rows = []
    for run_dir, run in _run_folders(runs_dirs):
        metrics = json.loads((run_dir / "metrics.json").read_text())
        values = {k: metrics[k] for k in _TABLE_METRICS if k in metrics}
        values |= {f"bicubic_{k}": v for k, v in (metrics.get("bicubic") or {}).items()}
        for metric, value in values.items():
            rows.append({"study": run["study"], "variant": run["variant"], "seed": int(run["seed"]),
                         "metric": metric, "value": float(value), "run_dir": str(run_dir)})  # fmt: skip
    return pd.DataFrame(rows, columns=["study", "variant", "seed", "metric", "value", "run_dir"])


def collect_per_frame(runs_dirs) -> pd.DataFrame:
    """One row per (study, variant, seed, clip, frame index) with ``psnr`` and ``ssim`` (``per_frame.csv``)."""
    frames = []
    for run_dir, run in _run_folders(runs_dirs):
        path = run_dir / "per_frame.csv"
        if not path.is_file():
            continue
        df = pd.read_csv(path, dtype={"clip": str})[["clip", "frame", "psnr", "ssim"]]
        frames.append(df.assign(study=run["study"], variant=run["variant"], seed=int(run["seed"])))
    columns = ["study", "variant", "seed", "clip", "frame", "psnr", "ssim"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def collect_training(runs_dirs) -> pd.DataFrame:
    """One row per logged value of ``log.jsonl``: ``event`` (``train`` or ``val``), ``iteration``, ``key``
    (``loss``, ``lr``, ``psnr``, ``ssim``, ...), ``value``."""
    rows = []
    for run_dir, run in _run_folders(runs_dirs):
        path = run_dir / "log.jsonl"
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            event, iteration = entry.get("event", "train"), entry.get("iteration")
            for key, value in entry.items():
                if key in ("event", "iteration") or isinstance(value, bool) or not isinstance(value, int | float):
                    continue
                rows.append({"study": run["study"], "variant": run["variant"], "seed": int(run["seed"]),
                             "event": event, "iteration": iteration, "key": key, "value": float(value)})  # fmt: skip
    return pd.DataFrame(rows, columns=["study", "variant", "seed", "event", "iteration", "key", "value"])


def collect_profiles(runs_dirs) -> pd.DataFrame:
    """One row per profiled run (``profile.json``): total parameters, FLOPs and runtime per frame, device."""
    rows = []
    for run_dir, run in _run_folders(runs_dirs):
        path = run_dir / "profile.json"
        if not path.is_file():
            continue
        prof = json.loads(path.read_text())
        rows.append({
            "study": run["study"], "variant": run["variant"], "seed": int(run["seed"]),
            "params": int(prof["params"]["total"]), "flops_per_frame": float(prof["flops_per_frame"]),
            "runtime_ms": prof.get("runtime_ms_per_frame"), "device": prof.get("device"),
            "frames": prof.get("frames"), "size": "×".join(map(str, prof.get("size", []))),
        })  # fmt: skip
    columns = ["study", "variant", "seed", "params", "flops_per_frame", "runtime_ms", "device", "frames", "size"]
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------------------------------------
# The results table
# --------------------------------------------------------------------------------------------------------


def _order(runs: pd.DataFrame, info: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(study, variant) pairs in the studies' file order (unknown ones after, alphabetically)."""
    present = list(dict.fromkeys(zip(runs["study"], runs["variant"], strict=True)))
    rank = {}
    for s, (study, data) in enumerate(info.items()):
        for v, variant in enumerate(data.get("variants", {})):
            rank[(study, variant)] = (s, v)
    return sorted(present, key=lambda key: (rank.get(key, (len(info), 0)), key))


def _resolve_base(base: str | None, study: str, info: Mapping[str, Any], keys: Sequence[tuple[str, str]]):
    if base is None:
        return (study, info.get(study, {}).get("base"))
    if "/" in base:
        key = tuple(base.split("/", 1))
    else:
        matches = [k for k in keys if k[1] == base]
        if len(matches) > 1:
            raise VSRError(f"base variant {base!r} exists in several studies; name it as study/variant")
        key = matches[0] if matches else (study, base)
    if key not in keys:
        raise VSRError(
            f"base variant {base!r} has no finished runs; choose one of {', '.join('/'.join(k) for k in keys)}"
        )
    return key


def results_table(
    runs: pd.DataFrame,
    profiles: pd.DataFrame | None = None,
    info: Mapping[str, Mapping[str, Any]] | None = None,
    base: str | None = None,
) -> pd.DataFrame:
    """One row per (study, variant): seeds, mean and sample std over seeds of each metric, the difference of
    the means to the base variant (each study's own base unless ``base``, ``variant`` or ``study/variant``,
    is given) with the two-sided Welch p-value (NaN with fewer than 2 seeds on either side), parameters,
    FLOPs per frame and runtime per frame (median over the profiled seeds)."""
    info = info or {}
    keys = _order(runs, info)
    rows = []
    for study, variant in keys:
        base_key = _resolve_base(base, study, info, keys)
        labels = info.get(study, {}).get("variants", {}).get(variant, {})
        row: dict[str, Any] = {"study": study, "variant": variant, "label": labels.get("label") or variant,
                               "base": "/".join(map(str, base_key))}  # fmt: skip
        mine = runs[(runs.study == study) & (runs.variant == variant)]
        theirs = runs[(runs.study == base_key[0]) & (runs.variant == base_key[1])]
        row["seeds"] = int(mine.seed.nunique())
        for metric in _TABLE_METRICS:
            values = mine[mine.metric == metric].sort_values("seed").value.to_numpy()
            reference = theirs[theirs.metric == metric].sort_values("seed").value.to_numpy()
            row[f"{metric}_mean"] = values.mean() if len(values) else math.nan
            row[f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 else math.nan
            row[f"{metric}_delta"] = values.mean() - reference.mean() if len(values) and len(reference) else math.nan
            is_base = (study, variant) == tuple(base_key)
            row[f"{metric}_p"] = (
                welch_t_test(values, reference).p
                if len(values) > 1 and len(reference) > 1 and not is_base
                else math.nan
            )
        bicubic = mine[mine.metric == "bicubic_psnr"].value
        row["bicubic_psnr"] = bicubic.mean() if len(bicubic) else math.nan
        prof = (
            profiles[(profiles.study == study) & (profiles.variant == variant)]
            if profiles is not None
            else pd.DataFrame()
        )
        row["params"] = prof.params.iloc[0] if len(prof) else math.nan
        row["flops_per_frame"] = prof.flops_per_frame.iloc[0] if len(prof) else math.nan
        runtimes = prof.runtime_ms.dropna() if len(prof) else pd.Series(dtype=float)
        row["runtime_ms"] = float(runtimes.median()) if len(runtimes) else math.nan
        row["device"] = prof.device.dropna().iloc[0] if len(prof) and prof.device.notna().any() else ""
        row["profile_clip"] = f"{prof.frames.iloc[0]}×{prof['size'].iloc[0]}" if len(prof) else ""
        rows.append(row)
    return pd.DataFrame(rows)


def _num(value: float, digits: int, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _significant(value: float) -> str:
    """Four significant digits: 6.291 (M parameters of BasicVSR) and 0.009547 (a tiny model) alike."""
    if value is None or math.isnan(value):
        return "—"
    return f"{value:.4g}" if value >= 1e-4 else f"{value:.2e}"


def _p(value: float) -> str:
    if value is None or math.isnan(value):
        return "—"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _display_rows(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and text cells shared by the Markdown and LaTeX tables."""
    several = table.study.nunique() > 1
    header = (["study"] if several else []) + [
        "variant", "seeds", "PSNR (dB)", "ΔPSNR (dB)", "p (PSNR)", "SSIM", "ΔSSIM", "p (SSIM)",
        "params (M)", "GFLOPs/frame", "runtime (ms/frame)",
    ]  # fmt: skip
    rows = []
    for r in table.itertuples():
        base_mark = " (base)" if r.base == f"{r.study}/{r.variant}" else ""
        cells = ([r.study] if several else []) + [
            f"{r.label}{base_mark}",
            str(r.seeds),
            f"{_num(r.psnr_mean, 3)} ± {_num(r.psnr_std, 3)}",
            _num(r.psnr_delta, 3, signed=True),
            _p(r.psnr_p),
            f"{_num(r.ssim_mean, 4)} ± {_num(r.ssim_std, 4)}",
            _num(r.ssim_delta, 4, signed=True),
            _p(r.ssim_p),
            _significant(r.params / 1e6),
            _significant(r.flops_per_frame / 1e9),
            _num(r.runtime_ms, 1),
        ]
        rows.append(cells)
    return header, rows


def table_markdown(table: pd.DataFrame) -> str:
    """The results table as GitHub Markdown."""
    header, rows = _display_rows(table)
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _latex_escape(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
        text = text.replace(char, escaped)
    return text.replace("±", r"$\pm$").replace("Δ", r"$\Delta$").replace("—", "--").replace("<", r"$<$")


def table_latex(table: pd.DataFrame, caption: str = "") -> str:
    """The results table as a LaTeX ``table`` (booktabs)."""
    header, rows = _display_rows(table)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
        r"\toprule",
        " & ".join(_latex_escape(h) for h in header) + r" \\",
        r"\midrule",
        *(" & ".join(_latex_escape(c) for c in row) + r" \\" for row in rows),
        r"\bottomrule",
        r"\end{tabular}",
    ]
    if caption:
        lines.append(r"\caption{" + _latex_escape(caption) + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------------
# Conclusions
# --------------------------------------------------------------------------------------------------------


def conclusions(runs: pd.DataFrame, info: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One sentence per expected ordering of each study: does it hold, by how much, relative to the
    seed-to-seed spread (the pooled standard deviation over seeds of the two variants), with the Welch p."""
    lines = []
    for study, data in info.items():
        preset = data.get("preset", "this")
        for e in data.get("expect", []):
            metric, unit = e.get("metric", "psnr"), _UNITS.get(e.get("metric", "psnr"), "")
            digits = 3 if metric == "psnr" else 4

            def values(variant: str, study=study, metric=metric) -> np.ndarray:
                sel = runs[(runs.study == study) & (runs.variant == variant) & (runs.metric == metric)]
                return sel.sort_values("seed").value.to_numpy()

            better, worse = values(e["better"]), values(e["worse"])
            claim = f"**{e['better']} > {e['worse']}** ({metric.upper()}"
            paper = e.get("paper")
            claim += f"; paper: {paper:+.2f} {unit}".rstrip() + ")" if paper is not None else ")"
            source = f" [{e['source']}]" if e.get("source") else ""
            if not len(better) or not len(worse):
                missing = e["better"] if not len(better) else e["worse"]
                lines.append(f"{claim}: not measured (no finished runs of {missing}).{source}")
                continue
            delta = better.mean() - worse.mean()
            shown = f"{delta:+.{digits}f} {unit}".rstrip()
            if len(better) < 2 or len(worse) < 2:
                verdict = "holds" if delta > 0 else "is reversed"
                lines.append(f"{claim}: {verdict} as measured ({shown}), but with a single seed the seed-to-seed "
                             f"spread is unknown, so this is not established.{source}")  # fmt: skip
                continue
            spread = math.sqrt((better.var(ddof=1) + worse.var(ddof=1)) / 2)
            p = welch_t_test(better, worse).p
            spread_text = f"{spread:.{digits}f} {unit}".rstrip()
            stats = f"Welch p {'< 0.001' if p < 0.001 else '= ' + _p(p)}, {len(better)} + {len(worse)} seeds"
            if abs(delta) <= spread:
                lines.append(f"{claim}: {shown} is within the seed-to-seed spread of {spread_text} ({stats}): the "
                             f"{preset} preset cannot resolve this difference.{source}")  # fmt: skip
                continue
            verdict = "holds" if delta > 0 else "is reversed"
            ratio = abs(delta) / spread if spread > 0 else math.inf
            sentence = f"{claim}: {verdict}, {shown}, {ratio:.1f}× the seed-to-seed spread of {spread_text} ({stats})"
            if p >= 0.05:
                sentence += "; not significant at the 5% level with these seeds"
            if paper and delta > 0:
                sentence += f"; {delta / abs(paper):.0%} of the paper's difference"
            lines.append(sentence + "." + source)
    return lines


# --------------------------------------------------------------------------------------------------------
# Figures (matplotlib's object API with the Agg canvas: no display, no global pyplot state)
# --------------------------------------------------------------------------------------------------------


def _figure(width: float = 7.0, height: float = 4.5, rows: int = 1, cols: int = 1, **kwargs):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, **kwargs)
    return fig, axes


def _save(fig, path: Path) -> Path:
    """Save a figure as PNG atomically (temporary file in the same folder, then rename)."""
    return write_with(lambda tmp: fig.savefig(tmp, format="png", dpi=150), path, suffix=".png")


def _series_name(study: str, variant: str, several: bool, info) -> str:
    label = info.get(study, {}).get("variants", {}).get(variant, {}).get("label") or variant
    return f"{study}/{label}" if several else label


def figure_per_frame_psnr(
    per_frame: pd.DataFrame, info: Mapping[str, Any], path: Path, base: str | None = None
) -> Path:
    """PSNR at each frame index along the sequence (the paper's propagation figure, Figs. 3–4): per variant
    the mean over clips and seeds, with a ±1 std band over seeds; right, the difference to the base."""
    fig, axes = _figure(12, 4.5, 1, 2)
    ax, ax_delta = axes[0]
    several = per_frame.study.nunique() > 1
    # Per seed: mean over clips at each frame index; then mean and std over seeds.
    per_seed = per_frame.groupby(["study", "variant", "seed", "frame"]).psnr.mean().reset_index()
    curves = per_seed.groupby(["study", "variant", "frame"]).psnr.agg(["mean", "std", "count"]).reset_index()
    keys = _order(per_frame.rename(columns={}), info) if len(per_frame) else []
    for study, variant in keys:
        c = curves[(curves.study == study) & (curves.variant == variant)]
        name = _series_name(study, variant, several, info)
        (line,) = ax.plot(c.frame, c["mean"], marker=".", label=name)
        if (c["count"] > 1).any():
            ax.fill_between(c.frame, c["mean"] - c["std"].fillna(0), c["mean"] + c["std"].fillna(0),
                            color=line.get_color(), alpha=0.2, linewidth=0)  # fmt: skip
        base_key = _resolve_base(base, study, info, keys)
        b = curves[(curves.study == base_key[0]) & (curves.variant == base_key[1])].set_index("frame")["mean"]
        delta = c.set_index("frame")["mean"] - b
        ax_delta.plot(delta.index, delta.to_numpy(), marker=".", color=line.get_color(), label=name)
    ax.set(xlabel="frame index in the clip", ylabel="PSNR (dB)", title="PSNR along the sequence (mean over clips)")
    ax_delta.axhline(0, color="0.5", linewidth=0.8)
    for a in (ax, ax_delta):
        a.xaxis.set_major_locator(_integer_ticks())
    ax_delta.set(
        xlabel="frame index in the clip", ylabel="ΔPSNR to the base (dB)", title="Difference to the base variant"
    )
    ax.legend(title="variant (band: ±1 std over seeds)", fontsize="small")
    ax_delta.legend(title="variant", fontsize="small")
    for a in (ax, ax_delta):
        a.grid(alpha=0.3)
    return _save(fig, path)


def _scatter(table: pd.DataFrame, x: str, xlabel: str, title: str, path: Path, scale: float = 1.0) -> Path:
    fig, axes = _figure(6.5, 4.5)
    ax = axes[0][0]
    several = table.study.nunique() > 1
    markers = "osD^vP*Xhp"
    xs = (table[x] * scale).to_numpy(dtype=float)
    span = np.nanmax(xs) - np.nanmin(xs) if np.isfinite(xs).any() else 0.0
    span = span or (abs(np.nanmax(xs)) if np.isfinite(xs).any() else 1.0) or 1.0
    for i, r in enumerate(table.itertuples()):
        xv = xs[i]
        if math.isnan(xv) or math.isnan(r.psnr_mean):
            continue
        # Dodge variants of equal x (e.g. the same architecture) sideways by 1.5% of the axis, so all show.
        same = [j for j in range(len(xs)) if xs[j] == xv]
        xv += (same.index(i) - (len(same) - 1) / 2) * 0.015 * span
        name = f"{r.study}/{r.label}" if several else r.label
        err = 0.0 if math.isnan(r.psnr_std) else r.psnr_std
        # Distinct markers, hollow: variants of equal size (e.g. local vs bidirectional) stay visible.
        ax.errorbar([xv], [r.psnr_mean], yerr=[err], fmt=markers[i % len(markers)], capsize=3, label=name,
                    markersize=8, markerfacecolor="none", markeredgewidth=1.5)  # fmt: skip
    ax.set(xlabel=xlabel, ylabel="PSNR (dB), mean ± std over seeds", title=title)
    ax.grid(alpha=0.3)
    if ax.has_data():
        ax.legend(fontsize="small", title="variant")
    else:
        ax.text(0.5, 0.5, "no profile.json in the runs", ha="center", va="center", transform=ax.transAxes)
    return _save(fig, path)


def figure_psnr_vs_params(table: pd.DataFrame, path: Path) -> Path:
    """PSNR against the number of parameters, one point per variant (error bar: std over seeds)."""
    return _scatter(table, "params", "parameters (millions)", "PSNR vs model size", path, scale=1e-6)


def figure_psnr_vs_runtime(table: pd.DataFrame, path: Path) -> Path:
    """PSNR against runtime per frame (paper protocol: 10-frame 180×320 LR clip), on the profiled device."""
    devices = ", ".join(sorted({d for d in table.device if d})) or "unknown device"
    clips = ", ".join(sorted({c for c in table.profile_clip if c})) or "?"
    xlabel = f"runtime (ms per frame; LR clip {clips}; {devices})"
    return _scatter(table, "runtime_ms", xlabel, "PSNR vs runtime", path)


def _integer_ticks():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def figure_training_curves(training: pd.DataFrame, info: Mapping[str, Any], path: Path, loss_name: str = "") -> Path:
    """Training loss (log scale) and validation PSNR against iteration, mean over seeds per variant."""
    fig, axes = _figure(12, 4.5, 1, 2)
    ax_loss, ax_val = axes[0]
    several = training.study.nunique() > 1
    keys = list(dict.fromkeys(zip(training.study, training.variant, strict=True)))
    keys = [k for k in _order(training.assign(metric="", value=0.0), info) if k in keys]
    for study, variant in keys:
        mine = training[(training.study == study) & (training.variant == variant)]
        name = _series_name(study, variant, several, info)
        loss = mine[(mine.event == "train") & (mine.key == "loss")].groupby("iteration").value.mean()
        (line,) = ax_loss.plot(loss.index, loss.to_numpy(), label=name)
        val = mine[(mine.event == "val") & (mine.key == "psnr")].groupby("iteration").value.mean()
        ax_val.plot(val.index, val.to_numpy(), marker="o", color=line.get_color(), label=name)
    ax_loss.set_yscale("log")
    ax_loss.set(xlabel="iteration", ylabel=f"training loss{f' ({loss_name})' if loss_name else ''}, log scale",
                title="Training loss (mean over seeds)")  # fmt: skip
    ax_val.set(xlabel="iteration", ylabel="validation PSNR (dB)", title="Validation PSNR (mean over seeds)")
    for a in (ax_loss, ax_val):
        a.grid(alpha=0.3)
        a.xaxis.set_major_locator(_integer_ticks())
        if a.has_data():
            a.legend(fontsize="small", title="variant")
    return _save(fig, path)


def _textured_crop(frame: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the ``size``×``size`` window with the most gradient energy (grid of candidates)."""
    grey = frame.mean(axis=0)
    energy = np.abs(np.diff(grey, axis=0))[:, :-1] + np.abs(np.diff(grey, axis=1))[:-1, :]
    h, w = energy.shape
    step = max(size // 4, 1)
    best, corner = -1.0, (0, 0)
    for y in range(0, max(h - size, 0) + 1, step):
        for x in range(0, max(w - size, 0) + 1, step):
            score = float(energy[y : y + size, x : x + size].sum())
            if score > best:
                best, corner = score, (y, x)
    return corner


def visual_crops(
    runs: Sequence[tuple[str, Path, Mapping[str, Any]]],
    *,
    clips: int = 2,
    lr_crop: int = 48,
    max_frames: int = 10,
    device: str | None = None,
) -> list[dict[str, Any]]:
    """Run each ``(name, run_dir, recipe)`` checkpoint on a window of at most ``max_frames`` frames and an
    ``lr_crop``×``lr_crop`` LR crop (the most textured one) of the first ``clips`` validation clips; returns per
    clip ``{"clip", "frame", "gt", "bicubic", "outputs": {name: image}}`` (HWC float arrays in [0, 1]).
    Running on a window and a crop keeps this cheap for full-size models; borders of the crop see less
    context than in the full evaluation."""
    import torch

    from vsr.checkpoints import load_checkpoint
    from vsr.data.datasets import TestClips, open_dataset
    from vsr.evaluate import bicubic_upsample, test_spec
    from vsr.model import assemble
    from vsr.recipe import load_recipe

    if not runs:
        return []
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    first_recipe = load_recipe(dict(runs[0][2]))
    source = open_dataset(test_spec(first_recipe, None))
    test = TestClips(source)
    models = []
    for name, run_dir, recipe in runs:
        model = assemble(load_recipe(dict(recipe)).model)
        load_checkpoint(model, run_dir / "checkpoints" / "last.pth")
        models.append((name, model.to(device).eval()))
    panels = []
    for index in range(min(clips, len(test))):
        sample = test[index]
        lq, gt = sample["lq"], sample["gt"]
        t = lq.shape[0]
        start = max(0, min(t // 2 - max_frames // 2, t - max_frames))
        lq, gt = lq[start : start + max_frames], gt[start : start + max_frames]
        middle = lq.shape[0] // 2
        scale = gt.shape[-1] // lq.shape[-1]
        size = min(lr_crop, lq.shape[-2], lq.shape[-1])
        y, x = _textured_crop(lq[middle].numpy(), size)
        lq_crop = lq[:, :, y : y + size, x : x + size]
        gt_crop = gt[middle, :, y * scale : (y + size) * scale, x * scale : (x + size) * scale]
        outputs = {}
        with torch.inference_mode():
            for name, model in models:
                out = model(lq_crop[None].to(device)).float().cpu()[0, middle].clamp(0, 1)
                outputs[name] = out
        panels.append({
            "clip": sample["clip"], "frame": sample["frames"][start + middle],
            "gt": gt_crop, "bicubic": bicubic_upsample(lq_crop[middle], scale).clamp(0, 1), "outputs": outputs,
        })  # fmt: skip
    return panels


def _psnr(a, b) -> float:
    from vsr.metrics import psnr

    return float(psnr(a[None], b[None])[0])


def figure_visual_comparison(panels: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """A grid of crops: one row per clip; bicubic, each variant, GT (PSNR of the crop in each title)."""
    names = list(panels[0]["outputs"]) if panels else []
    cols = len(names) + 2
    fig, axes = _figure(2.3 * cols, 2.6 * max(len(panels), 1) + 0.4, max(len(panels), 1), cols)
    for row, panel in enumerate(panels):
        images = [("bicubic", panel["bicubic"]), *panel["outputs"].items(), ("GT", panel["gt"])]
        for col, (name, image) in enumerate(images):
            ax = axes[row][col]
            ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
            title = name if name == "GT" else f"{name}\n{_psnr(image, panel['gt']):.2f} dB"
            ax.set_title(title, fontsize="small")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row][0].set_ylabel(f"{panel['clip']} / {panel['frame']}", fontsize="small")
    fig.suptitle("Visual comparison: crops of a validation frame (×4; PSNR of the crop)")
    return _save(fig, path)


# --------------------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------------------


def _relative(path: Path, start: Path) -> str:
    return os.path.relpath(Path(path).resolve(), Path(start).resolve())


def write_report(
    runs_dirs: str | Path | Iterable[str | Path],
    out_dir: str | Path,
    *,
    title: str | None = None,
    base: str | None = None,
    visual: bool = True,
) -> Path:
    """Write the report of the finished runs under ``runs_dirs`` (one or several studies' folders) into
    ``out_dir``: ``index.md``, ``results.md/.csv/.tex``, ``runs.csv``, ``per_frame.csv`` and the figures.
    ``base`` (``variant`` or ``study/variant``) replaces each study's own base; ``visual=False`` skips the
    crops (which run the checkpoints). Returns ``out_dir/index.md``."""
    dirs = _as_dirs(runs_dirs)
    out_dir = Path(out_dir)
    runs = collect_runs(dirs)
    if runs.empty:
        raise VSRError(f"no finished runs (run.json) under {', '.join(map(str, dirs))}; run the study first")
    info = study_info(dirs)
    per_frame, training, profiles = collect_per_frame(dirs), collect_training(dirs), collect_profiles(dirs)
    table = results_table(runs, profiles, info, base)
    studies = list(dict.fromkeys(table.study))
    title = (
        title
        or (info.get(studies[0], {}).get("title") if len(studies) == 1 else None)
        or ("Study: " + ", ".join(studies))
    )

    write_text(table.to_csv(index=False), out_dir / "results.csv")
    write_text(runs.to_csv(index=False), out_dir / "runs.csv")
    write_text(per_frame.to_csv(index=False), out_dir / "per_frame.csv")
    markdown = table_markdown(table)
    write_text(markdown, out_dir / "results.md")
    write_text(table_latex(table, caption=title), out_dir / "results.tex")

    clip = ", ".join(sorted({c for c in table.profile_clip if c})) or "(not profiled)"
    devices = sorted({d for d in table.device if d})
    protocol_note = "" if clip == "10×180×320" else " (the paper's protocol is 10×180×320)"
    captions = {
        "per_frame_psnr": (
            "PSNR along the sequence",
            "PSNR at each frame index, mean over validation clips and seeds (band: ±1 std over seeds); right: "
            "difference to the base variant (paper Figs. 3–4).",
        ),
        "psnr_vs_params": ("PSNR vs parameters", "Error bars: ±1 std over seeds."),
        "psnr_vs_runtime": (
            "PSNR vs runtime",
            f"Runtime per frame on a {clip} LR clip (frames×h×w; median of repeats), on the device named.",
        ),
        "training_curves": ("Training curves", "Training loss per log step and validation PSNR, mean over seeds."),
        "visual_comparison": (
            "Visual comparison",
            "Each variant's checkpoint (first seed) run on a window of ≤10 frames and a 48×48 LR crop of "
            "validation clips; the middle frame is shown.",
        ),
    }
    written: list[str] = []
    if len(per_frame):
        written.append(figure_per_frame_psnr(per_frame, info, out_dir / "per_frame_psnr.png", base).stem)
    written.append(figure_psnr_vs_params(table, out_dir / "psnr_vs_params.png").stem)
    written.append(figure_psnr_vs_runtime(table, out_dir / "psnr_vs_runtime.png").stem)
    if len(training):
        path = figure_training_curves(training, info, out_dir / "training_curves.png", _loss_name(runs))
        written.append(path.stem)
    visual_note = ""
    if visual:
        try:
            panels = visual_crops(_visual_runs(runs, info))
            if panels:
                written.append(figure_visual_comparison(panels, out_dir / "visual_comparison.png").stem)
        except (VSRError, OSError, KeyError, RuntimeError) as err:
            visual_note = f"The visual comparison was skipped: {err}"

    lines = [f"# {title}", ""]
    for study in studies:
        data = info.get(study, {})
        if data.get("description"):
            lines += [data["description"], ""]
        seeds = sorted(runs[runs.study == study].seed.unique())
        lines.append(
            f"- **{study}**: preset `{data.get('preset', '?')}`, seeds {', '.join(map(str, seeds))}, "
            f"runs in `{_relative(Path(data.get('dir', dirs[0])), out_dir)}`"
            + (f", study file `{data['source']}`" if data.get("source") else "")
        )
    lines += ["", "## Results", "", markdown]
    lines += [
        "Mean ± sample standard deviation over seeds of the validation PSNR/SSIM (frames averaged per clip, then "
        "clips). Δ: difference of the means to the base variant; p: two-sided Welch t-test over seeds (Student's "
        "t via the regularized incomplete beta function; — with fewer than 2 seeds). Parameters and FLOPs "
        f"(1 multiply-accumulate = 2 FLOPs; `vsr.profile`) and runtime are per frame of a {clip} (frames×h×w) LR "
        f"clip{protocol_note}; runtime measured on {', '.join(devices) or 'an unknown device'}. "
        f"The bicubic baseline scores {_num(table.bicubic_psnr.mean(), 3)} dB on the same frames.",
        "",
        "Files: [results.csv](results.csv), [results.tex](results.tex), [runs.csv](runs.csv) (every run and metric), "
        "[per_frame.csv](per_frame.csv).",
        "",
        "## Conclusions",
        "",
    ]
    found = conclusions(runs, info)
    lines += [f"- {line}" for line in found] if found else ["- The study file states no expected orderings."]
    lines.append("")
    for stem in written:
        heading, caption = captions[stem]
        lines += [f"## {heading}", "", f"![{heading}]({stem}.png)", "", caption, ""]
    if visual_note:
        lines += [visual_note, ""]
    failed = failed_runs(dirs)
    if failed:
        lines += ["## Failed runs", "", "Not in the table; rerun the study to retry them.", ""]
        lines += [f"- `{_relative(run_dir, out_dir)}`: {error}" for run_dir, error in failed] + [""]
    index = write_text("\n".join(lines), out_dir / "index.md")
    return index


def _loss_name(runs: pd.DataFrame) -> str:
    for run_dir in runs.run_dir.unique():
        path = Path(run_dir) / "run_spec.json"
        if path.is_file():
            return str(json.loads(path.read_text())["recipe"]["train"].get("loss", ""))
    return ""


def _visual_runs(runs: pd.DataFrame, info) -> list[tuple[str, Path, dict[str, Any]]]:
    """The first seed's run folder and recipe of every (study, variant), in table order."""
    several = runs.study.nunique() > 1
    chosen = []
    for study, variant in _order(runs, info):
        mine = runs[(runs.study == study) & (runs.variant == variant)].sort_values("seed")
        run_dir = Path(mine.run_dir.iloc[0])
        recipe = json.loads((run_dir / RUN_FILE).read_text())["recipe"]
        chosen.append((_series_name(study, variant, several, info), run_dir, recipe))
    return chosen


__all__ = [
    "WelchTest",
    "collect_per_frame",
    "collect_profiles",
    "collect_runs",
    "collect_training",
    "conclusions",
    "failed_runs",
    "figure_per_frame_psnr",
    "figure_psnr_vs_params",
    "figure_psnr_vs_runtime",
    "figure_training_curves",
    "figure_visual_comparison",
    "regularized_incomplete_beta",
    "results_table",
    "student_t_cdf",
    "student_t_two_sided_p",
    "table_latex",
    "table_markdown",
    "visual_crops",
    "welch_t_test",
    "write_report",
]

"""The results table: mean ± std over seeds per variant of each metric, the difference to the base with its
p-value (Welch's t-test, or the paired one for a variant that shares its weights with the base seed by seed),
parameters, FLOPs and runtime, and the real-content group (each metric the real-video set was
scored with and, where it has ground truth, the temporal gain there, ``<metric>_real_mean`` / ``_std``, where
the runs were evaluated on it); as a DataFrame (``results.csv``), Markdown and LaTeX. Each metric's label, unit,
decimals and direction (a lower-is-better one is marked ↓) come from the registry (:class:`vsr.metrics.Metric`).

A variant that depends on another (a test-time variant evaluating its weights, or one trained from its final
weights) says so beside its name; a test-time variant's parameters are its source's, and shown as such (as its own
number where the table has no row of its source)."""

from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd

from vsr.evaluate import BASELINE_PREFIX
from vsr.metrics import metric_class
from vsr.reports.collect import REAL_SUFFIX
from vsr.reports.stats import welch_t_test
from vsr.reports.variants import (
    Info,
    resolve_base,
    seed_test,
    shown_metrics,
    shown_real_metrics,
    source_note,
    variant_label,
    variant_order,
    variant_source,
)


def results_table(
    runs: pd.DataFrame,
    profiles: pd.DataFrame | None = None,
    info: Info | None = None,
    base: str | None = None,
) -> pd.DataFrame:
    """One row per (study, variant): seeds, mean and sample std over seeds of each metric, the difference of
    the means to the base variant (each study's own base unless ``base``, ``variant`` or ``study/variant``,
    is given) with the two-sided p-value over seeds (:func:`vsr.reports.variants.seed_test`: paired where the
    variant shares its weights with the base seed by seed, else Welch's; NaN with fewer than 2 seeds on either
    side), parameters,
    FLOPs per frame and runtime per frame (median over the profiled seeds). The metrics are the studies'
    (:func:`vsr.reports.variants.shown_metrics`); a difference is the raw ``mean - base mean``, whichever way
    the metric is better. Where a study has dependent variants, ``evaluates`` and ``starts_from`` name each
    one's source (:func:`vsr.reports.variants.variant_source`)."""
    info = info or {}
    keys = variant_order(runs, info)
    metrics = shown_metrics(runs, info)
    real = real_group(runs, info) if runs.metric.str.endswith(REAL_SUFFIX).any() else None
    sources = {key: variant_source(*key, info) for key in keys}
    dependent = any(any(source.values()) for source in sources.values())
    rows = []
    for study, variant in keys:
        base_key = resolve_base(base, study, info, keys)
        row: dict[str, Any] = {"study": study, "variant": variant, "label": variant_label(study, variant, info),
                               "base": "/".join(map(str, base_key))}  # fmt: skip
        if dependent:
            row |= {name: source or "" for name, source in sources[(study, variant)].items()}
        mine = runs[(runs.study == study) & (runs.variant == variant)]
        theirs = runs[(runs.study == base_key[0]) & (runs.variant == base_key[1])]
        row["seeds"] = int(mine.seed.nunique())
        for metric in metrics:
            values = mine[mine.metric == metric].set_index("seed").value.sort_index()
            reference = theirs[theirs.metric == metric].set_index("seed").value.sort_index()
            row[f"{metric}_mean"] = values.mean() if len(values) else math.nan
            row[f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 else math.nan
            row[f"{metric}_delta"] = values.mean() - reference.mean() if len(values) and len(reference) else math.nan
            same_study = base_key[0] == study
            test = seed_test(study, variant, base_key[1], info, values, reference) if same_study else None
            if not same_study and len(values) > 1 and len(reference) > 1:
                test = welch_t_test(values.to_numpy(), reference.to_numpy())
            is_base = (study, variant) == tuple(base_key)
            row[f"{metric}_p"] = test.p if test is not None and not is_base else math.nan
        gains = mine[mine.metric == "temporal_gain"].value
        row["temporal_gain_mean"] = gains.mean() if len(gains) else math.nan
        row["temporal_gain_std"] = gains.std(ddof=1) if len(gains) > 1 else math.nan
        for metric in metrics:
            bicubic = mine[mine.metric == BASELINE_PREFIX + metric].value
            row[BASELINE_PREFIX + metric] = bicubic.mean() if len(bicubic) else math.nan
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
        if real is not None:
            row |= _real_columns(mine, real)
        rows.append(row)
    return pd.DataFrame(rows)


def real_group(runs: pd.DataFrame, info: Info) -> tuple[list[str], list[str]]:
    """The real-content group's columns: the real metrics and, where any run has one, the temporal gain (a set
    without ground truth has none); then the metrics whose bicubic baseline any run has there."""
    present = set(runs.metric)
    shown = shown_real_metrics(runs, info)
    gain = ["temporal_gain"] if "temporal_gain" + REAL_SUFFIX in present else []
    return [*shown, *gain], [m for m in shown if BASELINE_PREFIX + m + REAL_SUFFIX in present]


def _real_columns(mine: pd.DataFrame, group: tuple[list[str], list[str]]) -> dict[str, float]:
    """One variant's real-content group (:func:`real_group`): mean and sample std over seeds of each value on
    the real-video set, and the bicubic baseline's metrics there."""
    row = {}
    names, bicubic_names = group
    for name in names:
        values = mine[mine.metric == name + REAL_SUFFIX].value
        row[f"{name}{REAL_SUFFIX}_mean"] = values.mean() if len(values) else math.nan
        row[f"{name}{REAL_SUFFIX}_std"] = values.std(ddof=1) if len(values) > 1 else math.nan
    for name in bicubic_names:
        bicubic = mine[mine.metric == BASELINE_PREFIX + name + REAL_SUFFIX].value
        row[BASELINE_PREFIX + name + REAL_SUFFIX] = bicubic.mean() if len(bicubic) else math.nan
    return row


def real_metrics(table: pd.DataFrame) -> list[str]:
    """The metrics of a results table's real-content group (``psnr``, ..., ``temporal_gain``), in its order;
    none for runs that were not evaluated on the real-video set."""
    suffix = f"{REAL_SUFFIX}_mean"
    return [column.removesuffix(suffix) for column in table.columns if column.endswith(suffix)]


def format_number(value: float, digits: int, signed: bool = False) -> str:
    """``value`` with ``digits`` decimals (and its sign if ``signed``); ``—`` when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _mean_std(mean: float, std: float, digits: int) -> str:
    """``mean ± std``; ``—`` when there is no mean (a metric the runs did not record)."""
    return "—" if math.isnan(mean) else f"{format_number(mean, digits)} ± {format_number(std, digits)}"


def _significant(value: float) -> str:
    """Four significant digits: 6.291 (M parameters of BasicVSR) and 0.009547 (a tiny model) alike."""
    if value is None or math.isnan(value):
        return "—"
    return f"{value:.4g}" if value >= 1e-4 else f"{value:.2e}"


def format_p(value: float) -> str:
    """A p-value with three decimals, ``<0.001`` below that; ``—`` when missing."""
    if value is None or math.isnan(value):
        return "—"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def table_metrics(table: pd.DataFrame) -> list[str]:
    """The metrics of a results table, in its column order."""
    return [column.removesuffix("_mean") for column in table.columns
            if column.endswith("_mean") and column != "temporal_gain_mean"
            and not column.endswith(f"{REAL_SUFFIX}_mean")]  # fmt: skip


def metric_heading(metric: str) -> str:
    """``PSNR (dB)``, ``SSIM``, ``MAE ↓`` (lower is better): a metric's label, unit and direction."""
    kind = metric_class(metric)
    unit = f" ({kind.unit})" if kind.unit else ""
    return f"{kind.label}{unit}" + ("" if kind.higher_is_better else " ↓")


def _real_heading(name: str) -> str:
    """``PSNR, real (dB)``, ``temporal gain, real (dB)``: a column of the real-content group."""
    if name == "temporal_gain":
        return "temporal gain, real (dB)"
    kind = metric_class(name)
    unit = f" ({kind.unit})" if kind.unit else ""
    return f"{kind.label}, real{unit}" + ("" if kind.higher_is_better else " ↓")


def _text(value: Any) -> str:
    """A text cell of a results table: ``""`` for a missing one (None, or NaN as read back from the CSV)."""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _display_rows(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and text cells shared by the Markdown and LaTeX tables."""
    several = table.study.nunique() > 1
    metrics = table_metrics(table)
    header = (["study"] if several else []) + ["variant", "seeds"]
    for metric in metrics:
        kind = metric_class(metric)
        unit = f" ({kind.unit})" if kind.unit else ""
        header += [metric_heading(metric), f"Δ{kind.label}{unit}", f"p ({kind.label})"]
    header += ["temporal gain (dB)"]
    real = real_metrics(table)
    header += [_real_heading(name) for name in real]
    header += ["params (M)", "GFLOPs/frame", "runtime (ms/frame)"]
    rows = []
    shown = set(zip(table.study, table.variant, strict=True))
    for r in table.to_dict("records"):
        base_mark = " (base)" if r["base"] == f"{r['study']}/{r['variant']}" else ""
        evaluates = _text(r.get("evaluates"))
        note = source_note(evaluates, _text(r.get("starts_from")))
        same_as = evaluates and (r["study"], evaluates) in shown  # its source's row shows the parameters
        name = f"{r['label']}{base_mark}" + (f" ({note})" if note else "")
        cells = ([r["study"]] if several else []) + [name, str(r["seeds"])]
        for metric in metrics:
            digits = metric_class(metric).digits
            cells += [
                _mean_std(r[f"{metric}_mean"], r[f"{metric}_std"], digits),
                format_number(r[f"{metric}_delta"], digits, signed=True),
                format_p(r[f"{metric}_p"]),
            ]
        cells.append(_mean_std(r["temporal_gain_mean"], r["temporal_gain_std"], 3))
        for name in real:
            digits = 3 if name == "temporal_gain" else metric_class(name).digits
            cells.append(_mean_std(r[f"{name}{REAL_SUFFIX}_mean"], r[f"{name}{REAL_SUFFIX}_std"], digits))
        cells += [
            f"as `{evaluates}`" if same_as else _significant(r["params"] / 1e6),
            _significant(r["flops_per_frame"] / 1e9),
            format_number(r["runtime_ms"], 1),
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
    text = (
        text.replace("±", r"$\pm$")
        .replace("Δ", r"$\Delta$")
        .replace("↓", r"$\downarrow$")
        .replace("—", "--")
        .replace("<", r"$<$")
    )
    return re.sub(r"`([^`]*)`", r"\\texttt{\1}", text)  # a variant's name, as Markdown's `name`


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


def profiled_clips(table: pd.DataFrame) -> list[str]:
    """The LR clips (``frames×h×w``) the variants' runtimes and FLOPs were measured on."""
    return sorted({c for c in table.profile_clip if c})


def profiled_devices(table: pd.DataFrame) -> list[str]:
    """The devices the variants' runtimes were measured on."""
    return sorted({d for d in table.device if d})

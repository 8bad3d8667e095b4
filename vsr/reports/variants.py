"""The variants a report shows: their order (as in the study files), names, what each depends on (the weights a
test-time variant evaluates, those a variant is trained from) and the base each is compared to; and the metrics
it shows, in the studies' order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from vsr.errors import VSRError
from vsr.evaluate import BASELINE_PREFIX
from vsr.reports.collect import REAL_SUFFIX
from vsr.reports.stats import SeedTest, paired_t_test, welch_t_test

Info = Mapping[str, Mapping[str, Any]]  # study name -> its study.json (see vsr.reports.collect.study_info)

#: Long-form rows of ``collect_runs`` that are not a metric of the network: the probe's gain (PSNR-based).
NOT_METRICS = ("temporal_gain",)


def shown_metrics(runs: pd.DataFrame, info: Info) -> list[str]:
    """The metrics of the runs (long-form rows of ``collect_runs``) in the order the studies name them (a
    study's ``metrics``; its first is the figures' metric), then any other the runs were evaluated with; their
    real-content rows (``psnr_real``) are the same metrics on other clips, not metrics of their own."""
    present = [m for m in dict.fromkeys(runs["metric"]) if not m.startswith(BASELINE_PREFIX) and m not in NOT_METRICS
               and not m.endswith(REAL_SUFFIX)]  # fmt: skip
    return _in_studies_order(present, [m for data in info.values() for m in data.get("metrics", [])])


def shown_real_metrics(runs: pd.DataFrame, info: Info) -> list[str]:
    """The metrics the runs were scored with on the real-video set (their ``<metric>_real`` rows), in the order
    the studies name them (a study's ``real_metrics``, else, in a record written before studies named them, its
    ``metrics``), then any other."""
    present = [m.removesuffix(REAL_SUFFIX) for m in dict.fromkeys(runs["metric"])
               if m.endswith(REAL_SUFFIX) and not m.startswith(BASELINE_PREFIX)]  # fmt: skip
    present = [m for m in present if m not in NOT_METRICS]
    named = [m for data in info.values() for m in data.get("real_metrics", data.get("metrics", []))]
    return _in_studies_order(present, named)


def _in_studies_order(present: Sequence[str], named: Sequence[str]) -> list[str]:
    return [m for m in dict.fromkeys(named) if m in present] + [m for m in present if m not in named]


def variant_order(frame: pd.DataFrame, info: Info) -> list[tuple[str, str]]:
    """The (study, variant) pairs of ``frame`` in the studies' file order (unknown ones after, alphabetically)."""
    present = list(dict.fromkeys(zip(frame["study"], frame["variant"], strict=True)))
    rank = {}
    for s, (study, data) in enumerate(info.items()):
        for v, variant in enumerate(data.get("variants", {})):
            rank[(study, variant)] = (s, v)
    return sorted(present, key=lambda key: (rank.get(key, (len(info), 0)), key))


def resolve_base(base: str | None, study: str, info: Info, keys: Sequence[tuple[str, str]]) -> tuple[str, str]:
    """The (study, variant) that ``study``'s variants are compared to: the study's own base, or ``base``
    (``variant`` or ``study/variant``), which must be one of the finished ``keys``."""
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


def variant_label(study: str, variant: str, info: Info) -> str:
    """The variant's label from the study file, or its name."""
    return info.get(study, {}).get("variants", {}).get(variant, {}).get("label") or variant


def variant_source(study: str, variant: str, info: Info) -> dict[str, str | None]:
    """What a variant depends on, from the study file: ``evaluates``, the variant whose weights (of the same
    seed) it evaluates at test time, untrained; ``starts_from``, the variant whose final weights it is trained
    from. Each None where it does not."""
    entry = info.get(study, {}).get("variants", {}).get(variant, {})
    return {"evaluates": entry.get("evaluates"), "starts_from": entry.get("starts_from")}


def share_weights(study: str, a: str, b: str, info: Info) -> bool:
    """Whether runs of variants ``a`` and ``b`` of the same seed hold the same weights: one evaluates the other's at
    test time, or both evaluate a third's. Their differences then pair seed by seed (:func:`seed_test`)."""

    def weights(variant: str) -> str:
        return variant_source(study, variant, info)["evaluates"] or variant

    return a != b and weights(a) == weights(b)


def seed_test(study: str, a: str, b: str, info: Info, values_a: pd.Series, values_b: pd.Series) -> SeedTest | None:
    """The two-sided t-test of ``mean(a) - mean(b)`` over seeds (``values_*``: one value per seed, indexed by the
    seed): paired where the two variants share their weights seed by seed and have the same seeds, Welch's
    otherwise; None with fewer than 2 seeds on either side."""
    if len(values_a) < 2 or len(values_b) < 2:
        return None
    if share_weights(study, a, b, info) and set(values_a.index) == set(values_b.index):
        return paired_t_test(values_a.sort_index().to_numpy(), values_b.sort_index().to_numpy())
    return welch_t_test(values_a.to_numpy(), values_b.to_numpy())


def source_note(evaluates: str | None, starts_from: str | None) -> str:
    """``test-time: weights of `cleaning``` or ``trained from `real```: how a variant's weights came to be, where
    not trained by it from scratch; ``""`` otherwise."""
    if evaluates:
        return f"test-time: weights of `{evaluates}`"
    return f"trained from `{starts_from}`" if starts_from else ""


def series_name(study: str, variant: str, several: bool, info: Info) -> str:
    """A variant's name in a legend: its label, prefixed by its study when ``several`` studies are shown."""
    label = variant_label(study, variant, info)
    return f"{study}/{label}" if several else label

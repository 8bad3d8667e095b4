"""Reports of studies: the comparison tables and figures an ablation paper needs, from the run folders.

Everything is fed from tidy pandas DataFrames read from the run folders that :func:`vsr.studies.run_study`
writes (one function each, so a new figure is a new small function):

* :mod:`vsr.reports.collect`: the DataFrames (runs × metrics, per frame, training logs, profiles), read
  through :mod:`vsr.studies.runs`, the module that owns the run folder's layout;
* :mod:`vsr.reports.stats`: Student's t and the Welch t-test over seeds;
* :mod:`vsr.reports.tables`: the results table (mean ± std, difference to the base and its p-value,
  parameters, FLOPs, runtime) as CSV, Markdown and LaTeX;
* :mod:`vsr.reports.conclusions`: whether the paper's expected orderings hold, against the seed spread;
* :mod:`vsr.reports.figures` and :mod:`vsr.reports.crops`: the primary metric along the sequence, against
  parameters and runtime, training curves, the temporal gain (PSNR), a visual comparison of crops;
* :mod:`vsr.reports.index`: :func:`write_report`, which writes all of it and ``index.md``;
* :mod:`vsr.reports.study`: :func:`run_and_report`, a study run then reported (what ``vsr study`` does).

Names, units and directions of the metrics come from the registry (:class:`vsr.metrics.Metric`).
"""

from vsr.reports.collect import collect_per_frame, collect_profiles, collect_runs, collect_training, failed_runs
from vsr.reports.conclusions import conclusions, frame_contrast
from vsr.reports.crops import visual_crops
from vsr.reports.figures import (
    figure_metric_vs_params,
    figure_metric_vs_runtime,
    figure_per_frame_metric,
    figure_training_curves,
    figure_visual_comparison,
)
from vsr.reports.index import default_report_folder, write_report
from vsr.reports.stats import (
    SeedTest,
    paired_t_test,
    regularized_incomplete_beta,
    seeds_to_resolve,
    student_t_cdf,
    student_t_quantile,
    student_t_two_sided_p,
    welch_t_test,
)
from vsr.reports.study import run_and_report
from vsr.reports.tables import results_table, table_latex, table_markdown

__all__ = [
    "SeedTest",
    "collect_per_frame",
    "collect_profiles",
    "collect_runs",
    "collect_training",
    "conclusions",
    "default_report_folder",
    "failed_runs",
    "figure_metric_vs_params",
    "figure_metric_vs_runtime",
    "figure_per_frame_metric",
    "figure_training_curves",
    "figure_visual_comparison",
    "frame_contrast",
    "paired_t_test",
    "regularized_incomplete_beta",
    "results_table",
    "run_and_report",
    "seeds_to_resolve",
    "student_t_cdf",
    "student_t_quantile",
    "student_t_two_sided_p",
    "table_latex",
    "table_markdown",
    "visual_crops",
    "welch_t_test",
    "write_report",
]

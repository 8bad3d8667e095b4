"""Studies: train and evaluate every variant of an ablation, several seeds each (:mod:`vsr.reports` then
reports the comparison; it reads what studies write, and studies never import it).

* :mod:`vsr.studies.schema`: study files (a base recipe per preset, variants as recipe overrides, test-time
  variants and variants trained on from another's weights, the orderings the paper reports), validated;
* :mod:`vsr.studies.runs`: the run folder ``OUT/<study>/<variant>/seed<k>/``, the one place naming its
  files (read by :mod:`vsr.reports` too), and the finding of identical runs of other studies;
* :mod:`vsr.studies.file_checks`: what its readers check in a file read back (a damaged one is one error
  naming the file and the fix);
* :mod:`vsr.studies.executors`: one after another, ``--jobs`` worker processes, Slurm through submitit,
  ``torchrun`` for several GPUs per run;
* :mod:`vsr.studies.driver`: :func:`plan_runs`, :func:`run_one` and :func:`run_study`.
* the default report folder of a study's preset: :func:`report_folder` (``reports/<study>/`` for the
  :data:`SHIPPED_PRESET`, where the shipped reports are).
"""

from vsr.studies.driver import RunsFailed, StudyRun, plan_runs, run_one, run_study
from vsr.studies.executors import EXECUTORS, torchrun_command
from vsr.studies.runs import RunSpec, check_run_folder, find_twin_run, run_finished
from vsr.studies.schema import (
    DEFAULT_METRICS,
    PROFILE_DEFAULTS,
    REAL_SET,
    SHIPPED_PRESET,
    Expectation,
    Preset,
    Study,
    StudyError,
    Variant,
    data_overrides,
    load_study,
    parse_study,
    report_folder,
    shipped_studies,
)

__all__ = [
    "DEFAULT_METRICS",
    "EXECUTORS",
    "PROFILE_DEFAULTS",
    "REAL_SET",
    "SHIPPED_PRESET",
    "Expectation",
    "Preset",
    "RunSpec",
    "RunsFailed",
    "Study",
    "StudyError",
    "StudyRun",
    "Variant",
    "check_run_folder",
    "data_overrides",
    "find_twin_run",
    "load_study",
    "parse_study",
    "plan_runs",
    "report_folder",
    "run_finished",
    "run_one",
    "run_study",
    "shipped_studies",
    "torchrun_command",
]

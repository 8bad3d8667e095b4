"""Training of a recipe: BasicVSR's schedule (paper §4; MMagic ``basicvsr_2xb4_reds4``) from the ``train``
keys (every key is in :data:`vsr.recipe.DEFAULTS`). One module per job:

* :mod:`~vsr.training.objectives`: what is trained and scored (``train.objective``: ``sr`` or ``flow``
  pretraining of the flow estimator);
* :mod:`~vsr.training.optim`, :mod:`~vsr.training.pretrained`: Adam with the pretrained modules (flow
  estimator, refill extractor) at ``lr × pretrained_lr_mult``, loaded from ``train.init`` and frozen for
  the first ``fix_iterations`` steps;
* :mod:`~vsr.training.schedule`: cosine annealing with restarts, stepped per iteration;
* :mod:`~vsr.training.precision`, :mod:`~vsr.training.distributed`: one code path for every device (bf16
  autocast and channels-last on CUDA by default; DDP under ``torchrun``, rank 0 validates and writes);
* :mod:`~vsr.training.state`: the state a resumed run continues from, bit-exactly on CPU (training samples
  are a pure function of the iteration, :class:`vsr.data.sampling.RunSampler`);
* :mod:`~vsr.training.resume`: what a resumed run may change of its recipe, and making a change real;
* :mod:`~vsr.training.ema`: the moving average of the weights (``train.ema``), validated and exported;
* :mod:`~vsr.training.runlog`: ``log.jsonl`` and ``metrics.csv``; :mod:`~vsr.training.tensorboard`: the same
  numbers and a validation image as TensorBoard event files (``train.tensorboard``);
* :mod:`~vsr.training.trainer`: the run itself, :func:`train` and its result (:class:`RunResult`);
* :mod:`~vsr.training.files`: the names of the files a run writes in its folder.
"""

from vsr.training.objectives import FlowObjective, FlowPretraining, Objective, SuperResolution
from vsr.training.optim import build_optimizer
from vsr.training.pretrained import WEIGHTS_DIR, resolve_init, set_pretrained_frozen
from vsr.training.runlog import RunLog
from vsr.training.schedule import CosineRestartLR, build_scheduler, cosine_restart_lr
from vsr.training.state import RunState
from vsr.training.trainer import RunResult, Trainer, train

__all__ = [
    "WEIGHTS_DIR",
    "CosineRestartLR",
    "FlowObjective",
    "FlowPretraining",
    "Objective",
    "RunLog",
    "RunResult",
    "RunState",
    "SuperResolution",
    "Trainer",
    "build_optimizer",
    "build_scheduler",
    "cosine_restart_lr",
    "resolve_init",
    "set_pretrained_frozen",
    "train",
]

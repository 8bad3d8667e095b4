"""Executors: how the runs of a study are carried out, given the function that carries out one run.

``local`` runs one run after another in this process (``jobs=N``: N at once in worker processes that share
the CPU threads, whose progress lines, where stdout is not a terminal, each name their run); ``slurm``
submits one job per run through ``submitit`` (parameters from the preset's ``slurm`` mapping) and waits for
them; ``submitit-local`` is the same through submitit's local executor (a subprocess per run; for testing).
Ctrl-C while waiting cancels the jobs still running; rerunning resumes them from their checkpoints. A run
on several GPUs trains under ``torchrun`` (:func:`torchrun_command`). Every executor returns the failed runs
as ``key: error`` lines: a failing run never stops the others.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import submitit
import torch
from rich.console import Console
from rich.text import Text

from vsr.evaluate import describe_scores
from vsr.progress import label, plain_lines, progress_bar
from vsr.studies.runs import FAILED_FILE, RunSpec, torchrun_recipe_file
from vsr.studies.schema import StudyError

EXECUTORS = ("local", "slurm", "submitit-local")
POLL_SECONDS = 5.0  # how often the submitit executors' jobs are checked

#: Carries out one run: ``run(spec, progress)`` returns the run's record (``run.json``) or raises.
RunFunction = Callable[[RunSpec, bool], Mapping[str, Any]]


def torchrun_command(spec: RunSpec, resume: bool) -> list[str]:
    """``torchrun`` command line that trains one run on ``spec.gpus`` GPUs of this node (DDP)."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={spec.gpus}",
        "-m", "vsr", "train", str(torchrun_recipe_file(spec.run_dir)), "--out", str(Path(spec.run_dir)),
        *(["--resume"] if resume else []),
    ]  # fmt: skip


def run_all(
    run: RunFunction,
    specs: Sequence[RunSpec],
    total: int,
    *,
    executor: str = "local",
    jobs: int = 1,
    progress: bool = True,
    submitit_folder: Path,
    submitit_params: Mapping[str, Any] | None = None,
) -> list[str]:
    """Carry out ``specs`` (the pending ones of ``total`` runs) with ``executor``, ``jobs`` at a time with the
    local one; submitit keeps its logs in ``submitit_folder``. Returns the failures."""
    if executor == "local" and jobs > 1 and len(specs) > 1:
        return _run_parallel(run, specs, total, progress, min(jobs, len(specs)))
    if executor == "local":
        return _run_local(run, specs, total, progress)
    return _run_submitit(run, specs, total, executor, submitit_folder, submitit_params or {}, progress)


def _console() -> Console:
    return Console(stderr=True)


def _outcome(spec: RunSpec, result, console, progress: bool, failures: list[str], prefix: str = "") -> None:
    """Print one run's result, or record its error (``result`` is the run record or the exception; the
    error is also in the run's failed.json, with its traceback)."""
    # Printed as plain text (no console markup): a message such as "--set 'data.val_metrics=[niqe]'" keeps its
    # brackets, which markup would take for a tag and drop.
    if isinstance(result, WorkerDied):  # no failed.json: the process that would have written it is gone
        failures.append(f"{spec.key}: {result}")
        console.print(
            Text.assemble(prefix, (f"{spec.key} failed:", "bold red"), f" {result}"), highlight=False, soft_wrap=True
        )
    elif isinstance(result, Exception):
        failures.append(f"{spec.key}: {type(result).__name__}: {result} (see {Path(spec.run_dir) / FAILED_FILE})")
        console.print(
            Text.assemble(prefix, (f"{spec.key} failed:", "bold red"), f" {result}"), highlight=False, soft_wrap=True
        )
    elif progress:
        metrics = result["metrics"]
        console.print(
            Text(f"{prefix}{spec.key}: {describe_scores(metrics, list(metrics))}"), highlight=False, soft_wrap=True
        )


def _run_local(run: RunFunction, specs: Sequence[RunSpec], total: int, progress: bool) -> list[str]:
    """Run one after another in this process; a failing run is recorded and the others still run.
    Ctrl-C stops everything."""
    console = _console()
    failures: list[str] = []
    start = time.time()
    for done_here, spec in enumerate(specs):
        finished = total - len(specs) + done_here
        eta = ""
        if done_here:
            per_run = (time.time() - start) / done_here
            eta = f" · about {per_run * (len(specs) - done_here) / 60:.0f} min left"
        if progress:
            console.rule(f"[bold]run {finished + 1}/{total}[/] · {spec.key}{eta}")
        try:
            result = run(spec, progress)
        except Exception as err:  # the study goes on
            result = err
        _outcome(spec, result, console, progress, failures)
    return failures


#: In a worker process: where it says which run it carries out (the writing end of a pipe to the parent; one
#: small message is one atomic write, and a pipe holds no semaphore that a killed study would leave behind), so
#: that a worker that dies can be named by its run.
_started: Any = None


def _init_worker(threads: int, parent: int, started: Any = None) -> None:
    global _started
    _started = started
    _exit_with_parent(parent)
    torch.set_num_threads(threads)


def _exit_with_parent(parent: int) -> None:
    """Have the kernel send this worker SIGTERM when the study process dies (Linux ``PR_SET_PDEATHSIG``).

    Without it, a study stopped by ``kill`` (not Ctrl-C, which reaches the whole process group) left its
    workers training as orphans, and they went on writing into run folders whose lock they do not hold. A
    worker stopped this way resumes from its last checkpoint on the next call, like any interrupted run."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent:  # the study died before the request above took effect
        os._exit(1)


def _run_in_worker(run: RunFunction, spec: RunSpec, lines: bool) -> Mapping[str, Any]:
    """One run in a worker process: silent, or with ``lines`` its plain progress lines (a training's one per
    log step), each starting with the run's key, since the workers' lines interleave on the stdout they share."""
    if _started is not None:
        _started.send((spec.key, os.getpid()))
    if not lines:
        return run(spec, False)
    with label(spec.key):
        return run(spec, True)


def _run_parallel(run: RunFunction, specs: Sequence[RunSpec], total: int, progress: bool, jobs: int) -> list[str]:
    """Run ``jobs`` runs at once in worker processes, each with an equal share of the CPU threads: small
    models on a CPU use one thread poorly, so two one-thread runs on two cores finish in about the time of
    one two-thread run. A failing run is recorded and the others still run; Ctrl-C stops them all (each
    resumes from its last checkpoint on the next call). Where stdout is not a terminal the workers print their
    progress lines (a live bar per worker would garble a terminal)."""
    console = _console()
    threads = max(1, (os.cpu_count() or 1) // jobs)
    failures: list[str] = []
    if progress:
        console.rule(f"[bold]{len(specs)} runs, {jobs} at a time ({threads} thread(s) each)[/]")
    context = multiprocessing.get_context("spawn")
    started, starting = context.Pipe(duplex=False)
    pool = ProcessPoolExecutor(jobs, context, _init_worker, (threads, os.getpid(), starting))
    workers = _Workers(pool, started, jobs)
    try:
        lines = progress and plain_lines()
        futures = {pool.submit(_run_in_worker, run, spec, lines): spec for spec in specs}
        workers.update()  # the worker processes, started by submit
        for done_here, future in enumerate(as_completed(futures), 1):
            spec = futures[future]
            workers.update()  # read as runs end, so that the pipe never fills
            try:
                result = future.result()
            except BrokenProcessPool:
                result = WorkerDied(workers.death(spec))
            except Exception as err:  # the study goes on
                result = err
            _outcome(spec, result, console, progress, failures, f"[{total - len(specs) + done_here}/{total}] ")
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        starting.close()
    pool.shutdown()
    started.close()
    return failures


STILL_RUNNING = "was still running when another worker died, which stopped the pool and this run with it"


class WorkerDied(StudyError):
    """The worker process carrying out a run (``--jobs``) died, or another one did and the pool stopped."""


class _Workers:
    """The worker processes of a pool and the runs they took, to say which run a worker that died was
    carrying out, and how it ended: a worker killed (by the kernel's out-of-memory killer, which sends
    ``SIGKILL``, or by anyone) breaks the whole pool, and Python says no more than ``BrokenProcessPool``."""

    def __init__(self, pool: ProcessPoolExecutor, started: Any, jobs: int):
        self.pool, self.started, self.jobs = pool, started, jobs
        self.processes: dict[int, Any] = {}
        self.runs: dict[str, int] = {}  # run key -> the pid of the worker that took it

    def update(self) -> None:
        self.processes |= dict(getattr(self.pool, "_processes", None) or {})  # where CPython's pool keeps them
        while self.started.poll():
            key, pid = self.started.recv()
            self.runs[key] = pid

    def _ending(self, pid: int) -> str:
        """How the worker ``pid`` ended: killed by a signal (named), or its exit status."""
        process = self.processes.get(pid)
        if process is None:
            return "ended"
        process.join(5)
        ended = bool(multiprocessing.connection.wait([process.sentinel], 0))
        deadline = time.monotonic() + 2
        while process.exitcode is None and ended and time.monotonic() < deadline:
            time.sleep(0.05)  # reaped by the pool's own thread: its exit status lands on the shared handle soon
        code = process.exitcode
        if code is None and ended:
            return "ended"
        if code is None:  # still running its run: another worker's death broke the pool, which stops them all
            process.terminate()
            return STILL_RUNNING
        if code < 0:
            try:
                return f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"was killed by signal {-code}"
        return f"exited with status {code}"

    def death(self, spec: RunSpec) -> str:
        """Why the run of ``spec`` ended with the pool broken: the run's worker, how it ended, the likely cause."""
        self.update()
        fewer = f"--jobs {max(1, self.jobs // 2)}" if self.jobs > 2 else "--jobs 1"
        advice = (
            "a worker killed by SIGKILL most often ran out of memory (the kernel's out-of-memory killer sends it): "
            f"run fewer runs at once ({fewer}); rerun the same command and the unfinished runs resume from their "
            "last checkpoints"
        )
        pid = self.runs.get(spec.key)
        if pid is None:
            return f"not started: a worker process died, which stopped the pool; {advice}"
        ending = self._ending(pid)
        if ending == STILL_RUNNING:
            return f"its worker process (pid {pid}) {ending}; {advice}"
        return f"its worker process (pid {pid}) {ending}, which stopped the pool; {advice}"


def _make_executor(kind: str, folder: Path, params: Mapping[str, Any]) -> submitit.AutoExecutor:
    cluster = "slurm" if kind == "slurm" else "local"
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
        executor.update_parameters(**params)
    except (RuntimeError, NameError, ValueError, AssertionError) as err:
        raise StudyError(f"cannot set up the {kind} executor with parameters {dict(params)}: {err}") from None
    return executor


def _run_submitit(
    run: RunFunction,
    specs: Sequence[RunSpec],
    total: int,
    kind: str,
    folder: Path,
    params: Mapping[str, Any],
    progress: bool,
) -> list[str]:
    """Submit one job per run and wait for all."""
    executor = _make_executor(kind, folder, params)
    jobs = [(spec, executor.submit(run, spec, False)) for spec in specs]  # each writes its run's job.json
    console = _console()
    console.print(Text(f"submitted {len(jobs)} {kind} job(s); logs in {folder}"))
    failures: list[str] = []
    pending = list(jobs)
    done = total - len(specs)
    try:
        with progress_bar(
            total, "study runs", enabled=progress, completed=done, status=False, eta=False, console=console
        ) as bar:
            while pending:
                for spec, job in list(pending):
                    if not job.done():
                        continue
                    pending.remove((spec, job))
                    try:
                        job.result()
                    except Exception as err:  # the job's traceback is in its log files
                        last = (str(err).strip().splitlines() or ["(no message)"])[-1]  # submitit's ends in the error
                        failures.append(f"{spec.key}: {type(err).__name__}: {last} (log: {job.paths.stderr})")
                    bar.advance()
                if pending:
                    time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        for _, job in pending:
            job.cancel(check=False)
        raise
    return failures

"""What `vsr study --jobs N` buys on a CPU: N trainings at once, cores / N threads each, against the same
trainings one after another with all the cores.

    python benchmarks/bench_study_jobs.py --recipe basicvsr_tiny --iterations 100 --jobs 2

Each training is ``vsr train RECIPE`` for ``--iterations`` steps in its own process (start-up included, as
in a study). Printed: the wall time of ``--jobs`` trainings run one after another (each with every core),
then all at once (each with cores / jobs threads), and the ratio; a ratio near ``--jobs`` means the cores
were idle half the time in the sequential case (small models on a CPU use extra threads poorly).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def command(recipe: str, iterations: int, out: Path) -> list[str]:
    sets = [f"train.iterations={iterations}", f"train.periods=[{iterations}]", f"train.val_every={iterations}",
            f"train.checkpoint_every={iterations}", "train.log_every=1000", "train.fix_iterations=0"]  # fmt: skip
    args = [a for s in sets for a in ("--set", s)]
    return [sys.executable, "-m", "vsr.cli", "train", recipe, *args, "--out", str(out), "--device", "cpu"]


def run_all(recipe: str, iterations: int, jobs: int, threads: int, parallel: bool, root: Path) -> float:
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmds = [command(recipe, iterations, root / f"run{k}") for k in range(jobs)]
    began = time.perf_counter()
    if parallel:
        procs = [subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL) for c in cmds]
        codes = [p.wait() for p in procs]
    else:
        codes = [subprocess.run(c, env=env, stdout=subprocess.DEVNULL, check=False).returncode for c in cmds]
    if any(codes):
        raise SystemExit(f"a training failed (exit codes {codes})")
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="basicvsr_tiny")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sequential = run_all(args.recipe, args.iterations, args.jobs, cores, False, root / "seq")
        parallel = run_all(args.recipe, args.iterations, args.jobs, max(1, cores // args.jobs), True, root / "par")
    print(f"{args.jobs} × {args.recipe}, {args.iterations} iterations each, {cores} cores")
    print(f"  one after another, {cores} threads each:        {sequential:7.1f} s")
    print(f"  {args.jobs} at once, {max(1, cores // args.jobs)} thread(s) each:              {parallel:7.1f} s")
    print(f"  speed-up of --jobs {args.jobs}: {sequential / parallel:.2f}x")


if __name__ == "__main__":
    main()

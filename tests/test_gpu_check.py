"""benchmarks/gpu_check.py --smoke: the one-shot GPU check runs end to end on the CPU, so that the script cannot rot
before a GPU is lent: its JSON file holds every label it promises, each a finite number or a skip with a stated
reason, and no failure; the study's report comes back in the output folder."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def expected_labels() -> list[str]:
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import gpu_check

        return gpu_check.expected_labels(ddp=True)  # --smoke runs the DDP step in 2 CPU processes
    finally:
        sys.path.remove(str(SCRIPT.parent))


#: The skips a CPU run may state: what has no BasicSR counterpart, a reference that cannot be fetched, and
#: torchvision's deformable convolution where its operator does not load (the CPU torch build here).
ALLOWED_SKIPS = ("no BasicSR counterpart", "BasicSR unavailable", "torchvision", "test suite's torchvision stand-in")


@pytest.mark.slow
def test_smoke_run_writes_every_label_as_a_number_or_a_stated_skip(tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, str(SCRIPT), "--smoke", "--out", str(out), "--budget-s", "3600"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    report = json.loads((out / "gpu_check.json").read_text())
    assert report["smoke"] is True and report["errors"] == {}
    figures, skipped = report["figures"], report["skipped"]
    unexpected = {label: why for label, why in skipped.items() if not any(s in why for s in ALLOWED_SKIPS)}
    assert not unexpected, f"skipped without an allowed reason: {unexpected}"
    missing = [label for label in expected_labels() if label not in figures and label not in skipped]
    assert not missing, f"labels neither measured nor skipped: {missing}"
    assert "inference.realbasicvsr.bf16.vsr_ms_per_frame" in figures  # vsr's RealBasicVSR runs everywhere
    for label, value in figures.items():
        assert isinstance(value, (int, float)) and math.isfinite(value), f"{label}: {value!r}"
        assert label in report["units"]
        assert any(line.startswith(label + " ") for line in result.stdout.splitlines()), f"{label} not printed"
    assert figures["ddp.weights_max_abs_diff"] == 0.0  # DDP averaged the gradients: both processes agree
    with tarfile.open(out / "propagation_gpu_report.tar.gz") as tar:  # the study's report comes back from OUT
        names = tar.getnames()
    assert "report/index.md" in names and "report/results.csv" in names
    assert any(name.endswith("bidirectional/seed0/run.json") for name in names)

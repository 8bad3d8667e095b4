"""benchmarks/gpu_check.py --smoke: the one-shot GPU check runs end to end on the CPU, so that the script cannot rot
before a GPU is lent, and its JSON file holds every figure it promises (each a finite number) and no failure."""

from __future__ import annotations

import json
import math
import subprocess
import sys
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


@pytest.mark.slow
def test_smoke_run_writes_every_label_as_a_number(tmp_path):
    out = tmp_path / "gpu_check.json"
    command = [sys.executable, str(SCRIPT), "--smoke", "--json", str(out), "--budget-s", "3600"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    report = json.loads(out.read_text())
    assert report["smoke"] is True and report["errors"] == {}
    if any("BasicSR unavailable" in reason for reason in report["skipped"].values()):
        pytest.skip(f"BasicSR reference unavailable: {report['skipped']}")
    assert report["skipped"] == {}
    figures = report["figures"]
    missing = [label for label in expected_labels() if label not in figures]
    assert not missing, f"labels not in {out.name}: {missing}"
    for label, value in figures.items():
        assert isinstance(value, (int, float)) and math.isfinite(value), f"{label}: {value!r}"
        assert label in report["units"]
        assert any(line.startswith(label + " ") for line in result.stdout.splitlines()), f"{label} not printed"
    assert figures["ddp.weights_max_abs_diff"] == 0.0  # DDP averaged the gradients: both processes agree

#!/usr/bin/env bash
# What benchmarks/gpu_check.py needs on a GPU machine without network (issue 27), fetched here into ignored folders
# that one device call carries: the wheels of what vsr imports and the GPU image lacks (.whl/: PyAV and submitit;
# submitit's own needs, cloudpickle and typing_extensions, are in the image) and BasicSR's sdist cache (.cache/vsr,
# read through $VSR_CACHE). Prints their size: a call carries at most 64 MiB with the working tree.
#   bash benchmarks/gpu_bundle.sh            # then run the one call of docs/performance.md, "The GPU check"
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
mkdir -p .whl .cache/vsr
# The GPU image's Python is 3.12 (x86-64, manylinux); pins: the versions the tests run with here.
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl av==18.1.0 submitit==1.5.4
# BasicSR 1.4.2's arch files (tests/basicsr_reference.py fetches them from PyPI on first use, into $VSR_CACHE).
VSR_CACHE="$PWD/.cache/vsr" "$PYTHON" -c "
import sys; sys.path.insert(0, 'tests')
from basicsr_reference import import_basicsr
import_basicsr('basicsr.archs.basicvsr_arch')"
du -sh .whl .cache/vsr
tracked=$(git ls-files -z | du -ch --files0-from=- 2>/dev/null | tail -1 | cut -f1)
echo "tracked files: $tracked; the call carries these and the two folders above (64 MiB at most)"

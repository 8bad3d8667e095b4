"""The BasicSR reference implementation, for equivalence tests and benchmarks (never used by the library;
benchmarks put this folder on ``sys.path`` to import it).

``basicsr==1.4.2`` is fetched from PyPI as an sdist (``pip download --no-deps --no-build-isolation``,
seconds), unpacked into a cache, and its modules are imported straight from the source tree. Its package
``__init__`` files are bypassed: they import every dataset (and ``torchvision.transforms.functional_tensor``,
gone since torchvision 0.17) and ``cv2``. Where torchvision cannot be imported, a stand-in module whose
``ops.deform_conv2d`` is vsr's previous pure-PyTorch deformable convolution (kept as
``_reference_deform_conv2d``, independent of the sampler vsr runs now) is installed, so BasicSR's own DCNv2
pack still runs; the torchvision/pure-PyTorch agreement is tested separately.
"""

from __future__ import annotations

import importlib
import logging
import os
import subprocess
import sys
import tarfile
import types
import warnings
from pathlib import Path

from vsr.components.deform import _reference_deform_conv2d

BASICSR_VERSION = "1.4.2"


class ReferenceUnavailable(RuntimeError):
    """The reference sdist could not be fetched (no registry reachable)."""


def cache_dir() -> Path:
    return Path(os.environ.get("VSR_CACHE", Path.home() / ".cache" / "vsr"))


def basicsr_source() -> Path:
    """Path of the unpacked ``basicsr`` package of the PyPI sdist, downloading it once."""
    root = cache_dir() / f"basicsr-{BASICSR_VERSION}"
    package = root / f"basicsr-{BASICSR_VERSION}" / "basicsr"
    if package.is_dir():
        return package
    root.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-build-isolation",
        "--no-binary",
        ":all:",
    ]
    cmd += ["-q", "-d", str(root), f"basicsr=={BASICSR_VERSION}"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    archives = sorted(root.glob("basicsr-*.tar.gz"))
    if result.returncode != 0 or not archives:
        raise ReferenceUnavailable(
            f"could not download basicsr=={BASICSR_VERSION} from the package registry: "
            f"{result.stderr.strip().splitlines()[-1:] or result.returncode}"
        )
    with tarfile.open(archives[0]) as tar:
        tar.extractall(root, filter="data")
    return package


def _namespace(name: str, path: Path | None) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = [str(path)] if path else []
    sys.modules[name] = module
    return module


def _install_torchvision_stand_in() -> None:
    try:
        import torchvision  # noqa: F401

        return
    except Exception:  # missing, or a build that does not match torch
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
    tv = types.ModuleType("torchvision")
    tv.__version__ = "0.99.0 (vsr stand-in)"
    tv.ops = types.ModuleType("torchvision.ops")
    tv.ops.deform_conv2d = _reference_deform_conv2d  # the previous, independent sampler: vsr runs the new one
    sys.modules["torchvision"], sys.modules["torchvision.ops"] = tv, tv.ops


def import_basicsr(module: str) -> types.ModuleType:
    """Import ``module`` (e.g. ``"basicsr.archs.basicvsr_arch"``) from the reference sdist."""
    if module in sys.modules:
        return sys.modules[module]
    package = basicsr_source()
    if "basicsr" not in sys.modules:
        _namespace("basicsr", package)
        _namespace("basicsr.archs", package / "archs")
        _namespace("basicsr.ops", package / "ops")
        utils = _namespace("basicsr.utils", package / "utils")
        utils.get_root_logger = lambda *a, **k: logging.getLogger("basicsr")
        utils.scandir = lambda *a, **k: iter(())
        _install_torchvision_stand_in()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # distutils and meshgrid deprecation warnings of the 2022 code
        return importlib.import_module(module)

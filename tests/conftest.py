import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP; see vsr/__init__.py

import pytest
import torch

from basicsr_reference import ReferenceUnavailable, import_basicsr


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def basicsr_archs():
    """BasicSR 1.4.2's BasicVSR/IconVSR arch module, from the PyPI sdist (skips if the registry is unreachable)."""
    try:
        return import_basicsr("basicsr.archs.basicvsr_arch")
    except ReferenceUnavailable as err:
        pytest.skip(f"BasicSR reference unavailable: {err}")

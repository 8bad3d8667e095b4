"""`python -m vsr` (also `torchrun ... -m vsr train RECIPE`)."""

from vsr.cli import app

app(prog_name="vsr")

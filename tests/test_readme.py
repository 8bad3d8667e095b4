"""The README is a landing page whose commands are CI's commands.

A new user follows the README; CI must do exactly the same, or CI stays green while the user's first test run is
red (the README once installed ``.[dev]`` where CI installed ``.[dev,onnx]``). ``.ci/run`` keeps the README's
install line (all of the set-up command before its main job) and test command verbatim; these tests hold them
equal. Results have one home, the studies' generated reports: the README links each and copies no number.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CI = ROOT / ".ci" / "run"

#: Where the set-up command's main job starts: CI installs but does not train (12 minutes on two cores).
MAIN_JOB = " && .venv/bin/vsr train"


def fenced_command(name: str) -> str:
    """The one command in the code block between ``<!-- name ... -->`` and ``<!-- /name -->`` in the README."""
    text = README.read_text(encoding="utf-8")
    found = re.search(rf"<!-- {name}\b[^>]*-->\s*```bash\n(.*?)```\s*<!-- /{name} -->", text, re.S)
    assert found, f"README.md has no ```bash block between <!-- {name} --> and <!-- /{name} -->"
    lines = [line for line in found[1].splitlines() if line.strip()]
    assert len(lines) == 1, f"the README's {name} block should hold one command, got {lines}"
    return lines[0].strip()


def ci_lines() -> list[str]:
    return [line.strip() for line in CI.read_text(encoding="utf-8").splitlines()]


def test_ci_installs_as_the_readme_does():
    setup = fenced_command("setup")
    assert MAIN_JOB in setup, f"the README's set-up command should end with its main job ({MAIN_JOB.strip()} ...)"
    install = setup.split(MAIN_JOB)[0]
    assert install in ci_lines(), f".ci/run should run the README's install line verbatim: {install}"


def test_ci_runs_the_readme_test_command():
    assert fenced_command("test") in ci_lines()


def test_ci_builds_the_docs_strictly():
    assert any(line.startswith(".venv/bin/mkdocs build --strict") for line in ci_lines())


def test_readme_is_a_landing_page():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 200


@pytest.mark.parametrize("study", sorted(p.stem for p in (ROOT / "studies").glob("*.yaml")))
def test_each_study_has_one_headline_linking_its_report_and_no_number(study):
    link = f"(reports/{study}/index.md)"
    lines = [line for line in README.read_text(encoding="utf-8").splitlines() if link in line]
    assert len(lines) == 1, f"README.md should have one headline line linking reports/{study}/index.md"
    assert (ROOT / "reports" / study / "index.md").is_file()
    # The headline's paragraph (a list item may wrap) states the finding in words: no digit outside link targets.
    text = README.read_text(encoding="utf-8")
    item = next(block for block in re.split(r"\n(?=- )|\n\n", text) if link in block)
    words = re.sub(r"\]\([^)]*\)", "]", item)
    assert not re.search(r"\d", words), f"the {study} headline copies a number; link the report instead: {item}"

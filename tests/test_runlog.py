"""The run log of a training run folder: a resumed run drops the entries written after its checkpoint by
replacing ``log.jsonl`` and ``metrics.csv`` atomically, and survives a line torn by a crash mid-append."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from vsr import DataError
from vsr.training import RunLog


def _log_of_four_iterations(folder: Path) -> RunLog:
    run_log = RunLog(folder, enabled=True)
    for iteration in range(1, 5):
        run_log.write({"event": "train", "iteration": iteration, "loss": 1.0 / iteration})
        if iteration % 2 == 0:
            run_log.validation({"iteration": iteration, "time": 0.5 * iteration, "psnr": 20.0 + iteration})
    return run_log


def test_truncation_replaces_the_log_instead_of_writing_over_it(tmp_path):
    """A reader (or a crash) never sees a half-rewritten log: the old file stays whole under a second
    name (a hard link) while the truncated one takes its place."""
    run_log = _log_of_four_iterations(tmp_path)
    before = run_log.jsonl.read_text()
    os.link(run_log.jsonl, tmp_path / "old.jsonl")
    run_log.truncate(2)
    assert (tmp_path / "old.jsonl").read_text() == before
    assert [line.count('"iteration": ') for line in run_log.jsonl.read_text().splitlines()] == [1, 1, 1]


def test_truncation_interrupted_midway_keeps_the_old_metrics(tmp_path, monkeypatch):
    run_log = _log_of_four_iterations(tmp_path)
    (tmp_path / "metrics.csv").write_text(run_log.csv.read_text() + "6,3.0,26.0\n")
    before = run_log.csv.read_text()
    rows_written = {"n": 0}
    to_list = csv.DictWriter._dict_to_list  # what DictWriter.writerow and .writerows both call per row

    def interrupted_on_the_second_row(self, row):
        rows_written["n"] += 1
        if rows_written["n"] == 2:
            raise KeyboardInterrupt
        return to_list(self, row)

    monkeypatch.setattr(csv.DictWriter, "_dict_to_list", interrupted_on_the_second_row)
    with pytest.raises(KeyboardInterrupt):
        run_log.truncate(4)
    assert run_log.csv.read_text() == before


def test_truncation_drops_a_line_torn_by_a_crash_mid_append(tmp_path):
    run_log = _log_of_four_iterations(tmp_path)
    with run_log.jsonl.open("a") as f:
        f.write('{"event": "train", "itera')
    with run_log.csv.open("a") as f:
        f.write("6,3.")
    run_log.truncate(4)
    assert run_log.jsonl.read_text().splitlines()[-1] == '{"event": "val", "iteration": 4, "time": 2.0, "psnr": 24.0}'
    with run_log.csv.open(newline="") as f:
        assert [row["iteration"] for row in csv.DictReader(f)] == ["2", "4"]


def test_a_damaged_log_line_is_named_and_left_as_it_is(tmp_path):
    """A resumed run that finds an edited line in the middle of ``log.jsonl`` or ``metrics.csv`` stops naming
    the file and the line, and leaves that file as it is."""
    run_log = _log_of_four_iterations(tmp_path)
    lines = run_log.jsonl.read_text().splitlines(keepends=True)
    run_log.jsonl.write_text("".join([lines[0], "{not json\n", *lines[1:]]))
    before = run_log.jsonl.read_text()
    with pytest.raises(DataError, match=r"log\.jsonl: a line is not valid JSON .*'\{not json'.*delete that line"):
        run_log.truncate(2)
    assert run_log.jsonl.read_text() == before
    for line, problem in (
        ("[1]", "is not a JSON object"),
        ('{"iteration": "5"}', "has an iteration that is not a whole"),
    ):
        run_log.jsonl.write_text("".join([lines[0], line + "\n", *lines[1:]]))
        with pytest.raises(DataError, match=rf"log\.jsonl: a line {problem}"):
            run_log.truncate(2)
    run_log.jsonl.write_bytes(b"\xff\xfe\n")
    with pytest.raises(DataError, match=r"log\.jsonl is not UTF-8 text"):
        run_log.truncate(2)
    run_log.jsonl.write_text("".join(lines))
    run_log.csv.write_text(run_log.csv.read_text() + "two,1.0,22.0\n")
    before = run_log.csv.read_text()
    with pytest.raises(DataError, match=r"metrics\.csv: the row .*'two'.* has no whole-number iteration"):
        run_log.truncate(2)
    assert run_log.csv.read_text() == before

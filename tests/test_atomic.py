"""Atomic writes: a failed write leaves the previous file and no temporary file; permissions follow umask; a
write that found no room (a full disk) is an OSError naming the destination, whatever the writer raised."""

import errno
import io
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from full_disk import NearlyFullFile
from PIL import Image
from safetensors import SafetensorError

import vsr.atomic
from vsr import build_model, save_checkpoint
from vsr.atomic import atomic_open, write_json, write_with
from vsr.checkpoints import atomic_save, read_checkpoint
from vsr.recipe import load_recipe


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "run.json"
    write_json({"psnr": 25.0}, path)
    with pytest.raises(KeyboardInterrupt), atomic_open(path) as f:
        f.write('{"psnr": ')
        raise KeyboardInterrupt
    assert json.loads(path.read_text()) == {"psnr": 25.0}
    with pytest.raises(OSError):
        write_with(lambda tmp: (_ for _ in ()).throw(OSError("disk full")), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_written_files_get_the_permissions_open_would_give(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_json([1], tmp_path / "a.json")
        plain = tmp_path / "b.json"
        plain.write_text("[1]")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o644


@pytest.mark.parametrize("room", [0, 100, 2000, 50_000])
def test_a_full_disk_during_torch_save_is_an_oserror_naming_the_checkpoint(tmp_path, monkeypatch, room):
    """Depending on where the disk fills up, torch.save raises the OSError of the short write, or a RuntimeError
    ("unexpected pos") over it; either way the checkpoint's writer raises the OSError naming the checkpoint,
    and the previous checkpoint stays whole."""
    path = tmp_path / "latest.pth"
    atomic_save({"iteration": 2, "w": torch.zeros(10)}, path)
    monkeypatch.setattr(
        vsr.atomic, "open", lambda file, mode: io.BufferedWriter(NearlyFullFile(file, room)), raising=False
    )
    with pytest.raises(OSError) as caught:
        atomic_save({"iteration": 4, "w": torch.zeros(100_000)}, path)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(path)
    assert read_checkpoint(path)["iteration"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pth"]


@pytest.mark.parametrize(
    ("raised", "code"),
    [
        (SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"), errno.ENOSPC),
        (SafetensorError("Error while serializing: I/O error: File too large (os error 27)"), errno.EFBIG),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), errno.EDQUOT),
    ],
    ids=["safetensors-enospc", "safetensors-efbig", "quota"],
)
def test_a_write_that_found_no_room_is_an_oserror_naming_the_destination(tmp_path, raised, code):
    def writer(tmp):
        tmp.write_bytes(b"part")
        raise raised

    with pytest.raises(OSError) as caught:
        write_with(writer, tmp_path / "model.safetensors", ".safetensors")
    assert caught.value.errno == code and caught.value.filename == str(tmp_path / "model.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_other_errors_of_a_writer_pass_unchanged(tmp_path):
    with pytest.raises(SafetensorError, match="bad dtype"):
        write_with(lambda tmp: (_ for _ in ()).throw(SafetensorError("bad dtype")), tmp_path / "w.safetensors")
    with pytest.raises(PermissionError) as caught:
        write_with(
            lambda tmp: (_ for _ in ()).throw(PermissionError(errno.EACCES, "denied", "/elsewhere")), tmp_path / "a"
        )
    assert caught.value.filename == "/elsewhere"


# ------------------------------------------------------------------------------------------ a real full disk

#: Run inside a user and mount namespace, on a tmpfs of 1 MiB mounted at DISK: the real thing, where the kernel
#: cuts a write short and then answers ENOSPC.
ON_A_SMALL_DISK = """
import json, os, sys
from pathlib import Path
import numpy as np, torch
from safetensors.torch import save_file
from typer.testing import CliRunner
from vsr.atomic import write_with
from vsr.checkpoints import atomic_save, read_checkpoint
from vsr.cli import app

disk, checkpoint, frames = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
seen = {}
atomic_save({"iteration": 2, "w": torch.zeros(50_000)}, disk / "latest.pth")  # 200 kB: fits
try:
    atomic_save({"iteration": 4, "w": torch.zeros(250_000)}, disk / "latest.pth")  # 1 MB: does not
except OSError as err:
    seen["checkpoint"] = [err.errno, err.filename]
seen["kept"] = read_checkpoint(disk / "latest.pth")["iteration"]
try:
    write_with(lambda tmp: save_file({"w": torch.zeros(250_000)}, str(tmp)), disk / "w.safetensors")
except OSError as err:
    seen["safetensors"] = [err.errno, err.filename]
(disk / "latest.pth").unlink()
args = ["upscale", checkpoint, frames, "-o", str(disk / "out"), "--device", "cpu"]
first = CliRunner().invoke(app, args)
seen["first"] = [first.exit_code, first.output]
size = sum(p.stat().st_size for p in (disk / "out").iterdir())
filler = disk / "filler"  # fill the disk, then free half the output's size
fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
try:
    while os.write(fd, bytes(65536)):
        pass
except OSError:
    pass
os.close(fd)
os.truncate(filler, filler.stat().st_size - size // 2)
again = CliRunner().invoke(app, [*args, "--overwrite"])
seen["again"] = [again.exit_code, again.output]
seen["files"] = sorted(p.name for p in disk.iterdir())
print(json.dumps(seen))
"""


def small_disk(folder: Path) -> list[str] | None:
    """The command prefix that runs a command with a 1 MiB tmpfs at ``folder`` (a user and mount namespace, no
    root needed), or None where this system does not allow one."""
    if shutil.which("unshare") is None:
        return None
    folder.mkdir()
    prefix = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
              f'mount -t tmpfs -o size=1m tmpfs "{folder}" && exec "$@"', "sh"]  # fmt: skip
    probe = subprocess.run([*prefix, "true"], capture_output=True)
    return prefix if probe.returncode == 0 else None


def test_a_real_full_disk_keeps_what_was_there_and_says_so(tmp_path):
    """On a real full disk (a tmpfs of 1 MiB): a checkpoint and a safetensors file that do not fit fail with
    ENOSPC naming them, the previous checkpoint stays whole, and ``vsr upscale --overwrite`` ends in one line
    saying the disk is full, its earlier output intact and no temporary file left."""
    disk = tmp_path / "disk"
    prefix = small_disk(disk)
    if prefix is None:
        pytest.skip("this system allows no user namespace with a tmpfs mount (unshare -rm)")
    recipe = load_recipe("basicvsr", "model.channels=8", "model.aggregation.num_blocks=1", "model.flow.levels=2")
    checkpoint = save_checkpoint(build_model(recipe), tmp_path / "tiny.pth", recipe=recipe.to_dict())
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)).save(frames / f"{i:04d}.png")
    done = subprocess.run([*prefix, sys.executable, "-c", ON_A_SMALL_DISK, str(disk), str(checkpoint), str(frames)],
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["checkpoint"] == [errno.ENOSPC, str(disk / "latest.pth")] and seen["kept"] == 2
    assert seen["safetensors"] == [errno.ENOSPC, str(disk / "w.safetensors")]
    assert seen["first"][0] == 0, seen["first"][1]
    code, output = seen["again"]
    assert code == 2 and "Traceback" not in output, output
    assert f"error: the disk is full (no space left on the device) while writing {disk / 'out'};" in output
    assert seen["files"] == ["filler", "out"]

"""Published checkpoints by name: downloaded on demand from a server on 127.0.0.1, hash-checked, cached."""

import hashlib
import http.server
import threading
from functools import partial

import pytest
import torch

from vsr import CheckpointError, build_model
from vsr.checkpoints import load_checkpoint
from vsr.zoo import ZOO, ZooEntry, resolve_checkpoint


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def tiny_published(server, tmp_path, monkeypatch):
    """A BasicSR-format checkpoint of a tiny model, published under its sha256 prefix."""
    root, url = server
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    model = build_model("basicvsr", "model.channels=8", "model.aggregation.num_blocks=1")
    staging = tmp_path / "tiny.pth"
    torch.save({"params": model.state_dict()}, staging)
    digest = hashlib.sha256(staging.read_bytes()).hexdigest()
    name = f"tiny_basicvsr-{digest[:8]}.pth"
    (root / name).write_bytes(staging.read_bytes())
    entry = ZooEntry("tiny_test", "basicvsr", f"{url}/{name}", ("model.channels=8",))
    monkeypatch.setitem(ZOO, "tiny_test", entry)
    return model, root / name


def test_named_checkpoint_downloads_once_and_loads(tiny_published):
    model, served = tiny_published
    fresh = build_model("basicvsr", "model.channels=8", "model.aggregation.num_blocks=1")
    load_checkpoint(fresh, "tiny_test")
    assert torch.equal(fresh.upsampling.conv_last.weight, model.upsampling.conv_last.weight)
    served.unlink()  # the second use comes from the cache
    path = resolve_checkpoint("tiny_test")
    assert path.is_file() and path.parent.name == "checkpoints"


def test_tampered_download_fails_the_hash_check(tiny_published, tmp_path):
    _, served = tiny_published
    served.write_bytes(served.read_bytes() + b"tampered")
    with pytest.raises(CheckpointError, match="sha256"):
        resolve_checkpoint("tiny_test")
    assert not list((tmp_path / "torch_home").rglob("*.pth"))  # nothing unverified is left in the cache


def test_corrupted_cache_is_moved_aside(tiny_published):
    path = resolve_checkpoint("tiny_test")
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="moved aside"):
        resolve_checkpoint("tiny_test")
    assert not path.exists() and path.with_suffix(".corrupt").exists()
    assert resolve_checkpoint("tiny_test").is_file()  # downloaded afresh


def test_unknown_name_lists_the_zoo():
    with pytest.raises(CheckpointError, match=r"neither a file nor a published checkpoint; names: basicvsr_reds4"):
        resolve_checkpoint("basicvsr_redz4")


def test_zoo_entries_are_consistent():
    for entry in ZOO.values():
        assert len(entry.sha256_prefix) == 8
        build_model(entry.recipe, *entry.overrides)  # every entry names a valid recipe
    assert ZOO["basicvsr_reds4"].results["REDS4 (BIx4)"] == (31.4170, 0.8909)

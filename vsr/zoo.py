"""Published BasicVSR / IconVSR / BasicVSR++ / RealBasicVSR checkpoints, usable by name wherever a checkpoint path
is accepted.

A name (``basicvsr_reds4``) resolves to the torch.hub cache, or is downloaded there on demand and checked
against the sha256 prefix in its file name. Nothing is downloaded unless a user names a checkpoint.
Published numbers are PSNR/SSIM (RGB for REDS4, Y for the others) from the MMagic model zoo
(``configs/basicvsr/README.md``, ``configs/iconvsr/README.md``, ``configs/basicvsr_pp/README.md``).
RealBasicVSR's two stages (``configs/real_basicvsr/``) report no PSNR/SSIM: the GAN model's NIQE on VideoLQ is
3.7662 (Y channel); the first stage's has none. Their files hold ``generator_ema.``, which vsr loads.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch.hub

from vsr.errors import CheckpointError

MMAGIC = "https://download.openmmlab.com/mmediting/restorers"


@dataclass(frozen=True)
class ZooEntry:
    name: str
    recipe: str
    url: str
    overrides: tuple[str, ...] = ()
    trained_on: str = ""
    results: dict[str, tuple[float, float]] = field(default_factory=dict)  # test set -> (PSNR, SSIM)

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def sha256_prefix(self) -> str:
        match = re.search(r"-([0-9a-f]{8,})\.", self.filename)
        if not match:
            raise CheckpointError(f"zoo entry {self.name}: file name {self.filename} carries no sha256 prefix")
        return match[1]


#: The test sets of the published results, in the order of each entry's results.
TEST_SETS = ("REDS4 (BIx4)", "Vimeo-90K-T (BIx4)", "Vid4 (BIx4)", "UDM10 (BDx4)", "Vimeo-90K-T (BDx4)", "Vid4 (BDx4)")


def _results(*pairs: tuple[float, float]) -> dict[str, tuple[float, float]]:
    return dict(zip(TEST_SETS, pairs, strict=True))


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in [
        ZooEntry(
            "basicvsr_reds4", "basicvsr", f"{MMAGIC}/basicvsr/basicvsr_reds4_20120409-0e599677.pth", (), "REDS (BIx4)",
            _results((31.4170, 0.8909), (36.2848, 0.9395), (27.2694, 0.8318), (33.4478, 0.9306), (34.4700, 0.9286), (24.4541, 0.7455)),
        ),
        ZooEntry(
            "basicvsr_vimeo90k_bi", "basicvsr", f"{MMAGIC}/basicvsr/basicvsr_vimeo90k_bi_20210409-d2d8f760.pth", (), "Vimeo-90K (BIx4)",
            _results((30.3128, 0.8660), (37.2026, 0.9434), (27.2755, 0.8248), (34.5554, 0.9451), (34.8097, 0.9316), (25.0517, 0.7636)),
        ),
        ZooEntry(
            "basicvsr_vimeo90k_bd", "basicvsr", f"{MMAGIC}/basicvsr/basicvsr_vimeo90k_bd_20210409-0154dd64.pth", (), "Vimeo-90K (BDx4)",
            _results((29.0376, 0.8481), (34.6427, 0.9335), (26.2708, 0.8022), (39.9953, 0.9695), (37.5501, 0.9499), (27.9791, 0.8556)),
        ),
        ZooEntry(
            "iconvsr_reds4", "iconvsr", f"{MMAGIC}/iconvsr/iconvsr_reds4_20210413-9e09d621.pth", (), "REDS (BIx4)",
            _results((31.6926, 0.8951), (36.4983, 0.9416), (27.4809, 0.8354), (35.3377, 0.9471), (34.4299, 0.9287), (25.2110, 0.7732)),
        ),
        ZooEntry(
            "iconvsr_vimeo90k_bi", "iconvsr", f"{MMAGIC}/iconvsr/iconvsr_vimeo90k_bi_20210413-7c7418dc.pth",
            ("model.refill.temporal_padding=3",), "Vimeo-90K (BIx4)",
            _results((30.3452, 0.8659), (37.3729, 0.9467), (27.4238, 0.8297), (34.2595, 0.9398), (34.5548, 0.9295), (24.6666, 0.7491)),
        ),
        ZooEntry(
            "iconvsr_vimeo90k_bd", "iconvsr", f"{MMAGIC}/iconvsr/iconvsr_vimeo90k_bd_20210414-5f38cb34.pth",
            ("model.refill.temporal_padding=3",), "Vimeo-90K (BDx4)",
            _results((29.0150, 0.8465), (34.6780, 0.9339), (26.3109, 0.8028), (40.0640, 0.9697), (37.7573, 0.9517), (28.2464, 0.8612)),
        ),
        ZooEntry(
            "basicvsrpp_reds4", "basicvsrpp",
            f"{MMAGIC}/basicvsr_plusplus/basicvsr_plusplus_c64n7_8x1_600k_reds4_20210217-db622b2f.pth", (), "REDS (BIx4)",
            _results((32.3855, 0.9069), (36.4445, 0.9411), (27.7674, 0.8444), (34.6868, 0.9417), (34.0372, 0.9244), (24.6209, 0.7540)),
        ),
        ZooEntry(
            "basicvsrpp_vimeo90k_bi", "basicvsrpp",
            f"{MMAGIC}/basicvsr_plusplus/basicvsr_plusplus_c64n7_8x1_300k_vimeo90k_bi_20210305-4ef437e2.pth", (), "Vimeo-90K (BIx4)",
            _results((31.0126, 0.8804), (37.7864, 0.9500), (27.7882, 0.8401), (33.1211, 0.9270), (33.8972, 0.9195), (23.6086, 0.7033)),
        ),
        ZooEntry(
            "basicvsrpp_vimeo90k_bd", "basicvsrpp",
            f"{MMAGIC}/basicvsr_plusplus/basicvsr_plusplus_c64n7_8x1_300k_vimeo90k_bd_20210305-ab315ab1.pth", (), "Vimeo-90K (BDx4)",
            _results((29.2041, 0.8528), (34.7248, 0.9351), (26.4377, 0.8074), (40.7216, 0.9722), (38.2054, 0.9550), (29.0400, 0.8753)),
        ),
        ZooEntry(
            "realbasicvsr", "realbasicvsr",
            f"{MMAGIC}/real_basicvsr/realbasicvsr_c64b20_1x30x8_lr5e-5_150k_reds_20211104-52f77c2c.pth", (),
            "REDS (real-world, GAN stage)",
        ),
        ZooEntry(
            "realbasicvsr_wogan", "realbasicvsr_wogan",
            f"{MMAGIC}/real_basicvsr/realbasicvsr_wogan_c64b20_2x30x8_lr1e-4_300k_reds_20211027-0e2ff207.pth", (),
            "REDS (real-world, first stage)",
        ),
        ZooEntry("spynet_mmagic", "basicvsr", f"{MMAGIC}/basicvsr/spynet_20210409-c6c1bd09.pth", (), "Sintel (flow only)"),
    ]
}  # fmt: skip


def cache_dir() -> Path:
    """Where named checkpoints live: torch.hub's checkpoint cache (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_checkpoint(checkpoint: str | Path, download: bool = True) -> Path:
    """A checkpoint file: an existing path as it is, a zoo name from the cache or downloaded on demand."""
    path = Path(checkpoint)
    if path.is_file():
        return path
    name = str(checkpoint)
    if name not in ZOO:
        raise CheckpointError(
            f"checkpoint {name!r} is neither a file nor a published checkpoint; names: {', '.join(ZOO)}"
        )
    entry = ZOO[name]
    target = cache_dir() / entry.filename
    if not target.is_file():
        if not download:
            raise CheckpointError(f"checkpoint {name} is not in the cache {target.parent}")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:  # torch.hub writes to a temporary file and checks the hash before moving it into place
            torch.hub.download_url_to_file(entry.url, str(target), hash_prefix=entry.sha256_prefix, progress=True)
        except RuntimeError as err:
            raise CheckpointError(f"download of {name} from {entry.url} failed the sha256 check: {err}") from None
        except OSError as err:
            raise CheckpointError(f"cannot download {name} from {entry.url}: {err}") from None
    if not sha256_of(target).startswith(entry.sha256_prefix):
        os.replace(target, target.with_suffix(".corrupt"))
        raise CheckpointError(
            f"cached checkpoint {target} does not match its sha256 prefix {entry.sha256_prefix}; "
            "it was moved aside, run again to download it afresh"
        )
    return target

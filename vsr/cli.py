"""The ``vsr`` command line. It only parses arguments and calls library functions of the same names."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from vsr.errors import VSRError

app = typer.Typer(
    help="Video super-resolution research as composable parts: BasicVSR, IconVSR and their ablations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(
    help="Make data sets: the embedded synthetic set, LR folders from GT folders.", no_args_is_help=True
)
app.add_typer(data_app, name="data")
console = Console()

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a recipe key, e.g. --set model.alignment=none (repeatable)."),
]


def reports_errors(command):
    """Print vsr's own errors as one clear line (no traceback) and exit with status 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except VSRError as err:
            console.print(f"[bold red]error:[/] {err}", highlight=False)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            console.print(
                "[yellow]interrupted[/]: finished work is saved; continue with --resume (vsr train) "
                "or the same command (vsr study)"
            )
            raise typer.Exit(130) from None

    return wrapper


@app.command("model")
@reports_errors
def model_command(
    recipe: Annotated[str, typer.Argument(help="Recipe file or shipped recipe name (basicvsr, iconvsr, ...).")],
    set_: SetOption = None,
    show_recipe: Annotated[bool, typer.Option("--recipe", help="Also print the resolved recipe.")] = False,
):
    """Print the assembled architecture: the components and the parameters of each."""
    from vsr.components import KINDS
    from vsr.model import assemble
    from vsr.recipe import load_recipe

    resolved = load_recipe(recipe, *(set_ or []))
    model = assemble(resolved.model)
    table = Table(title=f"{resolved.name}: ×{model.scale}, {model.channels} channels")
    table.add_column("kind")
    table.add_column("component")
    table.add_column("arguments")
    table.add_column("parameters", justify="right")
    counts = model.component_parameters()
    for kind in KINDS:
        entry = dict(resolved.model[kind])
        name = entry.pop("name")
        args = ", ".join(f"{k}={v}" for k, v in entry.items())
        table.add_row(kind, name, args, f"{counts[kind]:,}" if kind in counts else "—")
    table.add_row("total", "", "", f"{sum(p.numel() for p in model.parameters()):,}", style="bold")
    console.print(table)
    if show_recipe:
        console.print(resolved.to_yaml(), highlight=False)


@app.command("zoo")
@reports_errors
def zoo_command():
    """List the published checkpoints usable by name, with their published PSNR/SSIM."""
    from vsr.zoo import TEST_SETS, ZOO

    table = Table(title="Published checkpoints (MMagic model zoo); PSNR/SSIM, RGB on REDS4, Y elsewhere")
    table.add_column("name")
    table.add_column("recipe")
    table.add_column("trained on")
    for test_set in TEST_SETS:
        table.add_column(test_set, justify="right")
    for entry in ZOO.values():
        cells = [
            f"{entry.results[s][0]:.2f}/{entry.results[s][1]:.4f}" if s in entry.results else "" for s in TEST_SETS
        ]
        recipe = " ".join([entry.recipe, *(f"--set {o}" for o in entry.overrides)])
        table.add_row(entry.name, recipe, entry.trained_on, *cells)
    Console(width=max(console.width, 200)).print(table)


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

    options = {"frames": frames, "val_frames": val_frames, "clips_per_photo": clips_per_photo,
               "val_clips_per_photo": val_clips_per_photo, "size": None if size is None else (size, size)}  # fmt: skip
    kwargs = {"seed": seed, "degradation": degradation, "overwrite": overwrite}
    kwargs |= {key: value for key, value in options.items() if value is not None}
    info = synth.generate(out or synth.default_root(), **kwargs)
    console.print(f"synthetic data set in [bold]{info.root}[/]: {info}")


@data_app.command("degrade")
@reports_errors
def degrade_command(
    gt_root: Annotated[Path, typer.Argument(help="Folder of GT clips: GT_ROOT/<clip>/*.png.")],
    lr_root: Annotated[Path, typer.Argument(help="Where to write the LR clips.")],
    kind: Annotated[str, typer.Option(help="bi (MATLAB bicubic) or bd (Gaussian blur + subsampling).")] = "bi",
    scale: Annotated[int, typer.Option(help="Downscaling factor.")] = 4,
    overwrite: Annotated[bool, typer.Option(help="Rewrite frames that exist.")] = False,
):
    """Make LR frames from GT frames with the BI or BD degradation of the BasicVSR papers."""
    from vsr.data.degradations import degrade_folder

    count = degrade_folder(gt_root, lr_root, kind=kind, scale=scale, overwrite=overwrite)
    console.print(f"wrote {count} LR frames to {lr_root}")


@app.command("train")
@reports_errors
def train_command(
    recipe: Annotated[str, typer.Argument(help="Recipe file or shipped recipe name.")],
    set_: SetOption = None,
    data: Annotated[str | None, typer.Option(help="Training data folder (default: the embedded set).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run folder (default: runs/<recipe>).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the interrupted run in --out.")] = False,
    allow_changes: Annotated[
        bool, typer.Option(help="With --resume: apply a recipe that differs from the run's (logged).")
    ] = False,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: cuda if available).")] = None,
):
    """Train a recipe (one process; several GPUs with `torchrun --nproc-per-node N -m vsr train ...`)."""
    from vsr.recipe import load_recipe
    from vsr.training import train

    resolved = load_recipe(recipe, *(set_ or []))
    result = train(resolved, out, data=data, resume=resume, device=device, allow_recipe_changes=allow_changes)
    console.print(f"run finished: {result}")


@app.command("test")
@reports_errors
def evaluate_command(
    recipe: Annotated[str, typer.Argument(help="Recipe file or shipped recipe name.")],
    checkpoint: Annotated[str, typer.Option(help="Checkpoint file (vsr, MMagic or BasicSR) or zoo name.")],
    set_: SetOption = None,
    data: Annotated[str | None, typer.Option(help="Test data folder (default: the embedded validation set).")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Where to write metrics.json and per_frame.csv.")
    ] = None,
    save_frames: Annotated[bool, typer.Option(help="Also write the output frames as PNG.")] = False,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, ...")] = None,
):
    """Evaluate a checkpoint: PSNR/SSIM per clip and per frame, and the bicubic baseline."""
    from vsr.evaluate import evaluate
    from vsr.recipe import load_recipe

    resolved = load_recipe(recipe, *(set_ or []))
    metrics = evaluate(resolved, checkpoint, data, out_dir=out, save_frames=save_frames, device=device)
    console.print_json(json.dumps(metrics, default=str))


@app.command("probe")
@reports_errors
def probe_command(
    recipe: Annotated[str, typer.Argument(help="Recipe file or shipped recipe name.")],
    checkpoint: Annotated[str, typer.Option(help="Checkpoint file (vsr, MMagic or BasicSR) or zoo name.")],
    set_: SetOption = None,
    data: Annotated[str | None, typer.Option(help="Test data folder (default: the embedded validation set).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Where to write the probe's files.")] = None,
    field_clips: Annotated[int, typer.Option(help="Clips whose temporal receptive field is measured.")] = 1,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, ...")] = None,
):
    """How much a model draws from other frames: temporal gain per frame and temporal receptive field."""
    from vsr.probe import receptive_field_profile, run_probe
    from vsr.recipe import load_recipe

    resolved = load_recipe(recipe, *(set_ or []))
    result = run_probe(resolved, checkpoint, data, out_dir=out, device=device, field_clips=field_clips)
    table = Table(title=f"temporal gain: {result.mean_gain:+.3f} dB (whole clip vs each frame alone)")
    for column in ("frame", "PSNR whole clip (dB)", "PSNR frame alone (dB)", "gain (dB)"):
        table.add_column(column, justify="right")
    for row in result.gain_by_frame().itertuples():
        table.add_row(str(row.frame), f"{row.psnr:.3f}", f"{row.psnr_alone:.3f}", f"{row.gain:+.3f}")
    console.print(table)
    profile = receptive_field_profile(result.field()).set_index("distance").share
    past, future = profile[profile.index < 0].sum(), profile[profile.index > 0].sum()
    console.print(
        f"receptive field: {profile[0]:.1%} of each output's sensitivity from its own frame, {past:.1%} from past "
        f"frames, {future:.1%} from future frames" + (f"; files in {out}" if out else "")
    )


@app.command("upscale")
@reports_errors
def upscale_command(
    model: Annotated[str, typer.Argument(help="Zoo name, vsr checkpoint file, or recipe (with --checkpoint).")],
    source: Annotated[Path, typer.Argument(help="Video file (mp4, mkv, webm, ...) or folder of frames.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Video file, or a folder for PNG frames.")],
    checkpoint: Annotated[str | None, typer.Option(help="Weights for a recipe MODEL: a file or a zoo name.")] = None,
    set_: SetOption = None,
    chunk_size: Annotated[int, typer.Option(help="Output frames per temporal chunk (0: whole video).")] = 30,
    chunk_overlap: Annotated[int, typer.Option(help="Warm-up frames on each side of a chunk.")] = 8,
    tile: Annotated[int | None, typer.Option(help="LR tile size in pixels (default: whole frames).")] = None,
    tile_overlap: Annotated[int, typer.Option(help="LR pixels of margin around each tile.")] = 16,
    dtype: Annotated[str, typer.Option(help="float32, bfloat16 or float16 (float16: CUDA only).")] = "float32",
    channels_last: Annotated[bool, typer.Option(help="channels-last memory format (faster convs).")] = False,
    compile_: Annotated[bool, typer.Option("--compile", help="torch.compile the model.")] = False,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, ... (default: cuda if available).")] = None,
    crf: Annotated[int | None, typer.Option(help="Encoder quality for video outputs (x264/VP9 CRF).")] = None,
    fps: Annotated[str | None, typer.Option(help="Output frame rate (default: the source's).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
):
    """Upscale a video or frame folder of any length in bounded memory (overlapping chunks, optional tiles)."""
    from vsr.checkpoints import pretrained_model
    from vsr.upscale import upscale

    net = pretrained_model(model, checkpoint, set_ or [])
    writer_args = {"crf": crf} if crf is not None else {}
    summary = upscale(
        net, source, output, chunk_size=chunk_size or None, chunk_overlap=chunk_overlap, tile=tile,
        tile_overlap=tile_overlap, device=device, dtype=dtype, channels_last=channels_last, compile=compile_,
        overwrite=overwrite, fps=fps, **writer_args,
    )  # fmt: skip
    console.print(str(summary))


@app.command("study")
@reports_errors
def study_command(
    name: Annotated[str, typer.Argument(help="Study name (propagation, alignment, ...) or a study YAML file.")],
    preset: Annotated[str, typer.Option(help="cpu (tiny recipes, embedded set) or paper (full, GPU).")] = "cpu",
    seeds: Annotated[int | None, typer.Option(help="Seeds per variant (default: the preset's).")] = None,
    data: Annotated[str | None, typer.Option(help="Data root for the preset (default: the embedded set).")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Runs folder (default runs/studies/<preset>).")
    ] = None,
    executor: Annotated[str, typer.Option(help="local, slurm or submitit-local.")] = "local",
    jobs: Annotated[
        int, typer.Option(help="Runs at once with the local executor (each gets cores / jobs threads).")
    ] = 1,
    variant: Annotated[list[str] | None, typer.Option(help="Run only these variants (repeatable).")] = None,
    slurm: Annotated[list[str] | None, typer.Option(help="Slurm parameter key=value (repeatable).")] = None,
    report: Annotated[Path | None, typer.Option(help="Report folder (default: reports/<study>-<preset>).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, ...")] = None,
):
    """Train and evaluate every variant × seed of a study, skipping finished runs, then write its report."""
    from vsr.recipe import parse_value
    from vsr.studies import run_study

    slurm_args = {}
    for item in slurm or []:
        key, _, value = item.partition("=")
        slurm_args[key] = parse_value(value)
    index = run_study(
        name, preset=preset, seeds=seeds, data=data, out=out, executor=executor, device=device,
        slurm=slurm_args or None, report=report, variants=variant, jobs=jobs,
    )  # fmt: skip
    console.print(f"report: [bold]{index}[/]")


@app.command("report")
@reports_errors
def report_command(
    runs: Annotated[list[Path], typer.Argument(help="Study runs folders (several: one combined table).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder, e.g. reports/propagation.")],
    base: Annotated[str | None, typer.Option(help="Base variant to compare with (default: each study's).")] = None,
    title: Annotated[str | None, typer.Option(help="Report title.")] = None,
    visual: Annotated[bool, typer.Option(help="Render the visual comparison grid (runs the checkpoints).")] = True,
):
    """Compile finished runs into tables (Markdown, CSV, LaTeX), figures and an index.md."""
    from vsr.reports import write_report

    index = write_report(runs, out, title=title, base=base, visual=visual)
    console.print(f"report: [bold]{index}[/]")


@app.command("profile")
@reports_errors
def profile_command(
    recipe: Annotated[str, typer.Argument(help="Recipe file or shipped recipe name.")],
    set_: SetOption = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    frames: Annotated[int, typer.Option(help="Frames in the timed clip (the paper: 10).")] = 10,
    size: Annotated[str, typer.Option(help="LR size HxW (the paper: 180x320).")] = "180x320",
    repeats: Annotated[int, typer.Option(help="Timed passes (median reported).")] = 3,
    runtime: Annotated[bool, typer.Option(help="Time the model (else parameters and FLOPs only).")] = True,
):
    """Parameters per component, FLOPs per frame and runtime per frame at the paper's setting."""
    from vsr.profile import profile
    from vsr.recipe import load_recipe

    try:
        h, w = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise VSRError(f"--size {size!r}: write the LR size as HxW, e.g. 180x320") from None
    result = profile(load_recipe(recipe, *(set_ or [])), device=device, frames=frames, size=(h, w), repeats=repeats,
                     runtime=runtime)  # fmt: skip
    table = Table(title=f"{result['recipe']}: {frames} frames of {h}x{w} LR")
    table.add_column("component")
    table.add_column("parameters", justify="right")
    table.add_column("GFLOPs / frame", justify="right")
    by_component = result["flops_per_frame_by_component"]
    for component, count in result["params"].items():
        if component == "total":
            continue
        table.add_row(component, f"{count:,}", f"{by_component.get(component, 0) / 1e9:.2f}")
    table.add_row("total", f"{result['params']['total']:,}", f"{result['flops_per_frame'] / 1e9:.2f}", style="bold")
    console.print(table)
    if runtime:
        console.print(f"runtime: {result['runtime_ms_per_frame']:.1f} ms/frame on {result['device']}")
    if result["uncounted_ops"]:
        console.print(f"not counted (element-wise / data movement): {', '.join(sorted(result['uncounted_ops']))}")


def main() -> None:  # pragma: no cover - console entry point
    app(prog_name="vsr")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

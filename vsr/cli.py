"""The ``vsr`` command line. It only parses arguments and calls library functions of the same names.

A command that fails prints one ``error:`` line naming the problem and the fix, and exits with status 2:
vsr's own errors, and the file-system errors (a full disk, a missing or unwritable path) and undecodable
files a user can cause, named by path. What a user gave (paths, values, names) is printed literally, never
read as rich markup, and bounded in length (:func:`say`, :func:`fail`). Ctrl-C says what was saved.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from vsr.cli_data import data_app
from vsr.cli_support import (
    ImportOption,
    SetOption,
    check_at_least,
    check_device,
    check_output,
    console,
    interrupted,
    os_error_message,
    reports_errors,
    say,
    use_plugins,
)
from vsr.errors import ArgumentError, VSRError, shorten

app = typer.Typer(
    help="Video super-resolution research as composable parts: BasicVSR, IconVSR and their ablations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data_app, name="data")


@app.command("model")
@reports_errors
def model_command(
    recipe: Annotated[str, typer.Argument(help="Recipe file or shipped recipe name (basicvsr, iconvsr, ...).")],
    set_: SetOption = None,
    show_recipe: Annotated[bool, typer.Option("--recipe", help="Also print the resolved recipe.")] = False,
    imports: ImportOption = None,
):
    """Print the assembled architecture: the components and the parameters of each."""
    from vsr.model import assemble
    from vsr.recipe import load_recipe
    from vsr.registry import COMPONENT_KINDS

    use_plugins(imports)

    resolved = load_recipe(recipe, *(set_ or []))
    model = assemble(resolved.model)
    table = Table(title=Text(f"{resolved.name}: ×{model.scale}, {model.channels} channels"))
    table.add_column("kind")
    table.add_column("component")
    table.add_column("arguments")
    table.add_column("parameters", justify="right")
    counts = model.component_parameters()
    for kind in COMPONENT_KINDS:
        entry = dict(resolved.model[kind])
        name = entry.pop("name")
        args = ", ".join(f"{k}={v}" for k, v in entry.items())
        table.add_row(kind, Text(name), Text(args), f"{counts[kind]:,}" if kind in counts else "—")
    table.add_row("total", "", "", f"{sum(p.numel() for p in model.parameters()):,}", style="bold")
    console.print(table)
    if show_recipe:
        console.print(resolved.to_yaml(), highlight=False, markup=False)


@app.command("list")
@reports_errors
def list_command(imports: ImportOption = None):
    """Every kind with its registered names (components, losses, degradations, metrics, objectives), one
    line per kind, plugins (--import) included."""
    from vsr.registry import registered

    use_plugins(imports)
    for kind, names in registered().items():
        say((f"{kind}:", "bold"), " ", ", ".join(names))


@app.command("zoo")
@reports_errors
def zoo_command():
    """List the published checkpoints usable by name: their recipe, the sha256 prefix a download is checked
    against, and their published PSNR/SSIM."""
    from vsr.zoo import TEST_SETS, ZOO

    table = Table(title="Published checkpoints (MMagic model zoo); PSNR/SSIM, RGB on REDS4, Y elsewhere")
    table.add_column("name")
    table.add_column("recipe")
    table.add_column("trained on")
    table.add_column("sha256")
    for test_set in TEST_SETS:
        table.add_column(test_set, justify="right")
    for entry in ZOO.values():
        cells = [
            f"{entry.results[s][0]:.2f}/{entry.results[s][1]:.4f}" if s in entry.results else "" for s in TEST_SETS
        ]
        recipe = " ".join([entry.recipe, *(f"--set {o}" for o in entry.overrides)])
        table.add_row(entry.name, recipe, entry.trained_on, entry.sha256_prefix, *cells)
    Console(width=max(console.width, 200)).print(table)


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
    imports: ImportOption = None,
):
    """Train a recipe (one process; several GPUs with `torchrun --nproc-per-node N -m vsr train ...`)."""
    from vsr.device import default_device
    from vsr.model import TRAINING_BYTES, check_model_size
    from vsr.recipe import load_recipe
    from vsr.training import train

    use_plugins(imports)

    if allow_changes and not resume:
        raise ArgumentError(
            "--allow-changes applies only with --resume (it lets a resumed run take a changed recipe): add --resume "
            "to continue the run in --out, or drop --allow-changes"
        )
    resolved = load_recipe(recipe, *(set_ or [])).with_imports(imports or [])
    check_output(out, "--out")
    check_device(device)
    check_model_size(resolved.model, TRAINING_BYTES, default_device(device))  # weights, gradients, Adam's moments
    try:
        result = train(resolved, out, data=data, resume=resume, device=device, allow_recipe_changes=allow_changes)
    except KeyboardInterrupt:
        saved, status = training_saved(resolved, out, recipe, set_ or [])
        raise interrupted(f"interrupted{'' if saved else ' before the first checkpoint'}: {status}") from None
    except OSError as err:  # a full disk: say what the run kept
        raise VSRError(
            f"{os_error_message(err)}. So far: {training_saved(resolved, out, recipe, set_ or [])[1]}"
        ) from None
    say(f"run finished: {result}")


def training_saved(resolved, out: Path | None, recipe: str, overrides: list[str]) -> tuple[bool, str]:
    """What a stopped ``vsr train`` leaves: ``(True, its latest checkpoint and the command that resumes from
    it)``, or ``(False, nothing to resume from)``."""
    from vsr.checkpoints import read_checkpoint
    from vsr.training.files import LATEST_CHECKPOINT
    from vsr.training.trainer import default_run_folder

    run_dir = out if out is not None else default_run_folder(resolved)
    latest = run_dir / LATEST_CHECKPOINT
    if not latest.is_file():
        return False, f"nothing was saved to resume from (in {run_dir}); run the same command again to start over"
    try:
        iteration = read_checkpoint(latest).get("iteration")
    except VSRError:
        iteration = None
    at = f" at iteration {iteration}" if isinstance(iteration, int) else ""
    plugins = (a for m in resolved.imports for a in ("--import", m))
    sets = (a for o in overrides for a in ("--set", o))
    command = ["vsr", "train", recipe, *sets, *plugins, "--out", str(run_dir), "--resume"]
    return True, f"the run is saved{at} ({latest}); continue it with --resume: {shlex.join(command)}"


@app.command("test")
@reports_errors
def evaluate_command(
    recipe: Annotated[str, typer.Argument(help="Recipe file or shipped recipe name.")],
    checkpoint: Annotated[str, typer.Option(help="Checkpoint file (vsr, MMagic or BasicSR) or zoo name.")],
    set_: SetOption = None,
    data: Annotated[
        str | None,
        typer.Option(
            help="Test data folder (default: the embedded validation set); a folder of LR clips without "
            "GT (data/real/lq) is scored by the no-reference metrics alone."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Where to write metrics.json and per_frame.csv.")
    ] = None,
    save_frames: Annotated[bool, typer.Option(help="Also write the output frames as PNG.")] = False,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, ...")] = None,
    imports: ImportOption = None,
):
    """Evaluate a checkpoint: the recipe's metrics (data.val_metrics; PSNR/SSIM by default) per clip and per
    frame, and the bicubic baseline's; on clips without GT, its no-reference ones (--set 'data.val_metrics=[niqe]')."""
    from vsr.evaluate import evaluate
    from vsr.recipe import load_recipe

    use_plugins(imports)

    resolved = load_recipe(recipe, *(set_ or []))
    check_output(out, "--out")
    check_device(device)
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
    imports: ImportOption = None,
):
    """How much a model draws from other frames: temporal gain per frame and temporal receptive field."""
    from vsr.probe import receptive_field_profile, run_probe
    from vsr.recipe import load_recipe

    use_plugins(imports)

    resolved = load_recipe(recipe, *(set_ or []))
    check_output(out, "--out")
    check_device(device)
    check_at_least(0, field_clips=field_clips)
    result = run_probe(resolved, checkpoint, data, out_dir=out, device=device, field_clips=field_clips)
    table = Table(title=f"temporal gain: {result.mean_gain:+.3f} dB (whole clip vs each frame alone)")
    for column in ("frame", "PSNR whole clip (dB)", "PSNR frame alone (dB)", "gain (dB)"):
        table.add_column(column, justify="right")
    for row in result.gain_by_frame().itertuples():
        table.add_row(str(row.frame), f"{row.psnr:.3f}", f"{row.psnr_alone:.3f}", f"{row.gain:+.3f}")
    console.print(table)
    if not result.fields:
        say("receptive field: not measured (--field-clips 0)" + (f"; files in {out}" if out else ""))
        return
    profile = receptive_field_profile(result.field()).set_index("distance").share
    past, future = profile[profile.index < 0].sum(), profile[profile.index > 0].sum()
    say(
        f"receptive field: {profile[0]:.1%} of each output's sensitivity from its own frame, {past:.1%} from past "
        f"frames, {future:.1%} from future frames" + (f"; files in {out}" if out else "")
    )


@app.command("upscale")
@reports_errors
def upscale_command(
    model: Annotated[
        str,
        typer.Argument(
            help="Zoo name, vsr checkpoint file, recipe (with --checkpoint), or a model.onnx from vsr export."
        ),
    ],
    source: Annotated[Path, typer.Argument(help="Video file (mp4, mkv, webm, ...) or folder of frames.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Video file, or a folder for PNG frames.")],
    checkpoint: Annotated[str | None, typer.Option(help="Weights for a recipe MODEL: a file or a zoo name.")] = None,
    set_: SetOption = None,
    chunk_size: Annotated[
        int | None,
        typer.Option(
            help="Output frames per temporal chunk (0: whole video) [default: 30; an ONNX model: its frames "
            "minus twice the overlap]."
        ),
    ] = None,
    chunk_overlap: Annotated[
        int | None,
        typer.Option(
            help="Warm-up frames on each side of a chunk [default: 8; an ONNX model of T frames: at most (T-1)/4]."
        ),
    ] = None,
    tile: Annotated[int | None, typer.Option(help="LR tile size in pixels (default: whole frames).")] = None,
    tile_overlap: Annotated[int, typer.Option(help="LR pixels of margin around each tile.")] = 16,
    dtype: Annotated[str, typer.Option(help="float32, bfloat16 or float16 (float16: CUDA only).")] = "float32",
    channels_last: Annotated[bool, typer.Option(help="channels-last memory format (faster convs).")] = False,
    compile_: Annotated[bool, typer.Option("--compile", help="torch.compile the model.")] = False,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, ... (default: cuda if available).")] = None,
    crf: Annotated[int | None, typer.Option(help="Encoder quality for video outputs (x264/VP9 CRF).")] = None,
    fps: Annotated[str | None, typer.Option(help="Output frame rate (default: the source's).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
    refine_threshold: Annotated[
        float | None,
        typer.Option(
            help="Cleaning (RealBasicVSR): clean again while a pass changes the frames by a mean |Δ| of at least "
            "this, in 0-255 units (255: one pass; the paper: 1.5). Sets model.cleaning.refine_threshold."
        ),
    ] = None,
    max_refine_passes: Annotated[
        int | None, typer.Option(help="Cleaning: at most this many passes. Sets model.cleaning.max_passes.")
    ] = None,
    imports: ImportOption = None,
):
    """Upscale a video or frame folder of any length in bounded memory (overlapping chunks, optional tiles)."""
    from vsr.checkpoints import pretrained_model
    from vsr.components.cleaning import refinement_overrides
    from vsr.upscale import upscale
    from vsr.video import frame_rate

    use_plugins(imports)

    check_output(output, "--output", folder=False)
    fps = str(frame_rate(fps, "--fps")) if fps is not None else None
    check_at_least(0, chunk_size=chunk_size, chunk_overlap=chunk_overlap, tile_overlap=tile_overlap, crf=crf)
    check_at_least(1, tile=tile)
    if tile is not None and tile <= 2 * tile_overlap:
        raise ArgumentError(
            f"--tile {tile} must exceed twice --tile-overlap ({2 * tile_overlap}): raise --tile or lower --tile-overlap"
        )
    check_device(device)
    set_ = [*(set_ or []), *refinement_overrides(refine_threshold, max_refine_passes)]
    if model.endswith(".onnx"):
        net = onnx_model(model, checkpoint, set_, chunk_size, dtype, channels_last, compile_, device)
    else:
        net = pretrained_model(model, checkpoint, set_ or [])
        chunk_size = 30 if chunk_size is None else chunk_size
    writer_args = {"crf": crf} if crf is not None else {}
    try:
        summary = upscale(
            net, source, output, chunk_size=chunk_size or None, chunk_overlap=chunk_overlap, tile=tile,
            tile_overlap=tile_overlap, device=device, dtype=dtype, channels_last=channels_last, compile=compile_,
            overwrite=overwrite, fps=fps, **writer_args,
        )  # fmt: skip
    except KeyboardInterrupt:
        raise interrupted(
            f"interrupted: nothing was written to {output} (an output appears only once complete; an earlier "
            "one is left as it was)"
        ) from None
    say(str(summary))


def onnx_model(path: str, checkpoint, overrides, chunk_size, dtype, channels_last, compile_, device):
    """An exported model for ``vsr upscale``, after refusing the options that do not apply to one."""
    from vsr.export import load_onnx

    given = {"--checkpoint": checkpoint is not None, "--set (or a refinement option)": bool(overrides),
             "--chunk-size": chunk_size is not None, "--dtype": dtype != "float32", "--channels-last": channels_last,
             "--compile": compile_}  # fmt: skip
    refused = [option for option, used in given.items() if used]
    if refused:
        raise ArgumentError(
            f"{shorten(path)} is an exported ONNX model: it runs as exported (its weights, recipe and float32 are "
            f"fixed, and its chunk is its frames minus twice --chunk-overlap), so {', '.join(refused)} cannot apply; "
            "drop them, or upscale with the checkpoint instead"
        )
    return load_onnx(path, device)


@app.command("export")
@reports_errors
def export_command(
    model: Annotated[str, typer.Argument(help="Zoo name, vsr checkpoint file, or recipe (with --checkpoint).")],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="model.onnx (ONNX), or net_g.pth (BasicSR's checkpoint: params, params_ema)."
        ),
    ],
    frames: Annotated[
        int | None, typer.Option(help="ONNX: frames per call of the exported model (fixed; height, width free).")
    ] = None,
    checkpoint: Annotated[str | None, typer.Option(help="Weights for a recipe MODEL: a file or a zoo name.")] = None,
    set_: SetOption = None,
    opset: Annotated[int, typer.Option(help="ONNX opset (GridSample needs 16 or more).")] = 17,
    check: Annotated[
        bool, typer.Option(help="Run the export in ONNX Runtime and compare with PyTorch (within 1e-4).")
    ] = True,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
    imports: ImportOption = None,
):
    """Export a model to ONNX for a fixed number of frames, with dynamic height and width; or its weights as a
    BasicSR checkpoint (``-o net_g.pth``: ``params`` and, with EMA, ``params_ema``, in BasicSR's names)."""
    from vsr.checkpoints import pretrained_model, save_basicsr_checkpoint
    from vsr.export import check_destination, export_onnx

    use_plugins(imports)

    check_output(output, "--output", folder=False)
    if output.suffix not in (".onnx", ".pth"):
        raise ArgumentError(
            f"--output {shorten(str(output))}: name an .onnx file (-o model.onnx) or a .pth file for BasicSR "
            "(-o net_g.pth)"
        )
    if output.exists() and not overwrite:
        raise ArgumentError(f"--output {shorten(str(output))} exists; choose another path, or pass --overwrite")
    check_destination(output)
    if output.suffix == ".pth":
        if set_:
            raise ArgumentError("--set changes a recipe, not weights: a BasicSR checkpoint takes no --set")
        save_basicsr_checkpoint(checkpoint or model, output)
        say(f"wrote {output} (BasicSR's checkpoint format)")
        return
    if frames is None:
        raise ArgumentError("--frames is needed for an ONNX export: the frames per call, e.g. --frames 10")
    check_at_least(1, frames=frames)
    check_at_least(16, opset=opset)
    net = pretrained_model(model, checkpoint, set_ or [])
    try:
        summary = export_onnx(net, output, frames, opset=opset, check=check)
    except KeyboardInterrupt:
        raise interrupted(f"interrupted: nothing was written to {output}") from None
    say(str(summary))


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
    report: Annotated[
        Path | None,
        typer.Option(
            help="Report folder (default: reports/<study> for the cpu preset, where the shipped report is; "
            "reports/<study>-<preset> for others)."
        ),
    ] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, ...")] = None,
    imports: ImportOption = None,
):
    """Train and evaluate every variant × seed of a study, skipping finished runs, then write its report."""
    from vsr.recipe import parse_value
    from vsr.reports import run_and_report

    use_plugins(imports)

    check_output(out, "--out")
    check_output(report, "--report")
    check_at_least(1, seeds=seeds, jobs=jobs)
    check_device(device)

    slurm_args = {}
    for item in slurm or []:
        key, _, value = item.partition("=")
        slurm_args[key] = parse_value(value)
    try:
        index = run_and_report(
            name, preset=preset, seeds=seeds, data=data, out=out, executor=executor, device=device,
            slurm=slurm_args or None, report=report, variants=variant, jobs=jobs, imports=imports or (),
        )  # fmt: skip
    except KeyboardInterrupt:
        raise interrupted(
            "interrupted: finished runs are kept; run the same command again to continue (each unfinished "
            "training resumes from its last checkpoint, or starts over if it had none)"
        ) from None
    say("report: ", (str(index), "bold"))


@app.command("report")
@reports_errors
def report_command(
    runs: Annotated[list[Path], typer.Argument(help="Study runs folders (several: one combined table).")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Report folder (default for one study: its preset's, reports/<study> for "
            "the cpu preset, where the shipped report is).",
        ),
    ] = None,
    base: Annotated[str | None, typer.Option(help="Base variant to compare with (default: each study's).")] = None,
    title: Annotated[str | None, typer.Option(help="Report title.")] = None,
    visual: Annotated[bool, typer.Option(help="Render the visual comparison grid (runs the checkpoints).")] = True,
    imports: ImportOption = None,
):
    """Compile finished runs into tables (Markdown, CSV, LaTeX), figures and an index.md."""
    from vsr.reports import write_report

    use_plugins(imports)
    check_output(out, "--out")
    index = write_report(runs, out, title=title, base=base, visual=visual)
    say("report: ", (str(index), "bold"))


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
    imports: ImportOption = None,
):
    """Parameters per component, FLOPs per frame and runtime per frame at the paper's setting."""
    from vsr.profile import profile
    from vsr.recipe import load_recipe

    use_plugins(imports)

    try:
        h, w = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise ArgumentError(f"--size {shorten(size)}: write the LR size as HxW, e.g. 180x320") from None
    check_at_least(1, frames=frames, repeats=repeats)
    check_device(device)
    result = profile(load_recipe(recipe, *(set_ or [])), device=device, frames=frames, size=(h, w), repeats=repeats,
                     runtime=runtime)  # fmt: skip
    table = Table(title=Text(f"{result['recipe']}: {frames} frames of {h}x{w} LR"))
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
        say(f"runtime: {result['runtime_ms_per_frame']:.1f} ms/frame on {result['device']}")
    if result["deform_conv2d"]:
        say(f"deformable convolution: {result['deform_conv2d']}")
    if result["uncounted_ops"]:
        say(f"not counted (element-wise / data movement): {', '.join(sorted(result['uncounted_ops']))}")


def main() -> None:  # pragma: no cover - console entry point
    app(prog_name="vsr")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

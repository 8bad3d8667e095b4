"""ONNX export of a vsr model, and running an exported model where vsr runs a PyTorch one.

:func:`export_onnx` writes a model for a fixed number of frames ``T``, with dynamic batch, height and width:
input ``lr`` ``(n, T, 3, h, w)`` in [0, 1], output ``hr`` ``(n, T, 3, s·h, s·w)``. The recurrence over frames
is unrolled, so ``T`` is fixed; sizes are not: the model is traced (TorchScript exporter, ONNX opset 17) on
an example whose size takes every size-dependent path (padding to the refill's multiple of 4, resizing to
SPyNet's multiple), so the graph computes those amounts from the input instead of fixing them. Every op is a
standard ONNX op: warping is ``GridSample``, and IconVSR's deformable convolution runs through vsr's
pure-PyTorch implementation (a ``GridSample`` and a ``MatMul``), never torchvision's custom op, which ONNX
Runtime lacks.

RealBasicVSR's dynamic refinement stops at a pass chosen by the data, which a graph cannot: its cleaning module
is unrolled to a fixed number of passes with no stopping test, by default :attr:`Cleaning.most_passes
<vsr.components.cleaning.Cleaning.most_passes>` (one pass at a ``refine_threshold`` of 255, the reference's;
``max_passes`` at any lower threshold, the most the refinement runs), or ``cleaning_passes`` when given. The
passes are stored in the file's metadata (``vsr.cleaning_passes``), and the check compares with PyTorch running
the same fixed passes.

The export is checked (``check=True``): ONNX Runtime runs the file at the traced size (one clip) and at another
size with two clips, and its output must agree with PyTorch within ``tolerance`` (1e-4). A component that
cannot be exported (an op without an ONNX form, found in the source of the components that call it, or a
Python branch on tensor values that tracing would freeze) fails with a :class:`VSRError` naming the
component and why.

:class:`OnnxVSR` loads an exported file into a module that :func:`vsr.upscale` runs like any model: it
declares ``scale`` and ``frames_per_call`` (read from the file's metadata), so the upscaler feeds it windows
of exactly ``T`` frames, with the same warm-up and tiles.

``onnx`` and ``onnxruntime`` are optional (``pip install 'vsr[onnx]'``); they are imported where used.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import Tensor, nn

from vsr.atomic import NotWrittenByVsr, refuse_link, write_with
from vsr.components import REGISTRY, deform
from vsr.components.cleaning import Cleaning
from vsr.errors import ArgumentError, VSRError, brief_repr
from vsr.model import check_forward_size
from vsr.recipe import MAX_SCALE, load_yaml, yaml_problem

log = logging.getLogger(__name__)

INPUT, OUTPUT = "lr", "hr"
OPSET = 17  # GridSample (16) on 4-d inputs; what ONNX Runtime 1.16 and later run
TOLERANCE = 1e-4  # largest absolute difference to PyTorch (outputs in [0, 1]) accepted by the check
# The traced example: 4·5 − 1 by 4·7 − 1 LR pixels. Not a multiple of 4 (the refill pads to 4), and once
# padded an odd multiple of 4 (so not a multiple of SPyNet's 8, 16, 32): every size-dependent step is traced
# as computed, not skipped. The check also runs a second size, 22×17 (other residues).
EXAMPLE_SIZE = (19, 27)
CHECK_SIZE = (22, 17)
CHECK_BATCH = 2  # the second size is checked with two clips at once: the batch is dynamic too
METADATA = {
    "scale": "vsr.scale",
    "frames": "vsr.frames",
    "recipe": "vsr.recipe",
    "cleaning_passes": "vsr.cleaning_passes",  # only in the export of a model with a cleaning module
}
#: Memory the exporter takes per op of the traced pass (TorchScript's graph, then ONNX's): about 37 kB measured with
#: torch 2.13 exporting BasicVSR at 8 channels (4 frames, 482 ops: +36 MB of peak RSS; 64 frames, 4,982 ops: +202 MB).
TRACED_OP_BYTES = 32_000
INSTALL = "pip install 'vsr[onnx]' (or: pip install onnx onnxruntime)"


def _import(name: str, what: str):
    try:
        return __import__(name)
    except ImportError:
        raise VSRError(f"{what} needs the {name} package, which is not installed: {INSTALL}") from None


@dataclass
class ExportSummary:
    """What :func:`export_onnx` wrote and how well ONNX Runtime agreed with PyTorch."""

    path: Path
    frames: int
    scale: int
    opset: int
    seconds: float
    max_difference: dict[str, float] = field(default_factory=dict)  # per checked input shape
    frozen_at: list[str] = field(default_factory=list)  # file:line where tracing froze a Python value
    cleaning_passes: int | None = None  # the passes a cleaning module was unrolled to; None without one

    def __str__(self) -> str:
        checked = (
            "; ONNX Runtime agrees with PyTorch to "
            + ", ".join(f"{diff:.1e} at {shape}" for shape, diff in self.max_difference.items())
            if self.max_difference
            else "; not checked"
        )
        cleaning = (
            f", cleaning unrolled to {self.cleaning_passes} pass{'es' if self.cleaning_passes > 1 else ''}"
            if self.cleaning_passes
            else ""
        )
        return (
            f"wrote {self.path} ({self.path.stat().st_size / 2**20:.1f} MiB, opset {self.opset}): "
            f"(n, {self.frames}, 3, h, w) -> (n, {self.frames}, 3, {self.scale}h, {self.scale}w){cleaning} in "
            f"{self.seconds:.1f} s{checked}"
        )


def _component_labels(model: nn.Module) -> dict[nn.Module, str]:
    """``module -> "<kind> component '<name>' (<Class>)"`` for every registered component in ``model``."""
    names = {cls: (kind, name) for kind, classes in REGISTRY.items() for name, cls in classes.items()}
    labels = {}
    for path, module in model.named_modules():
        if type(module) in names:
            kind, name = names[type(module)]
            labels[module] = f"{kind} component '{name}' ({type(module).__name__} at {path or 'the model'})"
    return labels


@contextlib.contextmanager
def _tracking_components(model: nn.Module) -> Iterator[list[str]]:
    """Yield the stack of components whose forward is running (innermost last), kept by module hooks."""
    stack: list[str] = []

    def enter(label: str) -> Callable:
        def hook(module: nn.Module, args) -> None:  # None: the module's input stays as it is
            stack.append(label)

        return hook

    def leave(module: nn.Module, args, output) -> None:  # None: the module's output stays as it is
        stack.pop()

    handles = []
    for module, label in _component_labels(model).items():
        handles.append(module.register_forward_pre_hook(enter(label)))
        handles.append(module.register_forward_hook(leave))
    try:
        yield stack
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def _standard_ops() -> Iterator[None]:
    """Deformable convolution through vsr's pure-PyTorch implementation while tracing: torchvision's is a
    custom op (``torchvision::deform_conv2d``) that ONNX Runtime does not run."""
    deform.deform_backend()  # resolve it first, so that the override below is what stays afterwards
    previous = deform._backend
    deform._backend = "pytorch"
    try:
        yield
    finally:
        deform._backend = previous


def _tracer_branches(caught: list[warnings.WarningMessage]) -> list[str]:
    """Where tracing froze a Python value (``file:line``), from its TracerWarnings."""
    places = []
    for warning in caught:
        if issubclass(warning.category, torch.jit.TracerWarning):
            place = f"{Path(warning.filename).name}:{warning.lineno}"
            if place not in places:
                places.append(place)
    return places


def _culprit(model: nn.Module, stack: list[str], problem: str) -> str:
    """Which component failed: the one whose forward was running (an error while tracing), else those whose
    source calls the op the exporter names (``aten::histc``: an op without an ONNX form, found when the traced
    graph is converted), else the model."""
    if stack:
        return stack[-1]
    op = re.search(r"aten::(\w+)", problem)
    if op is not None:
        word = re.compile(rf"\b{re.escape(op[1])}\b")
        callers = []
        for module, label in _component_labels(model).items():
            with contextlib.suppress(OSError, TypeError):  # classes without source (built-ins, REPL)
                if word.search(inspect.getsource(type(module))) and label not in callers:
                    callers.append(label)
        if callers:
            return ", ".join(callers) + f", which calls {op[1]},"
    return f"the model ({type(model).__name__})"


@contextlib.contextmanager
def _fixed_cleaning(model: nn.Module, passes: int | None) -> Iterator[int | None]:
    """Every cleaning module of ``model`` at ``passes`` fixed passes (default: its ``most_passes``) inside the
    block; yields the passes, None for a model without cleaning."""
    modules = [m for m in model.modules() if isinstance(m, Cleaning)]
    if not modules:
        if passes is not None:
            raise ArgumentError(f"cleaning_passes={passes}: {type(model).__name__} has no cleaning module to unroll")
        yield None
        return
    chosen = passes if passes is not None else max(m.most_passes for m in modules)
    if not isinstance(chosen, int) or isinstance(chosen, bool) or not all(1 <= chosen <= m.max_passes for m in modules):
        most = min(m.max_passes for m in modules)
        raise ArgumentError(
            f"cleaning_passes must be an int from 1 to the cleaning module's max_passes ({most}), got {chosen!r}; "
            "for more passes raise max_passes (--set model.cleaning.max_passes=N)"
        )
    with contextlib.ExitStack() as stack:
        for module in modules:
            stack.enter_context(module.fixed_passes(chosen))
        yield chosen


BASICSR_KEYS = frozenset({"params", "params_ema"})  # all that a BasicSR checkpoint of vsr export holds


def _not_an_export(path: Path) -> str | None:
    """Why the existing file ``path`` is not an earlier output of ``vsr export`` (so ``--overwrite`` must not
    replace it), or None: an ``.onnx`` file carrying vsr's metadata, or a ``.pth`` of BasicSR's
    ``params``/``params_ema`` marked as vsr's (:data:`vsr.checkpoints.EXPORT_KEY`)."""
    from vsr.checkpoints import EXPORT_KEY, VSR_FORMAT, read_checkpoint
    from vsr.training.files import run_folder_of

    run = run_folder_of(path.parent)
    if run is not None:
        return f"it lies in the training run folder {run}, whose files export never replaces"
    if path.suffix == ".onnx":
        try:
            onnx = _import("onnx", "checking the file an ONNX export would replace")
            keys = {entry.key for entry in onnx.load(str(path), load_external_data=False).metadata_props}
        except VSRError:
            raise
        except Exception:
            return "it cannot be read as an ONNX model"
        return None if METADATA["scale"] in keys else "it is an ONNX model without vsr's metadata"
    try:
        held = read_checkpoint(path)
    except VSRError:
        return "it is not a checkpoint"
    if held.get("format") == VSR_FORMAT:
        return "it is a vsr checkpoint (its weights, recipe and training state), not an export"
    if not held or not set(held) <= BASICSR_KEYS | {EXPORT_KEY}:
        return f"it holds {', '.join(sorted(map(str, held))[:4]) or 'nothing'}, not only BasicSR's params"
    mark = held.get(EXPORT_KEY)
    if not isinstance(mark, Mapping) or mark.get("written_by") != "vsr":
        return f"it holds BasicSR weights that vsr export did not write (no {EXPORT_KEY} entry)"
    return None


def check_destination(path: str | os.PathLike) -> None:
    """Refuse an export's ``path`` that is a link, or an existing file that an earlier ``vsr export`` did not
    write (a vsr checkpoint, a run's ``latest.pth``, a file of the user's): ``--overwrite`` replaces only an
    earlier export."""
    path = Path(path)
    refuse_link(path, "the export's output")
    if not path.exists():
        return
    why = _not_an_export(path)
    if why is not None:
        raise NotWrittenByVsr(
            f"{path}: --overwrite replaces only an earlier output of vsr export, but {why}; it is left untouched. "
            "Choose another output path"
        )


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    frames: int,
    *,
    recipe: dict | None = None,
    opset: int = OPSET,
    check: bool = True,
    tolerance: float = TOLERANCE,
    cleaning_passes: int | None = None,
) -> ExportSummary:
    """Export ``model`` (``(n, t, 3, h, w) -> (n, t, 3, s·h, s·w)``, with an int ``scale``) to the ONNX file
    ``path`` for ``frames`` frames per call, with dynamic batch, height and width (see the module docstring).

    ``recipe`` (the resolved recipe) is stored in the file's metadata with the scale and the frame count.
    A model with a cleaning module (RealBasicVSR) is unrolled to ``cleaning_passes`` passes, by default the most
    its refinement runs (1 at a ``refine_threshold`` of 255, else ``max_passes``), stored in the metadata too.
    With ``check`` the file is run in ONNX Runtime and compared with PyTorch (needs ``onnxruntime``); a
    difference above ``tolerance`` fails. Returns an :class:`ExportSummary`."""
    onnx = _import("onnx", "ONNX export")
    if check:
        _import("onnxruntime", "checking an ONNX export (skip the check with --no-check)")
    if not isinstance(frames, int) or isinstance(frames, bool) or frames < 1:
        raise ArgumentError(f"frames must be an int >= 1 (the frames per call of the exported model), got {frames!r}")
    scale = getattr(model, "scale", None)
    if not isinstance(scale, int) or isinstance(scale, bool) or scale < 1:
        raise VSRError(f"{type(model).__name__} has no integer attribute 'scale'; a VSR model must say its factor")
    most = getattr(torch.onnx._constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", None)  # torch's own bound, if any
    if not isinstance(opset, int) or opset < 16 or (most is not None and opset > most):
        raise ArgumentError(
            f"opset {opset!r}: the exporter writes ONNX opsets 16 (GridSample) to {most or 'its newest'}; e.g. {OPSET}"
        )
    path = Path(path)
    began = time.perf_counter()
    was_training = model.training
    model = model.to("cpu").eval()
    # The recurrence is unrolled: the tracer records every op of every frame. Refuse, before tracing, what cannot fit.
    shapes = [(1, EXAMPLE_SIZE), *([(CHECK_BATCH, CHECK_SIZE)] if check else [])]
    check_forward_size(model, frames, shapes, f"export --frames {frames}", bytes_per_op=TRACED_OP_BYTES)
    example = torch.rand(1, frames, 3, *EXAMPLE_SIZE, generator=torch.Generator().manual_seed(0))

    def trace(tmp: Path) -> None:
        with (
            torch.no_grad(),
            _standard_ops(),
            _tracking_components(model) as stack,
            warnings.catch_warnings(record=True) as caught,
        ):
            warnings.simplefilter("always")
            try:
                torch.onnx.export(
                    model, (example,), str(tmp), dynamo=False, opset_version=opset, input_names=[INPUT],
                    output_names=[OUTPUT], dynamic_axes={INPUT: {0: "batch", 3: "height", 4: "width"},
                                                         OUTPUT: {0: "batch", 3: "out_height", 4: "out_width"}},
                )  # fmt: skip
            except Exception as err:
                why = " ".join(str(err).split()) or type(err).__name__
                raise VSRError(
                    f"cannot export to ONNX: {_culprit(model, stack, why)} failed: {why[:400]}. Choose another "
                    "component for the export, or give it an ONNX-exportable forward"
                ) from None
        exported.frozen_at = _tracer_branches(caught)
        onnx_model = onnx.load(str(tmp))
        entries = {"scale": str(scale), "frames": str(frames), "recipe": yaml.safe_dump(recipe or {}, sort_keys=False)}
        if exported.cleaning_passes is not None:
            entries["cleaning_passes"] = str(exported.cleaning_passes)
        for key, value in entries.items():
            entry = onnx_model.metadata_props.add()
            entry.key, entry.value = METADATA[key], value
        onnx.save(onnx_model, str(tmp))
        if check:  # before the file takes its name: a failed export leaves nothing that looks finished
            exported.max_difference = _check(model, tmp, path, frames, tolerance, exported.frozen_at)

    exported = ExportSummary(path, frames, scale, opset, 0.0)
    check_destination(path)
    try:
        with _fixed_cleaning(model, cleaning_passes) as passes:
            exported.cleaning_passes = passes
            write_with(trace, path, ".onnx")
    finally:
        model.train(was_training)
    exported.seconds = time.perf_counter() - began
    log.info("%s", exported)
    return exported


def _check(
    model: nn.Module, file: Path, path: Path, frames: int, tolerance: float, branches: list[str]
) -> dict[str, float]:
    """Run the exported ``file`` (to become ``path``) at the traced shape and another one; the largest
    difference to PyTorch per shape."""
    runner = OnnxVSR(file)
    generator = torch.Generator().manual_seed(1)
    differences = {}
    for n, (h, w) in ((1, EXAMPLE_SIZE), (CHECK_BATCH, CHECK_SIZE)):
        lrs = torch.rand(n, frames, 3, h, w, generator=generator)
        with torch.no_grad(), _standard_ops():
            expected = model(lrs)
        try:
            got = runner._run(lrs)
        except Exception as err:  # onnxruntime's errors are not one type
            problem = " ".join(str(err).split())
            where = _failing_component(model, problem)
            raise VSRError(
                f"{path}: ONNX Runtime cannot run the export on input {tuple(lrs.shape)}"
                + (
                    f": {where} fails at another size than the traced {EXAMPLE_SIZE[0]}x{EXAMPLE_SIZE[1]}"
                    if where
                    else ""
                )
                + f" ({problem[:300]})"
                + _frozen(branches)
                + ". The export is not written. "
                + _what_to_do(where)
            ) from None
        difference = (got - expected).abs().max().item()
        differences["x".join(map(str, lrs.shape))] = difference
        if not difference <= tolerance:
            raise VSRError(
                f"{path}: the export differs from PyTorch by {difference:.3g} (more than {tolerance:g}) on input "
                f"{tuple(lrs.shape)}" + _frozen(branches)
            )
    return differences


def _failing_component(model: nn.Module, problem: str) -> str | None:
    """The registered component whose node ONNX Runtime names in ``problem`` (``Name:'/propagation/Add_3'``): the
    innermost one whose module path begins the node's name; None where none is named."""
    node = re.search(r"Name:'/([^']*)'", problem)
    if node is None:
        return None
    parts = node[1].split("/")[:-1]  # the module path, less the op's own name
    labels = _component_labels(model)
    paths = {path: labels[module] for path, module in model.named_modules() if module in labels}
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in paths:
            return paths[".".join(parts[:end])]
    return None


def _what_to_do(component: str | None) -> str:
    """The way out of an export that runs only at its traced size."""
    which = component or "a component"
    return (
        f"{which[0].upper()}{which[1:]} computes a size the tracer froze (a state or a shape made from Python "
        "numbers), so this model cannot be exported to ONNX for any size yet: upscale with its checkpoint in PyTorch "
        "instead (vsr upscale CHECKPOINT in.mp4 -o out.mp4), which takes any size, or choose other components for "
        "the export"
    )


def _frozen(branches: list[str]) -> str:
    if not branches:
        return ""
    return (
        "; tracing froze Python values (a branch on a tensor's value or size) at "
        + ", ".join(branches[:6])
        + ": a component there computes differently for other inputs"
    )


class OnnxVSR(nn.Module):
    """An exported model run by ONNX Runtime, usable where vsr takes a model (``vsr.upscale``).

    ``forward(lrs (n, T, 3, h, w))`` returns ``(n, T, 3, s·h, s·w)`` on the input's device (float32);
    ``scale`` and ``frames_per_call`` (``T``) come from the file. ``device``: ``cpu`` (default) or ``cuda``
    (ONNX Runtime's CUDA provider, where installed)."""

    def __init__(self, path: str | os.PathLike, device: str | torch.device | None = None):
        super().__init__()
        ort = _import("onnxruntime", "running an ONNX model")
        self.path = Path(path)
        if not self.path.is_file():
            raise VSRError(f"{self.path}: no such ONNX file")
        device = torch.device(device or "cpu")
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise VSRError(
                    "ONNX Runtime here has no CUDA provider (install onnxruntime-gpu), so the ONNX model runs on "
                    "the CPU only: use --device cpu"
                )
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as err:  # onnxruntime's errors are not one type
            problem = " ".join(str(err).split())[:300]
            raise VSRError(f"{self.path} is not an ONNX model that ONNX Runtime can load: {problem}") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if METADATA["scale"] not in meta or METADATA["frames"] not in meta:
            raise VSRError(f"{self.path} was not exported by vsr (no {METADATA['scale']} in its metadata); export "
                           "it with vsr export")  # fmt: skip
        self.scale, self.frames_per_call = self._count(meta, "scale"), self._count(meta, "frames")
        try:
            self.recipe = load_yaml(meta.get(METADATA["recipe"], "")) or {}
        except yaml.YAMLError as err:
            raise VSRError(f"{self.path}: its metadata {METADATA['recipe']} is not valid YAML ({yaml_problem(err)}); "
                           "the file was edited: export it again with vsr export") from None  # fmt: skip
        passes = meta.get(METADATA["cleaning_passes"])  # a cleaning module's fixed passes
        self.cleaning_passes = self._count(meta, "cleaning_passes") if passes is not None else None
        shape = self.session.get_inputs()[0].shape
        batch, frames = [*shape, None, None][:2]
        if isinstance(frames, int) and frames != self.frames_per_call:
            raise VSRError(
                f"{self.path}: its metadata {METADATA['frames']} = {self.frames_per_call}, but its input takes "
                f"{frames} frames; the file was edited: export it again with vsr export"
            )
        self.batch = batch if isinstance(batch, int) else None  # an int: a file exported for that batch alone
        self.torch_options = False  # runs as exported: no autocast, channels-last or torch.compile

    def _count(self, meta: dict[str, str], key: str) -> int:
        """The metadata entry ``key`` (:data:`METADATA`): a whole number >= 1 (a scale at most ``MAX_SCALE``), else
        a :class:`VSRError` naming it."""
        text, most = meta[METADATA[key]], MAX_SCALE if key == "scale" else 10**9
        if not re.fullmatch(r"\s*[0-9]{1,10}\s*", text) or not 1 <= int(text) <= most:
            raise VSRError(
                f"{self.path}: its metadata {METADATA[key]} = {brief_repr(text)} is not a whole number from 1 to "
                f"{most} (vsr writes one); the file was edited or not written by vsr: export it again with vsr export"
            )
        return int(text)

    def forward(self, lrs: Tensor) -> Tensor:
        if lrs.ndim != 5 or lrs.shape[0] < 1 or lrs.shape[1] != self.frames_per_call or lrs.shape[2] != 3:
            raise VSRError(
                f"{self.path.name} takes (n, {self.frames_per_call}, 3, h, w): it was exported for clips of "
                f"{self.frames_per_call} frames; got {tuple(lrs.shape)}"
            )
        if self.batch is not None and lrs.shape[0] != self.batch:
            raise VSRError(
                f"{self.path.name} was exported for a batch of {self.batch} clip(s) only; got {lrs.shape[0]}. Run "
                "the clips one call each, or export the model again (vsr export makes the batch dynamic)"
            )
        try:
            return self._run(lrs)
        except Exception as err:  # onnxruntime's errors are not one type; a file exported with --no-check
            node = re.search(r"Name:'([^']*)'", str(err))
            raise VSRError(
                f"{self.path.name}: ONNX Runtime cannot run it on input {tuple(lrs.shape)}"
                + (f" (node {node[1]} fails)" if node else f": {' '.join(str(err).split())[:300]}")
                + f"; a file exported unchecked (--no-check) can have sizes frozen at the traced "
                f"{EXAMPLE_SIZE[0]}x{EXAMPLE_SIZE[1]}: export it again with the check, which names the component that "
                "fails, or upscale with the checkpoint in PyTorch instead"
            ) from None

    def _run(self, lrs: Tensor) -> Tensor:
        """The session's output for ``lrs``, its errors as ONNX Runtime raises them."""
        array = np.ascontiguousarray(lrs.detach().float().cpu().numpy())
        (out,) = self.session.run([OUTPUT], {INPUT: array})
        return torch.from_numpy(out).to(lrs.device)

    def extra_repr(self) -> str:
        return f"{self.path}, scale={self.scale}, frames_per_call={self.frames_per_call}"


def load_onnx(path: str | os.PathLike, device: str | torch.device | None = None) -> OnnxVSR:
    """An exported vsr model (see :class:`OnnxVSR`)."""
    return OnnxVSR(path, device)


__all__ = ["EXAMPLE_SIZE", "OPSET", "TOLERANCE", "ExportSummary", "OnnxVSR", "export_onnx", "load_onnx"]

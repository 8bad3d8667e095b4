"""Training: losses and the lr schedule against closed forms, parameter groups and freezing, checkpoints,
bit-exact resume, divergence handling, bf16 autocast / torch.compile on CPU, DDP (gloo, 2 processes) against
one process with the same global batch, and flow pretraining. Tiny models on a tiny synthetic set."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from PIL import Image
from tiny import TINY_DATA, TINY_MODEL, as_torchrun_rank, spawn_two_ranks, tiny_synth

import vsr.losses
from vsr import DataError, RecipeError, VSRError
from vsr.checkpoints import load_checkpoint, read_checkpoint
from vsr.data.layouts import open_dataset
from vsr.data.sampling import RunSampler
from vsr.evaluate import evaluate
from vsr.losses import build_losses, charbonnier, endpoint_error, l1, mse
from vsr.model import assemble
from vsr.probe import run_probe
from vsr.recipe import load_recipe
from vsr.training import (
    WEIGHTS_DIR,
    CosineRestartLR,
    FlowObjective,
    Trainer,
    build_optimizer,
    build_scheduler,
    resolve_init,
    train,
)
from vsr.training.distributed import leave_without_teardown

TINY = {
    "name": "tiny",
    "model": TINY_MODEL,
    "data": TINY_DATA,
    "train": {
        "iterations": 4,
        "periods": [4],
        "lr": 1e-3,
        "fix_iterations": 2,
        "log_every": 1,
        "val_every": 2,
        "checkpoint_every": 2,
    },
}


def tiny(**sections) -> dict:
    """TINY with some keys replaced, e.g. ``tiny(train={"iterations": 2})``."""
    recipe = copy.deepcopy(TINY)
    for section, values in sections.items():
        recipe[section].update(values)
    return recipe


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """A synthetic set of 3 training clips and 1 validation clip of 5 frames, 64×64 GT (16×16 LR)."""
    root = tmp_path_factory.mktemp("synth") / "set"
    tiny_synth(root)
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_root, monkeypatch_module):
    """The same 4-iteration run twice: uninterrupted, and interrupted during iteration 4 then resumed."""
    base = tmp_path_factory.mktemp("runs")
    full = train(TINY, base / "full", data=data_root, progress=False)

    calls = {"n": 0}
    original = vsr.losses.charbonnier

    def interrupting(pred, target, eps=1e-12):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(pred, target, eps)

    monkeypatch_module.setattr(vsr.losses, "charbonnier", interrupting)
    with pytest.raises(KeyboardInterrupt):
        train(TINY, base / "resumed", data=data_root, progress=False)
    interrupted = read_checkpoint(base / "resumed" / "checkpoints" / "latest.pth")
    monkeypatch_module.setattr(vsr.losses, "charbonnier", original)
    resumed = train(TINY, base / "resumed", data=data_root, resume=True, progress=False)
    return {"full": full, "interrupted": interrupted, "resumed": resumed}


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def initial_model():
    """The weights a run of TINY starts from (the trainer seeds with train.seed = 0, then builds)."""
    torch.manual_seed(0)
    return assemble(load_recipe(TINY).model)


# ------------------------------------------------------------------------------------------------- losses
def test_pixel_losses_match_closed_forms():
    pred, target = torch.rand(2, 3, 3, 8, 8), torch.rand(2, 3, 3, 8, 8)
    d = (pred - target).double().numpy()
    assert charbonnier(pred, target, eps=1e-3).item() == pytest.approx(np.mean(np.sqrt(d**2 + 1e-3)), rel=1e-6)
    assert build_losses(["charbonnier"])(pred, target)[0].item() == pytest.approx(np.mean(np.abs(d)), rel=1e-6)
    assert build_losses([{"name": "charbonnier", "eps": 0.25}])(pred, target)[0].item() == pytest.approx(
        np.mean(np.sqrt(d**2 + 0.25)), rel=1e-6
    )
    assert l1(pred, target).item() == pytest.approx(np.mean(np.abs(d)), rel=1e-6)
    assert mse(pred, target).item() == pytest.approx(np.mean(d**2), rel=1e-6)
    with pytest.raises(RecipeError, match=r"train.losses\[0\]' = 'huber': unknown loss; valid choices: charbonnier"):
        build_losses(["huber"])


def test_losses_are_a_weighted_sum_of_registered_terms():
    pred, target = torch.rand(2, 3, 3, 8, 8), torch.rand(2, 3, 3, 8, 8)
    d = (pred - target).double().numpy()
    total, terms = build_losses([{"name": "l1", "weight": 0.5}, {"name": "mse", "weight": 2}, "l1"])(pred, target)
    assert set(terms) == {"l1", "mse", "l1_2"}
    expected = 0.5 * np.mean(np.abs(d)) + 2 * np.mean(d**2) + np.mean(np.abs(d))
    assert total.item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(RecipeError, match=r"train.losses\[1\].weight' = -1: must be a number >= 0"):
        build_losses(["l1", {"name": "mse", "weight": -1}])
    with pytest.raises(RecipeError, match=r"train.losses\[0\].epsilon' = 1: not an argument of loss 'charbonnier'"):
        build_losses([{"name": "charbonnier", "epsilon": 1}])


def test_a_recipe_with_the_old_loss_keys_is_told_the_new_spelling():
    with pytest.raises(RecipeError, match=r"'train.loss' = 'l1': no longer a key; write train.losses: \[\{name:"):
        load_recipe(TINY, "train.loss=l1")
    with pytest.raises(RecipeError, match=r"train.charbonnier_eps.*write train.losses: \[\{name: charbonnier, "):
        load_recipe(TINY, "train.charbonnier_eps=0.001")


def test_endpoint_error_is_mean_euclidean_distance():
    pred, true = torch.randn(3, 2, 5, 7), torch.randn(3, 2, 5, 7)
    d = (pred - true).numpy()
    assert endpoint_error(pred, true).item() == pytest.approx(np.mean(np.hypot(d[:, 0], d[:, 1])), rel=1e-6)
    with pytest.raises(ValueError, match=r"two flows"):
        endpoint_error(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))


# --------------------------------------------------------------------------------------- lr schedule
def test_cosine_restart_matches_closed_form_for_both_groups():
    periods, weights, eta_min, bases = [4, 6], [1.0, 0.5], 0.01, (1.0, 0.125)
    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    opt = torch.optim.SGD([{"params": [params[0]], "lr": bases[0]}, {"params": [params[1]], "lr": bases[1]}])
    scheduler = CosineRestartLR(opt, periods, weights, eta_min)

    def expected(base, i):
        if i < 4:
            return eta_min + 0.5 * (base - eta_min) * (1 + math.cos(math.pi * i / 4))
        if i < 10:
            return eta_min + 0.5 * 0.5 * (base - eta_min) * (1 + math.cos(math.pi * (i - 4) / 6))
        return eta_min

    for i in range(13):
        for group, base in zip(opt.param_groups, bases, strict=True):
            assert group["lr"] == pytest.approx(expected(base, i), abs=1e-12), (i, base)
        opt.step()
        scheduler.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(eta_min)


def test_scheduler_recipe_errors():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    cfg = load_recipe(tiny(train={"periods": [2, 2], "restart_weights": [1.0]})).train
    with pytest.raises(RecipeError, match=r"restart_weights.*one weight per period"):
        build_scheduler(opt, cfg)
    cfg = {**load_recipe(TINY).train, "scheduler": "step"}  # past the recipe's own check of the choice
    with pytest.raises(RecipeError, match=r"train.scheduler.*unknown scheduler.*cosine_restart"):
        build_scheduler(opt, cfg)


# ------------------------------------------------------------------------------ groups and freezing
def test_param_groups_give_pretrained_modules_their_lr():
    recipe = load_recipe(tiny(train={"lr": 2e-4, "pretrained_lr_mult": 0.125}))
    model = assemble(recipe.model)
    opt = build_optimizer(model, recipe.train)
    groups = {g["name"]: g for g in opt.param_groups}
    flow_ids = {id(p) for p in model.flow.parameters()}
    assert {id(p) for p in groups["pretrained"]["params"]} == flow_ids
    assert not flow_ids & {id(p) for p in groups["main"]["params"]}
    assert len(groups["main"]["params"]) + len(flow_ids) == len(list(model.parameters()))
    assert groups["pretrained"]["lr"] == pytest.approx(2.5e-5) and groups["main"]["lr"] == pytest.approx(2e-4)
    assert opt.defaults["betas"] == (0.9, 0.99)


def test_pretrained_modules_frozen_for_fix_iterations_then_trained(runs):
    start = initial_model().state_dict()
    at_2 = runs["interrupted"]["model"]  # checkpoint at iteration 2 = fix_iterations
    at_4 = read_checkpoint(runs["full"].checkpoint)["model"]
    for key, value in start.items():
        if key.startswith("flow.") and key.endswith("weight"):
            assert torch.equal(at_2[key], value), f"{key} changed while frozen"
            assert not torch.equal(at_4[key], value), f"{key} never trained after fix_iterations"
    trunk = "propagation.backward_aggregation.input_conv.weight"
    assert not torch.equal(at_2[trunk], start[trunk])


# ------------------------------------------------------------------------------ checkpoints and logs
def test_checkpoint_holds_everything_to_resume(runs):
    state = runs["interrupted"]
    assert state["iteration"] == 2 and state["format"] == "vsr-checkpoint-v1"
    assert state["recipe"]["model"]["channels"] == 8
    assert state["sampler"] == {"iteration": 2, "batch_size": 2, "world_size": 1, "seed": 0}
    assert set(state["rng"]) >= {"python", "numpy", "torch"}
    assert [g["name"] for g in state["optimizers"]["model"]["param_groups"]] == ["main", "pretrained"]
    assert state["schedulers"]["model"]["last_epoch"] == 2
    expected_lr = 1e-7 + 0.5 * (1e-3 - 1e-7) * (1 + math.cos(math.pi * 2 / 4))
    assert state["schedulers"]["model"]["_last_lr"][0] == pytest.approx(expected_lr)
    assert state["last_val"]["iteration"] == 2 and state["best"]["iteration"] == 2


def test_resume_is_bit_identical_to_an_uninterrupted_run(runs):
    full = read_checkpoint(runs["full"].out_dir / "checkpoints" / "latest.pth")
    resumed = read_checkpoint(runs["resumed"].out_dir / "checkpoints" / "latest.pth")
    assert resumed["iteration"] == full["iteration"] == 4
    for key, value in full["model"].items():
        assert torch.equal(resumed["model"][key], value), key
    moments = (state["optimizers"]["model"]["state"].values() for state in (full, resumed))
    for a, b in zip(*moments, strict=True):
        assert torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])
    assert runs["resumed"].metrics == runs["full"].metrics


def test_logs_and_result(runs):
    out = runs["resumed"].out_dir
    entries = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    train_iters = [e["iteration"] for e in entries if e["event"] == "train"]
    assert train_iters == [1, 2, 3, 4]  # the resumed run dropped nothing and repeated nothing
    assert [e["iteration"] for e in entries if e["event"] == "val"] == [2, 4]
    assert all({"loss", "lr", "it_per_s", "time"} <= set(e) for e in entries if e["event"] == "train")
    csv_rows = (out / "metrics.csv").read_text().splitlines()
    assert csv_rows[0].startswith("iteration,time,psnr,ssim,baseline_psnr") and len(csv_rows) == 3
    result = json.loads((out / "result.json").read_text())
    assert result["iterations"] == 4 and result["parameters"] == sum(p.numel() for p in initial_model().parameters())
    assert result["psnr_gain"] == pytest.approx(result["metrics"]["psnr"] - result["baseline"]["psnr"])
    assert load_recipe(out / "recipe.yaml").model == load_recipe(TINY).model
    assert (out / "model.safetensors").is_file() and (out / "checkpoints" / "best.pth").is_file()


def test_run_folder_is_not_overwritten_and_resume_needs_a_run(runs, data_root, tmp_path):
    with pytest.raises(VSRError, match=r"already holds a run.*resume"):
        train(TINY, runs["full"].out_dir, data=data_root, progress=False)
    with pytest.raises(VSRError, match=r"nothing to resume"):
        train(TINY, tmp_path / "new", data=data_root, resume=True, progress=False)


def test_bad_inputs_are_named(data_root, tmp_path):
    with pytest.raises(DataError, match=r"training data .*missing.* does not exist"):
        train(TINY, tmp_path / "a", data=tmp_path / "missing", progress=False)
    with pytest.raises(RecipeError, match=r"train.objective.*unknown objective; valid choices: flow, realbasicvsr_gan"):
        train(tiny(train={"objective": "gan"}), tmp_path / "b", data=data_root, progress=False)
    with pytest.raises(DataError, match=r"×4 but model.scale is 2"):
        train(tiny(model={"scale": 2}), tmp_path / "c", data=data_root, progress=False)
    with pytest.raises(RecipeError, match=r"train.amp.*unknown precision"):
        train(tiny(train={"amp": "int8"}), tmp_path / "d", data=data_root, progress=False)


# ------------------------------------------------------------------------------------------ divergence
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(data_root, tmp_path, monkeypatch):
    calls = {"n": 0}
    original = vsr.losses.charbonnier

    def exploding(pred, target, eps=1e-12):
        calls["n"] += 1
        loss = original(pred, target, eps)
        return loss * float("nan") if calls["n"] >= 4 else loss

    monkeypatch.setattr(vsr.losses, "charbonnier", exploding)
    with pytest.raises(VSRError, match=r"diverged: the loss is nan at iteration 4; the last good checkpoint .* kept"):
        train(tiny(train={"iterations": 6, "periods": [6]}), tmp_path, data=data_root, progress=False)
    kept = read_checkpoint(tmp_path / "checkpoints" / "latest.pth")
    assert kept["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in kept["model"].values())
    assert not (tmp_path / "result.json").exists()


def test_huge_learning_rate_diverges_with_a_hint(data_root, tmp_path):
    recipe = tiny(train={"lr": 1e30, "iterations": 6, "periods": [6], "fix_iterations": 0, "checkpoint_every": 1})
    with pytest.raises(VSRError, match=r"diverged.*Lower train.lr.*grad_clip"):
        train(recipe, tmp_path, data=data_root, progress=False)
    kept = read_checkpoint(tmp_path / "checkpoints" / "latest.pth")
    assert all(torch.isfinite(v).all() for v in kept["model"].values())


# ------------------------------------------------------------------------------ precision and compile
def test_bf16_autocast_steps_on_cpu(data_root, tmp_path):
    recipe = tiny(train={"amp": "bf16", "iterations": 2, "periods": [2], "fix_iterations": 0, "grad_clip": 1.0})
    result = train(recipe, tmp_path, data=data_root, progress=False)
    assert result.result["autocast"] == "bfloat16"
    state = read_checkpoint(result.checkpoint)["model"]
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in state.values())
    start = initial_model().state_dict()
    assert not torch.equal(state["upsampling.conv_last.weight"], start["upsampling.conv_last.weight"])


@pytest.mark.slow
def test_torch_compile_steps_on_cpu(data_root, tmp_path):
    recipe = tiny(
        model={"alignment": "none", "aggregation": {"name": "residual", "num_blocks": 0}},
        data={"num_frames": 2, "batch_size": 1},
        train={"compile": True, "iterations": 1, "periods": [1], "val_every": 0},
    )
    result = train(recipe, tmp_path, data=data_root, progress=False)
    assert result.result["compile"] is True and math.isfinite(result.metrics["psnr"])


# ------------------------------------------------------------------------------------------------ DDP
def test_run_sampler_shards_one_global_sequence():
    single = list(RunSampler(3, 6, batch_size=4))
    ranks = [list(RunSampler(3, 6, batch_size=2, rank=r, world_size=2)) for r in range(2)]
    interleaved = [i for it in range(3) for r in range(2) for i in ranks[r][2 * it : 2 * it + 2]]
    assert interleaved == single == list(range(12, 24))


def _ddp_worker(rank: int, port: int, recipe: dict, data_root: str, out: str) -> None:
    as_torchrun_rank(rank, port)
    trainer = Trainer(load_recipe(recipe), Path(out), data_root, False, "cpu", False)
    trainer.run()
    torch.save(trainer.model.state_dict(), Path(out).parent / f"rank{rank}.pt")
    leave_without_teardown()


def test_ddp_two_processes_match_one_process_with_the_global_batch(data_root, tmp_path):
    """Two gloo ranks with batch 1 end with identical weights, equal (to float tolerance) to one process
    with batch 2: the same samples, gradients averaged. Thawing at fix_iterations re-wraps the model."""
    recipe = tiny(data={"batch_size": 1}, train={"iterations": 3, "periods": [3], "fix_iterations": 1})
    spawn_two_ranks(_ddp_worker, recipe, str(data_root), str(tmp_path / "ddp" / "run"))
    rank0, rank1 = (torch.load(tmp_path / "ddp" / f"rank{r}.pt") for r in range(2))
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    single = train(
        tiny(data={"batch_size": 2}, train=recipe["train"]), tmp_path / "one", data=data_root, progress=False
    )
    reference = read_checkpoint(single.checkpoint)["model"]
    ddp = torch.cat([v.flatten() for v in rank0.values()])
    one = torch.cat([reference[k].flatten() for k in rank0])
    diff = (ddp - one).abs()
    # Summation order differs, and Adam turns a gradient within rounding noise of zero into a full-size
    # step of either sign: nearly every weight agrees to float precision, none by more than lr per step.
    assert (diff <= 1e-6 + 1e-4 * one.abs()).float().mean() > 0.999
    assert diff.max() <= 2 * recipe["train"]["lr"] * recipe["train"]["iterations"]
    assert json.loads((tmp_path / "ddp" / "run" / "result.json").read_text())["world_size"] == 2


def test_ddp_flow_pretraining_runs_on_every_rank(data_root, tmp_path):
    """Flow pretraining validates the initial weights on rank 0 only; the other rank must not need that
    record (it once called ``dict(None)`` there) and ends with rank 0's weights."""
    recipe = tiny(
        data={"batch_size": 1},
        train={"objective": "flow", "iterations": 1, "periods": [1], "fix_iterations": 0, "val_every": 0},
    )
    spawn_two_ranks(_ddp_worker, recipe, str(data_root), str(tmp_path / "ddp" / "run"))
    rank0, rank1 = (torch.load(tmp_path / "ddp" / f"rank{r}.pt") for r in range(2))
    assert all(torch.equal(rank0[key], rank1[key]) for key in rank0)
    result = json.loads((tmp_path / "ddp" / "run" / "result.json").read_text())
    assert result["world_size"] == 2 and result["initial"]["iteration"] == 0


def _failing_check_worker(rank: int, port: int, recipe: dict, data_root: str, out: str) -> None:
    as_torchrun_rank(rank, port)
    with pytest.raises(DataError, match=r"model.scale"):
        Trainer(load_recipe(recipe), Path(out), data_root, False, "cpu", False).run()
    leaked = dist.is_initialized()
    if leaked:
        dist.destroy_process_group()
    (Path(out).parent / f"rank{rank}.leaked").write_text(str(leaked))


def test_a_failed_check_under_torchrun_leaves_no_process_group(data_root, tmp_path):
    """A recipe that fails its checks (here the model's scale against the data's) raises on every rank
    without leaving a process group behind."""
    spawn_two_ranks(_failing_check_worker, tiny(model={"scale": 2}), str(data_root), str(tmp_path / "run"))
    assert [(tmp_path / f"rank{r}.leaked").read_text() for r in range(2)] == ["False", "False"]


# ------------------------------------------------------------------------------------- flow pretraining
def test_flow_pretraining_lowers_epe_and_initialises_sr_runs(data_root, tmp_path):
    recipe = tiny(
        data={"num_frames": 3, "batch_size": 4},
        train={"objective": "flow", "iterations": 25, "periods": [25], "lr": 3e-3, "fix_iterations": 0,
               "pretrained_lr_mult": 1.0, "log_every": 5, "val_every": 25, "checkpoint_every": 25},
    )  # fmt: skip
    result = train(recipe, tmp_path / "flow", data=data_root, progress=False)
    assert result.result["initial"]["iteration"] == 0
    assert result.metrics["epe"] < result.result["initial"]["epe"]
    assert set(read_checkpoint(result.checkpoint)["model"]) == {
        k for k in initial_model().state_dict() if k.startswith("flow.")
    }

    weights = tmp_path / "flow" / "model.safetensors"
    sr = tiny(train={"init": str(weights), "init_prefixes": ["flow."], "iterations": 1, "periods": [1]})
    trainer = Trainer(load_recipe(sr), tmp_path / "sr", data_root, False, "cpu", False)
    pretrained = read_checkpoint(weights)
    for key, value in pretrained.items():
        assert torch.equal(trainer.model.state_dict()[key], value), key


def test_flow_validation_is_zero_for_the_true_flow_and_baseline_for_zero_flow(data_root):
    """EPE of an oracle that returns the true flows is 0; of zero flow, the mean true flow length."""
    objective = FlowObjective(load_recipe(tiny(train={"objective": "flow"})), torch.device("cpu"))
    objective.val_source = open_dataset({"root": data_root, "split": "val"})
    (_, lq, true), *_ = list(objective._pairs())

    class Oracle(torch.nn.Module):
        def forward(self, lrs):
            return true[0][None], true[1][None]

    assert objective.validate(Oracle()) == {"epe": 0.0}
    norms = true.double().pow(2).sum(dim=2).sqrt().mean().item()
    assert objective.baseline()["epe"] == pytest.approx(norms, rel=1e-6)
    assert lq.shape == (5, 3, 16, 16) and true.shape == (2, 4, 2, 16, 16)


# ------------------------------------------------------------------------------------------ data.test
def test_test_sets_are_scored_by_the_final_weights(data_root, tmp_path):
    """``data.test``: after training, the final weights are scored on each named set (null: the validation
    set) into ``test/<name>/``, and ``result.json`` and the printed result carry the scores; they equal an
    independent evaluation and probe of ``last.pth``."""
    tests = {
        "held": None,
        "seen": {"layout": "synth", "root": str(data_root), "split": "train"},
        "path": str(data_root),
    }
    recipe = tiny(train={"iterations": 2, "periods": [2]}, data={"test": tests})
    result = train(recipe, tmp_path, data=data_root, progress=False)
    scored = json.loads((tmp_path / "result.json").read_text())["test"]
    assert list(scored) == ["held", "seen", "path"] and result.result["test"] == scored
    assert scored["path"] == scored["held"] | {"data": scored["path"]["data"]}  # a synthetic set's path: its val split
    last = tmp_path / "checkpoints" / "last.pth"
    for name, data, clips in (("held", {"root": data_root, "split": "val"}, 1), ("seen", tests["seen"], 3)):
        expected = evaluate(recipe, last, data=data, progress=False)
        gain = run_probe(recipe, last, data=data, field_clips=0).mean_gain
        record = scored[name]
        assert record["clips"] == clips
        assert record["metrics"] == pytest.approx({k: expected[k] for k in ("psnr", "ssim")}, abs=1e-9)
        assert record["bicubic"] == pytest.approx(expected["bicubic"], abs=1e-9)
        assert record["temporal_gain"] == pytest.approx(gain, abs=1e-9)
        on_disk = json.loads((tmp_path / "test" / name / "metrics.json").read_text())
        assert on_disk["psnr"] == pytest.approx(expected["psnr"], abs=1e-9)
        assert (tmp_path / "test" / name / "temporal" / "temporal_gain.csv").is_file()
        assert f"on {name} ({clips} clips): psnr {record['metrics']['psnr']:.4f}" in str(result)
    assert f"temporal gain {scored['held']['temporal_gain']:.3f} dB" in str(result)


def test_a_wrong_test_set_fails_before_training(data_root, tmp_path):
    """A test set that cannot be scored fails when the run starts, naming it, before any training step: a
    missing folder, and a set without ground truth under a protocol with no no-reference metric. A name that
    cannot name a folder fails when the recipe is read."""
    missing = tiny(data={"test": {"elsewhere": str(tmp_path / "nowhere")}})
    with pytest.raises(VSRError, match="nowhere"):
        train(missing, tmp_path / "a", data=data_root, progress=False)
    lq_only = tmp_path / "lq"
    for clip in ("c0", "c1"):
        (lq_only / clip).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(lq_only / clip / f"{i:08d}.png")
    with pytest.raises(VSRError, match=r"has no ground truth.*add a no-reference metric"):
        train(tiny(data={"test": {"lq": str(lq_only)}}), tmp_path / "b", data=data_root, progress=False)
    (tmp_path / "c" / "test").mkdir(parents=True)
    (tmp_path / "c" / "test" / "held").symlink_to(tmp_path / "lq")
    with pytest.raises(VSRError, match=r"test/held is a symbolic link"):
        train(tiny(data={"test": {"held": None}}), tmp_path / "c", data=data_root, progress=False)
    for run in ("a", "b", "c"):
        assert not (tmp_path / run / "checkpoints").exists()
    with pytest.raises(RecipeError, match=r"data.test.a/b.*each test set's name names its folder"):
        load_recipe(tiny(data={"test": {"a/b": None}}))
    with pytest.raises(RecipeError, match=r"data.test.*a mapping of names to data sets"):
        load_recipe(tiny(data={"test": ["real"]}))


@pytest.mark.parametrize("name", ["basicvsr_tiny", "iconvsr_tiny"])
def test_tiny_recipes_start_from_the_shipped_flow_weights(name):
    """The CPU recipes need no download: train.init names weights shipped in vsr/weights/ that fit the
    recipe's flow estimator exactly (every flow.* tensor, same shapes)."""
    recipe = load_recipe(Path(__file__).parents[1] / "recipes" / f"{name}.yaml")
    path = resolve_init(recipe.train["init"])
    assert path == WEIGHTS_DIR / "spynet_tiny.safetensors"
    model = assemble(recipe.model)
    load_checkpoint(model, path, strict=False, prefixes=recipe.train["init_prefixes"])
    shipped = read_checkpoint(path)
    assert set(shipped) == {k for k in model.state_dict() if k.startswith("flow.")}
    for key, value in shipped.items():
        assert torch.equal(model.state_dict()[key], value)
    assert resolve_init(Path(__file__)) == Path(__file__)  # a file path is taken as it is


# ------------------------------------------------------------------------------ runs of earlier versions
def test_a_run_of_an_earlier_version_resumes(data_root, tmp_path):
    """A run whose checkpoint holds one optimiser, schedule and scaler (not named ones) and whose recipe says
    ``train.loss``/``charbonnier_eps`` resumes under the current recipe: the stored recipe's old spelling is
    translated, so nothing counts as changed."""
    recipe = tiny(train={"iterations": 2, "periods": [2], "checkpoint_every": 1})
    train(recipe, tmp_path, data=data_root, progress=False)
    latest = tmp_path / "checkpoints" / "latest.pth"
    state = torch.load(latest, weights_only=True)
    for old, new in (("optimizer", "optimizers"), ("scheduler", "schedulers"), ("grad_scaler", "grad_scalers")):
        state[old] = state.pop(new)["model"]
    state.pop("modules")
    stored = state["recipe"]["train"]
    del stored["losses"]
    stored |= {"loss": "charbonnier", "charbonnier_eps": 1e-12}
    del state["recipe"]["data"]["val_metrics"]
    state["iteration"] = 1
    torch.save(state, latest)
    result = train(tiny(train={"iterations": 3, "periods": [3], "checkpoint_every": 1}), tmp_path, data=data_root,
                   resume=True, progress=False, allow_recipe_changes=True)  # fmt: skip
    assert result.iterations == 3
    assert set(read_checkpoint(latest)["optimizers"]) == {"model"}


def test_the_validation_metrics_cannot_change_on_resume(runs, data_root, tmp_path):
    """best.pth compares values of one metric: changing data.val_metrics would compare PSNRs with SSIMs."""
    recipe = tiny(train={"iterations": 2, "periods": [2], "checkpoint_every": 1})
    train(recipe, tmp_path, data=data_root, progress=False)
    changed = tiny(data={"val_metrics": ["ssim", "psnr"]}, train={"iterations": 3, "periods": [3]})
    with pytest.raises(VSRError, match=r"cannot change data.val_metrics \(the run's validation records"):
        train(changed, tmp_path, data=data_root, resume=True, progress=False, allow_recipe_changes=True)

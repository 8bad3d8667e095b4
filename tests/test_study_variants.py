"""Study variants that use another variant's weights: a test-time variant (``evaluates``: no training, its
source's weights evaluated with its own recipe), a variant trained on from another's final weights
(``starts_from``), the real-video set's own metrics (``real_metrics``) and orderings on it (``on: real``): the
study file's checks, the check that a test-time variant builds its source's network, and a tiny study end to end
(its source failing first, then all of it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from tiny import STUDY_RECIPE, study_preset

import vsr.studies.driver
from vsr.checkpoints import load_checkpoint
from vsr.data import real, synth
from vsr.errors import VSRError
from vsr.model import assemble
from vsr.recipe import load_recipe
from vsr.studies import RunsFailed, StudyError, load_study, parse_study, plan_runs, run_study
from vsr.studies import runs as run_folders

TINY_RECIPE = {"name": "tiny_variants", **STUDY_RECIPE}
#: NIQE on the first frame of each low-quality real clip (whole 176×144 frames, 704×576 restored): what the
#: validation clips (128×128 at most) are too small for.
REAL_METRICS = [{"name": "niqe", "frames": [0]}]


def study_dict(recipe: str, real_root: str | None = None) -> dict:
    """A trained variant, a test-time variant listed before it (chunked validation) and one trained on from it."""
    real_data = False if real_root is None else {"layout": "real", "root": real_root, "split": "lq"}
    return {
        "name": "reuse",
        "base": "trained",
        "metrics": ["psnr", "ssim"],
        "real_metrics": REAL_METRICS,
        "presets": {"cpu": study_preset(recipe, real_data=real_data)},
        "variants": {
            "chunked": {"evaluates": "trained", "overrides": ["data.val_chunk_frames=2"], "label": "2-frame chunks"},
            "trained": ["train.lr=5.0e-4"],
            "continued": {"starts_from": "trained", "overrides": ["train.lr=1.0e-12"]},
        },
        "expect": [
            {"better": "trained", "worse": "chunked"},
            {"better": "continued", "worse": "trained", "on": "real"},
        ],
    }


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    """Validation clips of 6 frames: restored whole or in 3 independent 2-frame chunks."""
    root = tmp_path_factory.mktemp("synth") / "data"
    synth.generate(root, frames=6, val_frames=6, clips_per_photo=1, val_clips_per_photo=1, size=(32, 32),
                   photos=["astronaut", "coffee", "camera"], val_photos=["camera"])  # fmt: skip
    return root


@pytest.fixture(scope="module")
def real_root(tmp_path_factory) -> Path:
    """The real-video set with 3-frame clips (its low-quality clips keep their whole 176×144 frames)."""
    return real.generate(tmp_path_factory.mktemp("real") / "set", size=(16, 16), frames=3).root


@pytest.fixture
def recipe_file(tmp_path) -> Path:
    path = tmp_path / "tiny_variants.yaml"
    path.write_text(yaml.safe_dump(TINY_RECIPE))
    return path


# ------------------------------------------------------------------------------------------ study files
def _with(change, recipe: str = "basicvsr") -> dict:
    raw = study_dict(recipe)
    change(raw)
    return raw


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r["variants"]["chunked"].update(evaluates="nothing"),
         r"'variants.chunked.evaluates' = 'nothing': not a variant of this study; valid: chunked, trained, continued"),
        (lambda r: r["variants"]["chunked"].update(evaluates="chunked"),
         r"'variants.chunked.evaluates' = 'chunked': a variant cannot use its own weights"),
        (lambda r: r["variants"]["continued"].update(starts_from="chunked"),
         r"'variants.continued.starts_from' = 'chunked': that variant itself evaluates 'trained': name a variant"),
        (lambda r: r["variants"]["chunked"].update(evaluates="continued"),
         r"'variants.chunked.evaluates' = 'continued': that variant itself starts from 'trained'"),
        (lambda r: r["variants"]["chunked"].update(starts_from="trained"),
         r"'variants.chunked.starts_from' = 'trained': a variant either evaluates .* keep one of evaluates and"),
        (lambda r: r["variants"]["chunked"].update(evaluates=["trained"]),
         r"'variants.chunked.evaluates' = \['trained'\]: expected the name of another variant"),
        (lambda r: r["variants"]["chunked"].update(evaluates=""),
         r"'variants.chunked.evaluates' = '': expected the name of another variant"),
        (lambda r: r["expect"][1].update(metric="psnr"),
         r"'expect\[1\].metric' = 'psnr': not one of the study's real_metrics \(an ordering on: real\); valid: niqe"),
        (lambda r: r["expect"][0].update(metric="niqe"),
         r"'expect\[0\].metric' = 'niqe': not one of the study's metrics; valid: psnr, ssim"),
        (lambda r: r["expect"][1].update(at="first"),
         r"'expect\[1\].at' = 'first': an ordering on the real-video set compares clip averages"),
        (lambda r: r["expect"][0].update(on="val"), r"'expect\[0\].on' = 'val': expected 'real'"),
        (lambda r: r.update(real_metrics=["brisque"]), r"'real_metrics\[0\]' = 'brisque': not a registered metric"),
        (lambda r: r.update(real_metrics=[{"name": "niqe", "channel": "red"}]),
         r"'real_metrics\[0\].channel' = 'red': must be one of"),
        (lambda r: r.update(real_metrics=[{"frames": [0]}]),
         r"'real_metrics\[0\]' = \{'frames': \[0\]\}: write a name"),
        (lambda r: r.update(real_metrics=["niqe", {"name": "niqe"}]), r"'real_metrics' = .*: name each metric once"),
        (lambda r: r.update(real_metrics=[]), r"'real_metrics' = \[\]: expected a non-empty list"),
    ],
)  # fmt: skip
def test_study_file_errors_name_the_key(change, message):
    with pytest.raises(StudyError, match=rf"^study file studies/reuse.yaml: key {message}"):
        parse_study(_with(change), "studies/reuse.yaml")


def test_on_real_written_unquoted_in_a_study_file(tmp_path):
    """YAML 1.1 reads an unquoted key ``on`` as true; an ordering's ``on: real`` still means the real-video set."""
    raw = study_dict("basicvsr")
    raw["expect"][1].pop("on")
    text = yaml.safe_dump(raw, sort_keys=False).replace("worse: trained\n", "worse: trained\n  on: real\n")
    assert "\n  on: real\n" in text
    (tmp_path / "reuse.yaml").write_text(text)
    assert load_study(tmp_path / "reuse.yaml").expect[1].on == "real"


def test_a_dependent_variant_resolves_its_source_recipe_then_its_own(recipe_file, tmp_path):
    study = parse_study(study_dict(str(recipe_file)), "reuse.yaml")
    chunked = study.recipe("cpu", "chunked")
    assert chunked.train["lr"] == 5.0e-4 and chunked.data["val_chunk_frames"] == 2  # the source's, then its own
    assert study.recipe("cpu", "trained").data["val_chunk_frames"] is None
    assert study.recipe("cpu", "continued").train["lr"] == 1.0e-12  # its own override after its source's
    assert study.expect[1].metric == "niqe" and study.expect[1].on == "real" and study.expect[0].on is None
    record = study.to_dict()
    assert record["real_metrics"] == ["niqe"]
    assert {name: (v["evaluates"], v["starts_from"]) for name, v in record["variants"].items()} == {
        "chunked": ("trained", None), "trained": (None, None), "continued": (None, "trained")}  # fmt: skip
    assert [e["on"] for e in record["expect"]] == [None, "real"]

    # without real_metrics, the real-video set is scored with the study's metrics
    plain = study_dict(str(recipe_file))
    del plain["real_metrics"], plain["expect"][1]
    plain = parse_study(plain, "reuse.yaml")
    assert plain.to_dict()["real_metrics"] == ["psnr", "ssim"]
    assert plan_runs(plain, "cpu", tmp_path, seeds=1)[0].real_metrics == ("psnr", "ssim")

    # --variant naming a test-time variant alone plans the variant whose weights it evaluates too
    specs = plan_runs(study, "cpu", tmp_path / "runs", variants=["chunked"])
    assert [(s.variant, s.evaluates, s.starts_from) for s in specs] == [("chunked", "trained", None),
                                                                       ("trained", None, None)]  # fmt: skip
    assert specs[0].overrides == ("train.lr=5.0e-4", "data.val_chunk_frames=2")
    (continued,) = plan_runs(study, "cpu", "runs", variants=["continued", "trained"])[1:]
    init = (Path("runs") / "reuse/trained/seed0/checkpoints/last.pth").absolute()
    assert continued.recipe["train"]["init"] == str(init) and continued.recipe["train"]["init_prefixes"] is None


@pytest.mark.parametrize("data", [None, "/data/synth"])
def test_a_variants_override_of_a_key_of_the_presets_data_set_holds(data, recipe_file):
    """A variant changes one key of the data set its preset names (RealBasicVSR's bi variant:
    data.train.degradation=bi): the preset's data sets are set first, so the override is not replaced by them (with
    --data or without, on the embedded set)."""
    raw = study_dict(str(recipe_file))
    raw["variants"]["trained"] = ["data.train.degradation=bd", "data.val.split=train"]
    study = parse_study(raw, "reuse.yaml")
    recipe = study.recipe("cpu", "trained", data=data)
    root = {} if data is None else {"root": str(Path(data).absolute())}
    assert recipe.data["train"] == {"layout": "synth", "split": "train", **root, "degradation": "bd"}
    assert recipe.data["val"] == {"layout": "synth", "split": "train", **root}
    assert study.recipe("cpu", "chunked", data=data).data["train"]["degradation"] == "bd"  # its source's recipe


@pytest.mark.parametrize(
    ("overrides", "refused"),
    [
        (["model.cleaning.max_passes=2", "model.cleaning.refine_threshold=1.5", "data.val_chunk_frames=10"], None),
        (["model.cleaning.num_blocks=3"], r"parameter cleaning\.\S+ is absent there and of shape \(24, 24, 3, 3\)"),
        (["model.channels=16"], r"parameter \S+ is of shape \(24, .*\) there and of shape \(16, .*\)"),
    ],
)
def test_a_test_time_variant_must_build_its_sources_network(overrides, refused, tmp_path):
    """Built on the meta device at plan time: RealBasicVSR's refinement and chunking fit a test-time variant of
    its first stage; a wider network or a deeper cleaning module are refused before anything runs."""
    raw = _with(lambda r: r["variants"].pop("chunked"), recipe="realbasicvsr_wogan_tiny")
    raw["variants"]["tested"] = {"evaluates": "trained", "overrides": overrides}
    raw["expect"] = []
    study = parse_study(raw, "reuse.yaml")
    if refused is None:
        tested = [s for s in plan_runs(study, "cpu", tmp_path, seeds=1) if s.variant == "tested"]
        assert tested[0].recipe["model"]["cleaning"]["max_passes"] == 2
        return
    opening = r"study 'reuse', variant 'tested' evaluates the weights of 'trained', but its recipe builds another "
    closing = r"; only evaluation-time overrides \(refinement, chunking, \.\.\.\) fit a test-time variant"
    with pytest.raises(StudyError, match=rf"^{opening}network: {refused} here{closing}"):
        plan_runs(study, "cpu", tmp_path, seeds=1)


@pytest.mark.parametrize(
    ("overrides", "refused"),
    [
        (["data.val_chunk_frames=3", "data.degradation=bd", "data.val_max_frames=4"], None),
        (["train.lr=1.0e-3"], r"train\.lr is 0\.0005 there and 0\.001"),
        (["train.iterations=5"], r"train\.iterations is 2 there and 5"),
        (["data.batch_size=3"], r"data\.batch_size is 1 there and 3"),
        (["data.hflip=false"], r"data\.hflip is True there and False"),
    ],
)
def test_a_test_time_variant_trains_nothing(overrides, refused, recipe_file, tmp_path):
    """A test-time variant copies its source's training: an override of how a network is trained (``train.*``, the
    training set, its batches) would be recorded in its recipe and never used, so it is refused at plan time,
    naming the key and the way to train it (starts_from); evaluation-time overrides pass."""
    raw = _with(lambda r: r["variants"]["chunked"].update(overrides=overrides), recipe=str(recipe_file))
    study = parse_study(raw, "studies/reuse.yaml")
    if refused is None:
        specs = plan_runs(study, "cpu", tmp_path, seeds=1)
        assert specs[0].recipe["data"]["val_chunk_frames"] == 3 and specs[0].recipe["data"]["degradation"] == "bd"
        return
    opening = r"^study 'reuse', variant 'chunked' evaluates the weights of 'trained' and trains nothing, but its "
    closing = (
        r" here; a test-time variant takes only evaluation-time overrides .*: remove \S+ from variants\.chunked "
        r"in studies/reuse\.yaml, or train it from the weights of 'trained' instead: starts_from: trained$"
    )
    with pytest.raises(StudyError, match=rf"{opening}overrides change how a network is trained: {refused}{closing}"):
        plan_runs(study, "cpu", tmp_path, seeds=1)


@pytest.mark.parametrize("real_metrics", [["psnr", "ssim"], None])
def test_a_real_set_without_ground_truth_needs_a_no_reference_metric(real_metrics, recipe_file, synth_root, real_root,
                                                                     tmp_path):  # fmt: skip
    """The low-quality real clips have no ground truth: scored by PSNR/SSIM alone (named, or the study's metrics by
    default) every run would fail after its training; the study is refused before anything runs, naming
    real_metrics and a no-reference metric."""
    raw = study_dict(str(recipe_file), str(real_root))
    raw["real_metrics"] = real_metrics
    del raw["expect"][1]
    path = tmp_path / "reuse.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    runs = tmp_path / "runs"
    message = (rf"^study 'reuse', preset 'cpu': the real-video set real:\S+/lq has no ground truth, and every metric "
               rf"it is scored with \(psnr, ssim\) needs it: name a no-reference metric in real_metrics \(e\.g\. "
               rf"real_metrics: \[niqe\]\) in {path}, or score a set with ground truth "
               r"\(presets\.cpu\.real_data: \{layout: real, split: gt\}\)$")  # fmt: skip
    with pytest.raises(StudyError, match=message):
        run_study(path, data=synth_root, out=runs, progress=False)
    assert not (runs / "reuse" / run_folders.STUDY_FILE).exists() and not (runs / "reuse" / "trained").exists()


@pytest.mark.parametrize("chunk", [5, 6, 9])
def test_chunks_no_shorter_than_every_clip_are_said_to_restore_clips_whole(chunk, recipe_file, synth_root, tmp_path,
                                                                           monkeypatch, caplog):  # fmt: skip
    """The validation clips have 6 frames: chunks of 6 or more restore each clip whole, which the study says before
    it runs (the variant would evaluate as without chunks); chunks of 5 cut each clip, and nothing is said."""
    raw = study_dict(str(recipe_file))
    raw["variants"]["chunked"]["overrides"] = [f"data.val_chunk_frames={chunk}"]
    del raw["variants"]["continued"], raw["expect"][1]
    path = tmp_path / "reuse.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))

    def failing_train(recipe, out_dir, **kwargs):
        raise VSRError("stopped: this test needs no training")

    monkeypatch.setattr(vsr.studies.driver, "train", failing_train)
    with pytest.raises(RunsFailed):
        run_study(path, data=synth_root, out=tmp_path / "runs", progress=False)
    said = [r.getMessage() for r in caplog.records if "val_chunk_frames" in r.getMessage()]
    expected = (f"study reuse, variant chunked: data.val_chunk_frames={chunk} is no shorter than the clips it is "
                "evaluated on (6 frames at most): each clip is restored whole, as without chunks")  # fmt: skip
    assert said == ([] if chunk < 6 else [expected])


# ------------------------------------------------------------------------------------------ end to end
def _state(run_dir: Path) -> dict[str, torch.Tensor]:
    recipe = load_recipe(json.loads((run_dir / run_folders.SPEC_FILE).read_text())["recipe"])
    model = assemble(recipe.model)
    load_checkpoint(model, run_folders.last_checkpoint(run_dir))
    return model.state_dict()


def test_test_time_and_continued_variants_end_to_end(recipe_file, synth_root, real_root, tmp_path, monkeypatch,
                                                     capsys):  # fmt: skip
    """The test-time variant (listed first) runs after its source and evaluates exactly its weights, chunked; the
    continued variant trains from them; the real-video set is scored with real_metrics only. Before that, with
    the source's training failing, the test-time variant alone asked for, its source is run too (and said so), and
    the test-time variant fails naming the source's run folder."""
    path = tmp_path / "reuse.yaml"
    path.write_text(yaml.safe_dump(study_dict(str(recipe_file), str(real_root)), sort_keys=False))
    runs = tmp_path / "runs"
    trained, chunked, continued = (runs / f"reuse/{v}/seed0" for v in ("trained", "chunked", "continued"))
    real_train, real_run_one = vsr.studies.driver.train, vsr.studies.driver.run_one

    def failing_train(recipe, out_dir, **kwargs):
        raise VSRError("training diverged: the loss is nan at iteration 1")

    monkeypatch.setattr(vsr.studies.driver, "train", failing_train)
    with pytest.raises(RunsFailed) as failed:
        run_study(path, data=synth_root, out=runs, progress=True, variants=["chunked"])
    said = " ".join(capsys.readouterr().err.split())
    assert "study reuse (cpu): 2 variants × 1 seeds = 2 runs, 0 finished; trained included, since chunked uses" in said
    message = str(failed.value)
    assert "reuse/trained/seed0: VSRError: training diverged" in message
    assert (f"reuse/chunked/seed0: StudyError: reuse/chunked/seed0 evaluates the final weights of run folder "
            f"{trained}, whose last attempt failed (see its failed.json)") in message  # fmt: skip
    assert (chunked / run_folders.FAILED_FILE).is_file() and not (chunked / run_folders.RUN_FILE).exists()
    assert not continued.exists()

    order, trainings = [], []

    def spy_run_one(spec, progress=True):
        order.append(spec.variant)
        return real_run_one(spec, progress)

    def spy_train(recipe, out_dir, **kwargs):
        trainings.append(Path(out_dir).parent.name)
        return real_train(recipe, out_dir, **kwargs)

    monkeypatch.setattr(vsr.studies.driver, "run_one", spy_run_one)
    monkeypatch.setattr(vsr.studies.driver, "train", spy_train)
    done = run_study(path, data=synth_root, out=runs, progress=False)
    assert order == ["trained", "chunked", "continued"]  # the runs using others' weights in a second round
    assert trainings == ["trained", "continued"]
    assert not (chunked / run_folders.FAILED_FILE).exists()

    # The test-time run: its source's weights, byte for byte, evaluated in chunks, which changes the scores.
    for name in (run_folders.LAST_CHECKPOINT, run_folders.WEIGHTS_FILE, run_folders.LOG_FILE):
        assert (chunked / name).read_bytes() == (trained / name).read_bytes()
    records = {v: json.loads((runs / f"reuse/{v}/seed0/run.json").read_text()) for v in done.study.variants}
    assert records["chunked"]["evaluates"] == "trained" and records["chunked"]["starts_from"] is None
    assert records["chunked"]["trained_in"] == str(trained) == run_folders.trained_in(chunked)
    assert records["chunked"]["recipe"]["data"]["val_chunk_frames"] == 2
    assert json.loads((chunked / "metrics.json").read_text())["protocol"]["chunk_frames"] == 2
    assert records["chunked"]["metrics"]["psnr"] != pytest.approx(records["trained"]["metrics"]["psnr"], abs=1e-6)
    assert run_folders.read_profile(chunked) is not None and run_folders.read_temporal(chunked) is not None

    # The continued run: trained from the source's final weights (every parameter: at a learning rate of 1e-12
    # its weights end where the source's did, which a fresh start of the same seed would not).
    assert records["continued"]["starts_from"] == "trained" and records["continued"]["evaluates"] is None
    assert records["continued"]["trained_in"] is None
    assert records["continued"]["recipe"]["train"]["init"] == str(run_folders.last_checkpoint(trained))
    assert [e["iteration"] for e in run_folders.read_log(continued) if e["event"] == "train"] == [1, 2]
    source, own = _state(trained), _state(continued)
    assert max((own[k] - source[k]).abs().max().item() for k in source) < 1e-7
    assert records["trained"]["evaluates"] is None and records["trained"]["starts_from"] is None

    # The real-video set, scored with real_metrics (the validation set with the study's metrics).
    for variant, record in records.items():
        run_dir = runs / f"reuse/{variant}/seed0"
        real_scores = run_folders.read_real_metrics(run_dir, ["niqe"])
        assert list(record["real"]["metrics"]) == ["niqe"] and "psnr" not in real_scores
        assert record["real"]["metrics"]["niqe"] == pytest.approx(real_scores["niqe"])
        assert set(record["metrics"]) == {"psnr", "ssim"}
        assert run_folders.read_run(run_dir)["variant"] == variant

    # study.json, as a report reads it.
    study = run_folders.read_study_record(runs / "reuse" / run_folders.STUDY_FILE)
    assert study["real_metrics"] == ["niqe"] and study["expect"][1]["on"] == "real"
    assert study["variants"]["chunked"]["evaluates"] == "trained"
    assert study["variants"]["continued"]["starts_from"] == "trained"
    assert load_study(path).to_dict()["variants"] == study["variants"]


def test_a_test_time_run_is_no_twin_of_a_run_that_trains_its_recipe(recipe_file, synth_root, tmp_path, capsys):
    """A trained variant of another study with the test-time variant's recipe trains itself: the test-time run
    holds its source's training, not one of that recipe."""
    runs = tmp_path / "runs"
    path = tmp_path / "reuse.yaml"
    raw = study_dict(str(recipe_file))
    raw["variants"]["chunked"]["overrides"] = ["data.val_chunk_frames=2"]
    del raw["variants"]["continued"], raw["expect"][1]
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    run_study(path, data=synth_root, out=runs, progress=False, variants=["chunked"])
    run_study(path, data=synth_root, out=runs, progress=True, variants=["chunked"])  # all finished: nothing runs
    said = " ".join(capsys.readouterr().err.split())
    plan = "study reuse (cpu): 2 variants × 1 seeds = 2 runs, 2 finished; trained included, since chunked uses"
    assert said == f"{plan} its weights"
    spec = plan_runs(load_study(path), "cpu", runs, data=synth_root)[0]
    other = vsr.studies.RunSpec(**{**spec.__dict__, "study": "other", "evaluates": None,
                                   "run_dir": str(runs / "other/chunked/seed0")})  # fmt: skip
    assert run_folders.find_twin_run(other) is None


def test_a_failed_runs_message_is_printed_as_written(capsys):
    """A run's error is printed literally: console markup would take "[niqe]" in "--set 'data.val_metrics=[niqe]'"
    for a tag and drop it (it did, in a study whose real set had no GT)."""
    from vsr.studies.executors import _console, _outcome
    from vsr.studies.runs import RunSpec

    spec = RunSpec(study="s", preset="cpu", variant="v", seed=0, run_dir="/tmp/s/v/seed0", recipe={})
    failures: list[str] = []
    error = ValueError("add a no-reference metric, e.g. --set 'data.val_metrics=[niqe]' [bold]")
    _outcome(spec, error, _console(), True, failures, prefix="[1/6] ")
    printed = capsys.readouterr().err  # one line, however long
    assert "[1/6] s/v/seed0 failed: add a no-reference metric, e.g. --set 'data.val_metrics=[niqe]' [bold]" in printed
    assert failures == [f"s/v/seed0: ValueError: {error} (see /tmp/s/v/seed0/failed.json)"]

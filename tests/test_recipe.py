"""Recipes: validation errors name the key, the value and the valid choices; overrides; new components."""

import pytest
import torch

from vsr import RecipeError, build_model, load_recipe
from vsr.components import REGISTRY, FeatureAlignment, register
from vsr.recipe import CHOICES, DEFAULTS, PARTS, RANGES


def test_shipped_recipes_reproduce_the_reference_sizes():
    assert sum(p.numel() for p in build_model("basicvsr").parameters()) == 6_291_311
    assert sum(p.numel() for p in build_model("iconvsr").parameters()) == 8_694_991
    vimeo = build_model("iconvsr", "model.refill.temporal_padding=3")
    assert sum(p.numel() for p in vimeo.parameters()) == 8_711_375


def test_defaults_fill_every_key():
    recipe = load_recipe({"model": {"alignment": "image"}})
    assert recipe.model["alignment"] == {"name": "image"}
    assert recipe.train["lr"] == DEFAULTS["train"]["lr"]
    assert set(recipe.data) == set(DEFAULTS["data"])


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"model": {"alignment": "featur"}},
            r"'model.alignment' = 'featur': unknown alignment component; "
            r"valid choices: feature, flow_guided_deformable, image, none",
        ),
        (
            {"model": {"aggregation": {"name": "residual", "blocks": 3}}},
            r"'model.aggregation.blocks' = 3: not an argument of aggregation 'residual'; valid choices: num_blocks",
        ),
        (
            {"model": {"aggregation": {"name": "residual", "in_channels": 3}}},
            r"'model.aggregation.in_channels'.*valid choices: num_blocks",
        ),
        ({"model": {"chanels": 3}}, r"'model.chanels' = 3: unknown key in 'model'; valid choices: .*channels"),
        ({"training": {}}, r"'training' = \{\}: unknown section; valid choices: model, data, train"),
        ({"train": {"lr": "fast"}}, r"'train.lr' = 'fast': expected a float"),
        ({"train": {"iterations": True}}, r"'train.iterations' = True: expected a int"),
        ({"model": {"refill": {"name": "none", "keyframe_stride": 2}}}, r"'none' takes no arguments"),
    ],
)
def test_bad_recipes_fail_with_a_clear_message(raw, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(raw)


def test_unknown_recipe_name_lists_the_shipped_ones():
    with pytest.raises(RecipeError, match=r"no such recipe file or shipped recipe; valid choices: .*basicvsr.*iconvsr"):
        load_recipe("basicvrs")


def test_bad_yaml_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: [unclosed\n")
    with pytest.raises(RecipeError, match=r"bad.yaml.*not valid YAML"):
        load_recipe(path)


def test_dotted_overrides():
    recipe = load_recipe(
        "basicvsr",
        "model.alignment=none",
        "model.aggregation.num_blocks=3",
        "model.propagation={name: local, segment_length: 4}",
        "train.iterations=100",
        ("train.betas", [0.8, 0.9]),
    )
    assert recipe.model["alignment"] == {"name": "none"}
    assert recipe.model["aggregation"] == {"name": "residual", "num_blocks": 3}
    assert recipe.model["propagation"] == {"name": "local", "segment_length": 4}
    assert recipe.train["iterations"] == 100 and recipe.train["betas"] == [0.8, 0.9]
    # A new component starts from its own defaults: old arguments do not leak into it.
    swapped = load_recipe("iconvsr", "model.refill=none")
    assert swapped.model["refill"] == {"name": "none"}


def test_override_errors():
    with pytest.raises(RecipeError, match="key=value"):
        load_recipe("basicvsr", "model.alignment")
    with pytest.raises(RecipeError, match=r"'model.alignment.sigma' = 1.*not an argument of alignment 'feature'"):
        load_recipe("basicvsr", "model.alignment.sigma=1")
    with pytest.raises(RecipeError, match="unknown section"):
        load_recipe("basicvsr", "modle.alignment=none")


def test_python_keyword_overrides_and_recipe_round_trip(tmp_path):
    model = build_model("basicvsr", alignment="image", channels=8, aggregation="plain")
    assert model.propagation.aggregation("forward").__class__.__name__ == "PlainAggregation"
    recipe = load_recipe("iconvsr", "model.channels=8")
    path = tmp_path / "resolved.yaml"
    path.write_text(recipe.to_yaml())
    assert load_recipe(path).sections == recipe.sections


def test_a_new_component_needs_no_change_to_the_model():
    """The README's example: register an alignment and name it in a recipe."""

    @register("alignment", "feature_and_image")
    class FeatureAndImageAlignment(FeatureAlignment):
        """Warp the features and also feed the warped neighbouring frame."""

        extra_channels = 3

        def forward(self, state, flow, neighbour):
            (aligned,) = super().forward(state, flow, neighbour)
            if flow is None:
                return [aligned, state.new_zeros(state.shape[0], 3, *state.shape[-2:])]
            from vsr.components import flow_warp

            return [aligned, flow_warp(neighbour, flow.permute(0, 2, 3, 1))]

    try:
        model = build_model("basicvsr", "model.alignment=feature_and_image", "model.channels=8")
        assert model.propagation.aggregation("forward").input_conv.in_channels == 3 + 8 + 3
        assert model(torch.rand(1, 3, 3, 16, 16)).shape == (1, 3, 3, 64, 64)
    finally:
        del REGISTRY["alignment"]["feature_and_image"]


def test_yaml_booleans_are_accepted_for_precision_switches(tmp_path):
    """``amp: off`` and ``channels_last: true`` are YAML booleans; they mean what they say."""
    from vsr.training.precision import autocast_dtype, parse_switch

    path = tmp_path / "switches.yaml"
    path.write_text("name: switches\ntrain: {amp: off, channels_last: true}\n")
    train = load_recipe(path).to_dict()["train"]
    assert train["amp"] is False and train["channels_last"] is True
    assert autocast_dtype(train["amp"], torch.device("cuda")) is None
    assert parse_switch(train["channels_last"], "train.channels_last") is True
    path.write_text("name: switches\ntrain: {compile: auto}\n")  # other keys keep their types
    with pytest.raises(RecipeError, match=r"train.compile.*expected a bool"):
        load_recipe(path)


# --------------------------------------------------------------------------------- switches with choices
def test_a_typo_in_a_train_switch_fails_at_load():
    """Not when training starts: the key, the value and the choices are named."""
    with pytest.raises(
        RecipeError, match=r"'train.scheduler' = 'cosin': unknown scheduler; valid choices: constant, cosine_restart"
    ):
        load_recipe("basicvsr_tiny", "train.scheduler=cosin")


@pytest.mark.parametrize("key", sorted(CHOICES))
def test_every_switch_accepts_its_choices_only(key):
    what, choices = CHOICES[key]
    for choice in choices:
        section, name = key.split(".")
        assert getattr(load_recipe("basicvsr_tiny", (key, choice)), section)[name] == choice
    with pytest.raises(RecipeError, match=rf"'{key}' = 'nosuch': unknown {what}; valid choices: "):
        load_recipe("basicvsr_tiny", (key, "nosuch"))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"layout": "redss", "root": "x"}, r"'data.train.layout' = 'redss': unknown data set layout; .*vimeo"),
        ({"layout": "reds", "root": "x", "split": "val"}, r"'data.train.split' = 'val': .*choices: train, reds4"),
        ({"layout": "vid4", "root": "x", "split": "val"}, r"vid4 layout has no splits"),
        ({"root": "x", "degradation": "bx"}, r"'data.train.degradation' = 'bx': unknown degradation"),
        ({"root": "x", "folder": "y"}, r"'data.train.folder' = 'y': unknown data set key; .*layout, root, split"),
        ({"root": "x", "scale": 0}, r"'data.train.scale' = 0: must be an integer >= 1"),
        (
            {"root": "x", "degradation": ["bi", {"name": "gaussian_noise", "sigma": 1.5}]},
            r"'data.train.degradation\[1\].sigma' = 1.5: must be a number >= 0 and < 1",
        ),
        (
            {"root": "x", "noise": 0.05},
            r"'data.train.noise' = 0.05: .*use degradation: \[bi, \{name: gaussian_noise, sigma: 0.05\}\]",
        ),
        (
            {"root": "x", "degradation": "bd", "sigma": 0.8},
            r"'data.train.sigma' = 0.8: .*use degradation: \{name: bd, sigma: 0.8\}",
        ),
    ],
)
def test_data_set_mappings_are_checked_at_load(spec, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe("basicvsr_tiny", ("data.train", spec))
    assert load_recipe("basicvsr_tiny", ("data.val", {"layout": "synth", "root": "x", "split": "val"}))


def test_data_set_degradations_are_the_registered_ones_alone_or_in_a_chain():
    chain = [{"name": "bd", "sigma": 0.8}, {"name": "gaussian_noise", "sigma": 0.05}]
    assert load_recipe("basicvsr_tiny", ("data.degradation", chain)).data["degradation"] == chain
    assert load_recipe("basicvsr_tiny", ("data.train", {"root": "x", "degradation": chain})).data["train"]
    with pytest.raises(RecipeError, match=r"'data.degradation' = 'nosuch': unknown degradation; .*bd, bi"):
        load_recipe("basicvsr_tiny", ("data.degradation", "nosuch"))
    with pytest.raises(RecipeError, match=r"'data.degradation\[0\].blur' = 1: not an argument of degradation 'bd'"):
        load_recipe("basicvsr_tiny", ("data.degradation", [{"name": "bd", "blur": 1}]))


# The choices above are declared once, in the recipe schema; the code that dispatches on each key must accept
# exactly them.
def test_scheduler_choices_are_the_schedulers_built():
    from vsr.training.schedule import build_scheduler

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    train = load_recipe("basicvsr_tiny").train
    for name in CHOICES["train.scheduler"][1]:
        build_scheduler(optimizer, {**train, "scheduler": name, "periods": [train["iterations"]]})
    with pytest.raises(RecipeError, match="unknown scheduler"):
        build_scheduler(optimizer, {**train, "scheduler": "nosuch"})


def test_precision_choices_are_the_ones_autocast_and_the_memory_format_accept():
    from vsr.training.precision import autocast_dtype, parse_switch

    cuda = torch.device("cuda")
    dtypes = {name: autocast_dtype(name, cuda) for name in CHOICES["train.amp"][1]}
    assert dtypes == {"auto": torch.bfloat16, "bf16": torch.bfloat16, "fp16": torch.float16, "off": None}
    with pytest.raises(RecipeError, match="unknown precision"):
        autocast_dtype("nosuch", cuda)
    assert [parse_switch(v, "train.channels_last") for v in CHOICES["train.channels_last"][1]] == [None, True, False]


# --------------------------------------------------------------------------------- ranges
def test_every_numeric_key_has_a_range_its_default_satisfies():
    """Numbers, lists of numbers and optional values are declared in RANGES (keys naming registered parts are
    checked by the registry); a default is always allowed."""
    for section, keys in DEFAULTS.items():
        for name, default in keys.items():
            key = f"{section}.{name}"
            if key in PARTS:
                assert PARTS[key](default, key) == default, key
            elif isinstance(default, (int, float, list)) and not isinstance(default, bool):
                assert key in RANGES, f"{key} has no range in vsr.recipe.RANGES"
            if key in RANGES:
                assert RANGES[key](default), f"the default of {key} ({default!r}) is outside {RANGES[key]}"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.channels=0", r"'model.channels' = 0: must be an integer >= 1"),
        ("model.scale=3", r"'model.scale' = 3: must be a power of two >= 2 \(2, 4, 8, ...\)"),
        ("model.scale=1", r"'model.scale' = 1: must be a power of two"),
        ("data.num_frames=0", r"'data.num_frames' = 0: must be an integer >= 1"),
        ("data.workers=-1", r"'data.workers' = -1: must be an integer >= 0"),
        ("data.val_max_frames=0", r"'data.val_max_frames' = 0: must be null or an integer >= 1"),
        ("train.lr=-0.1", r"'train.lr' = -0.1: must be a number > 0"),
        ("train.lr=.nan", r"'train.lr' = nan: must be a number > 0"),
        (
            "train.betas=[0.9, 1.0]",
            r"'train.betas' = \[0.9, 1.0\]: must be a list of 2 items, each a number >= 0 and < 1",
        ),
        ("train.periods=[]", r"'train.periods' = \[\]: must be a list of one or more items, each an integer >= 1"),
        ("train.grad_clip=0", r"'train.grad_clip' = 0: must be null or a number > 0"),
        ("train.seed=-1", r"'train.seed' = -1: must be an integer from 0 to 4294967295"),
        ("train.init_prefixes=flow.", r"'train.init_prefixes' = 'flow.': must be null or a list"),
        ("model.aggregation.num_blocks=-1", r"'model.aggregation.num_blocks' = -1: must be an integer >= 0"),
        ("model.flow.levels=0", r"'model.flow.levels' = 0: must be an integer >= 1"),
        ("model.upsampling.residual=cubic", r"'model.upsampling.residual' = 'cubic': must be one of bilinear"),
        ("model.propagation={name: local, segment_length: 0}", r"'model.propagation.segment_length' = 0"),
        ("model.aggregation.num_blocks=2.5", r"'model.aggregation.num_blocks' = 2.5: must be an integer"),
    ],
)
def test_values_out_of_range_fail_naming_what_is_allowed(override, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe("basicvsr", override)


def test_a_component_argument_without_a_rule_must_have_its_defaults_type():
    @register("alignment", "shifted")
    class ShiftedAlignment(FeatureAlignment):
        def __init__(self, shift: int = 1):
            super().__init__()

    try:
        assert load_recipe("basicvsr", "model.alignment={name: shifted, shift: 3}")
        with pytest.raises(RecipeError, match=r"'model.alignment.shift' = 'far': must be an integer"):
            load_recipe("basicvsr", "model.alignment={name: shifted, shift: far}")
    finally:
        del REGISTRY["alignment"]["shifted"]


def test_every_registered_rule_names_an_argument_and_allows_its_default():
    import inspect

    for kind, parts in REGISTRY.items():
        for name, cls in parts.items():
            parameters = inspect.signature(cls.__init__).parameters
            for argument, rule in getattr(cls, "allowed_arguments", {}).items():
                assert argument in parameters, f"{kind} '{name}' has a rule for no argument {argument!r}"
                default = parameters[argument].default
                assert default is inspect.Parameter.empty or rule(default), f"{kind} '{name}': {argument} outside"


def test_yaml_aliases_and_binary_files_are_refused(tmp_path):
    with pytest.raises(RecipeError, match=r"YAML aliases are not allowed"):
        load_recipe("basicvsr", "train.betas=[&b 0.9, *b]")
    path = tmp_path / "bomb.yaml"
    path.write_text("a: &a [1, 1]\nb: [*a, *a]\n")
    with pytest.raises(RecipeError, match=r"bomb.yaml.*found the alias \*a"):
        load_recipe(path)
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00")
    with pytest.raises(RecipeError, match=r"not a text file \(byte 0x89 at position 0 is not UTF-8\)"):
        load_recipe(path)


def test_a_long_value_is_echoed_short():
    with pytest.raises(RecipeError) as caught:
        load_recipe("basicvsr", "model.propagation=" + "x" * 100_000)
    assert len(str(caught.value)) < 400

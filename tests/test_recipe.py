"""Recipes: validation errors name the key, the value and the valid choices; overrides; new components."""

import pytest
import torch

from vsr import RecipeError, build_model, load_recipe
from vsr.components import REGISTRY, FeatureAlignment, register
from vsr.recipe import DEFAULTS


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
            r"'model.alignment' = 'featur': unknown alignment component; valid choices: feature, image, none",
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
    from vsr.train import _switch, autocast_dtype

    path = tmp_path / "switches.yaml"
    path.write_text("name: switches\ntrain: {amp: off, channels_last: true}\n")
    train = load_recipe(path).to_dict()["train"]
    assert train["amp"] is False and train["channels_last"] is True
    assert autocast_dtype(train["amp"], torch.device("cuda")) is None
    assert _switch(train["channels_last"], "train.channels_last") is True
    path.write_text("name: switches\ntrain: {compile: auto}\n")  # other keys keep their types
    with pytest.raises(RecipeError, match=r"train.compile.*expected a bool"):
        load_recipe(path)

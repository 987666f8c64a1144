import pytest
import yaml

from conftest import ROOT, TINY_RECIPE
from mtl_tf.config import RecipeError
from mtl_tf.recipe import apply_override, load_recipe, recipe_from_dict


def _raw():
    return yaml.safe_load(TINY_RECIPE.read_text())


def _error(raw) -> str:
    with pytest.raises(RecipeError) as info:
        recipe_from_dict(raw, origin="r.yaml")
    return str(info.value)


def test_shipped_recipes_validate():
    shipped = sorted((ROOT / "recipes").glob("*.yaml"))
    assert {p.name for p in shipped} >= {"quickstart.yaml", "aerial.yaml", "voc.yaml", "partial_aerial.yaml"}
    for path in [*shipped, TINY_RECIPE]:
        recipe = load_recipe(path)
        types = sorted(cfg.type for cfg in recipe.tasks.values())
        assert types in (["detection", "segmentation"], ["detection", "segmentation", "segmentation"],
                         ["boundaries", "depth", "detection", "normals", "saliency", "segmentation"],
                         ["classification", "detection", "segmentation"],
                         ["classification", "detection", "multilabel"]), path


def test_typo_names_the_key_and_the_allowed_ones():
    raw = _raw()
    raw["train"]["epochz"] = 3
    msg = _error(raw)
    assert "r.yaml" in msg and "train.epochz" in msg and "did you mean 'epochs'" in msg
    assert "steps_per_epoch" in msg  # the allowed keys are listed


def test_typo_inside_a_task_section():
    raw = _raw()
    raw["tasks"]["detection"]["min_scal"] = 0.2
    msg = _error(raw)
    assert "tasks.detection.min_scal" in msg and "did you mean 'min_scale'" in msg


def test_unknown_task_and_source_type():
    raw = _raw()
    raw["tasks"]["detektion"] = raw["tasks"].pop("detection")
    assert "unknown task type 'detektion' (did you mean 'detection'?)" in _error(raw)
    raw = _raw()
    raw["data"]["train"][0]["type"] = "synthetic"
    assert "data.train.0.type" in _error(raw)


def test_bad_value_lists_allowed_values():
    raw = _raw()
    raw["model"]["backbone"]["name"] = "resnet18"
    msg = _error(raw)
    assert "model.backbone.name" in msg and "'resnet50'" in msg and "'tiny'" in msg


def test_source_classes_must_be_known_to_the_task():
    raw = _raw()
    raw["tasks"]["detection"]["classes"] = ["pedestrian", "car"]
    msg = _error(raw)
    assert "['bus', 'cyclist']" in msg and "tasks.detection.classes" in msg


def test_image_size_must_be_a_multiple_of_32():
    raw = _raw()
    raw["data"]["image_size"] = [100, 64]
    assert "multiple of 32" in _error(raw)


def test_overrides_reach_nested_keys_and_list_items():
    raw = _raw()
    apply_override(raw, "data.train.0.num_images=5")
    apply_override(raw, "train.optimizer.learning_rate=0.01")
    recipe = recipe_from_dict(raw)
    assert recipe.data.train[0].num_images == 5 and recipe.train.optimizer.learning_rate == 0.01
    with pytest.raises(RecipeError, match="not an index"):
        apply_override(raw, "data.train.7.num_images=5")
    with pytest.raises(RecipeError, match="key.sub=value"):
        apply_override(raw, "train.epochs")


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(RecipeError, match="bad.yaml: not valid YAML"):
        load_recipe(bad)


def test_resolved_recipe_round_trips():
    recipe = load_recipe(TINY_RECIPE)
    again = recipe_from_dict(yaml.safe_load(yaml.safe_dump(recipe.to_dict())))
    assert again.to_dict() == recipe.to_dict()
    assert recipe.to_dict()["tasks"]["detection"]["neg_pos_ratio"] == 3.0  # defaults resolved


def test_duplicate_class_names_are_rejected():
    raw = _raw()
    raw["tasks"]["segmentation"]["classes"] = ["ground", "road", "road", "building", "water", "vegetation"]
    assert "tasks.segmentation.classes: class names must be unique" in _error(raw)


def test_engine_keys_must_name_tasks():
    raw = _raw()
    raw["train"]["accumulate"] = {"trunk": 12, "detektion": 6}
    assert "train.accumulate: unknown keys ['detektion']" in _error(raw)
    raw = _raw()
    raw["train"]["balance"] = {"method": "gradnrom"}
    assert "train.balance.method" in _error(raw)


def test_detection_head_defaults_to_ssd_and_ssdlite_drops_l2_normalization():
    raw = _raw()
    assert recipe_from_dict(raw).tasks["detection"].head == "ssd"
    assert recipe_from_dict(raw).tasks["detection"].l2_normalized_levels == 2
    raw["tasks"]["detection"]["head"] = "ssdlite"
    assert recipe_from_dict(raw).tasks["detection"].l2_normalized_levels == 0
    raw["tasks"]["detection"]["l2_normalized_levels"] = 1  # an explicit value wins
    assert recipe_from_dict(raw).tasks["detection"].l2_normalized_levels == 1
    raw["tasks"]["detection"]["head"] = "yolo"
    assert "tasks.detection.head" in _error(raw)

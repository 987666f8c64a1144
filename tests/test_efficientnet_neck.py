"""EfficientNet backbones (taps C3-C5 at strides 8/16/32) and the shared FPN / BiFPN neck."""

import numpy as np
import pytest

from mtl_tf.model.backbones import EFFICIENTNETS, build_backbone
from mtl_tf.model.multitask import MultitaskModel

# Channels of the taps: end of block 3, end of block 5, the top conv (keras.applications).
EFFICIENTNET_CHANNELS = {
    "efficientnet_b0": (40, 112, 1280), "efficientnet_b1": (40, 112, 1280), "efficientnet_b2": (48, 120, 1408),
    "efficientnet_b3": (48, 136, 1536), "efficientnet_v2_b0": (48, 112, 1280),
}


@pytest.mark.parametrize("name", sorted(EFFICIENTNETS))
def test_efficientnets_tap_block_outputs_at_strides_8_16_32(name):
    backbone = build_backbone(name, (64, 96), weights=None)
    shapes = {k: tuple(v.shape[1:3]) for k, v in backbone.lower.output.items()}
    assert shapes == {"C3": (8, 12), "C4": (4, 6)}
    assert tuple(backbone.last_stage().output.shape[1:3]) == (2, 3)
    assert tuple(backbone.channels.values()) == EFFICIENTNET_CHANNELS[name]
    taps = {layer.name for layer in backbone.lower.layers if layer.output is backbone.lower.output["C3"]}
    assert taps <= {"block3b_add", "block3c_add"}  # the last block of stage 3, after its residual add


def test_an_efficientnet_model_runs_every_task_type():
    tasks = {"detection": {"classes": ["car", "bus"], "extra_channels": 16, "min_scale": 0.1},
             "segmentation": {"classes": ["a", "b", "c"], "output_stride": 4}, "depth": {}, "normals": {}}
    model = MultitaskModel({"name": "efficientnet_b0", "weights": None}, tasks, (64, 64))
    out = model(np.zeros((1, 64, 64, 3), np.float32), training=False)
    assert tuple(out["segmentation"].shape) == (1, 16, 16, 3)
    assert tuple(out["depth"].shape) == (1, 16, 16, 1) and tuple(out["normals"].shape) == (1, 16, 16, 3)


@pytest.mark.parametrize("kind, repeats", [("fpn", 1), ("bifpn", 2)])
def test_necks_keep_the_taps_strides_with_their_channels(kind, repeats):
    from mtl_tf.model.neck import build_neck

    neck = build_neck({"C3": 16, "C4": 32, "C5": 64}, (64, 96), kind, 24, repeats)
    assert {k: tuple(v.shape[1:]) for k, v in neck.output.items()} == {
        "C3": (8, 12, 24), "C4": (4, 6, 24), "C5": (2, 3, 24)}
    fusions = [layer for layer in neck.layers if "fusion" in layer.name]
    assert len(fusions) == (4 * repeats if kind == "bifpn" else 0)


def test_weighted_fusion_normalizes_non_negative_weights():
    from mtl_tf.model.neck import WeightedFusion

    fusion = WeightedFusion(epsilon=0.0)
    a, b = np.full((1, 2, 2, 1), 2.0, np.float32), np.full((1, 2, 2, 1), 6.0, np.float32)
    fusion([a, b])
    fusion.fusion.assign([1.0, 3.0])
    np.testing.assert_allclose(fusion([a, b]), (2 + 3 * 6) / 4)
    fusion.fusion.assign([-1.0, 3.0])  # a negative weight counts as 0
    np.testing.assert_allclose(fusion([a, b]), 6.0)


def test_heads_read_the_shared_neck_which_trains_with_the_trunk(tmp_path):
    import keras

    tasks = {"detection": {"classes": ["car", "bus"], "extra_channels": 16, "min_scale": 0.1}, "depth": {}}
    neck = {"type": "bifpn", "channels": 24, "repeats": 1}
    model = MultitaskModel({"name": "tiny", "width": 8}, tasks, (64, 64), neck=neck)
    lateral = model.get_layer("depth_lateral_C3")
    assert lateral.input.shape[-1] == 24  # the neck's level, not the backbone's C3 (16 channels)
    graph = model.engine_graph
    neck_vars = {id(v) for v in model.get_layer("bifpn_neck").trainable_variables}
    assert neck_vars <= {id(v) for v in graph.trunk_vars}
    assert not neck_vars & {id(v) for vs in graph.head_vars.values() for v in vs}
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3)).astype(np.float32)
    assert model.get_config()["neck"] == neck
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded(images)["depth"], model(images)["depth"], atol=1e-5)
    # the recompute path of the engine applies the neck too
    recomputing = MultitaskModel({"name": "tiny", "width": 8}, tasks, (64, 64), neck=neck, recompute=["lower"])
    recomputing.set_weights(model.get_weights())
    for got, want in zip(recomputing.engine_graph.trunk(images, training=True), graph.trunk_model(images, training=True)):
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_neck_config_errors_name_the_problem():
    from pydantic import ValidationError

    from mtl_tf.config import ModelConfig

    with pytest.raises(ValidationError, match="repeats is for type bifpn"):
        ModelConfig.model_validate({"neck": {"type": "fpn", "repeats": 2}})
    with pytest.raises(ValidationError, match="needs one shared last stage"):
        ModelConfig.model_validate({"neck": {"type": "bifpn"}, "split_last_stage": True})

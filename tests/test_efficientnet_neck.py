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

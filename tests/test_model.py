import keras
import numpy as np
import pytest

from conftest import tiny_task_configs
from mtl_tf.model.backbones import build_backbone
from mtl_tf.model.multitask import MultitaskModel


def _expected_shapes(model, batch=None):
    det, seg = model.tasks["detection"], model.tasks["segmentation"]
    h, w = model.image_size
    return {
        "detection": (batch, det.num_anchors, 4 + len(det.classes) + 1),
        "segmentation": (batch, h, w, len(seg.classes)),
    }


@pytest.mark.parametrize(
    "backbone,size",
    [
        ("tiny", (64, 64)),
        ("resnet50", (96, 96)),
        ("mobilenet_v3_small", (96, 128)),
        ("mobilenet_v3_large", (96, 96)),
        ("mobilenet_v3_large_minimalistic", (64, 64)),
    ],
)
def test_outputs_are_named_after_tasks_with_task_shapes(backbone, size):
    model = MultitaskModel({"name": backbone, "width": 8}, tiny_task_configs(), size)
    assert model.output_names == ["detection", "segmentation"]
    assert {k: tuple(v.shape) for k, v in model.output.items()} == _expected_shapes(model)


def test_backbone_taps_have_the_contract_strides():
    backbone = build_backbone("resnet50", (128, 128))
    shapes = {k: tuple(v.shape[1:3]) for k, v in backbone.lower.output.items()}
    assert shapes == {"C3": (16, 16), "C4": (8, 8)}
    assert tuple(backbone.last_stage().output.shape[1:3]) == (4, 4)
    # Reference taps of the ResNet-50 design: res3d, res4f, res5c.
    assert backbone.channels == {"C3": 512, "C4": 1024, "C5": 2048}


@pytest.mark.parametrize("name", ["mobilenet_v3_small_minimalistic", "mobilenet_v3_large_minimalistic"])
def test_minimalistic_mobilenets_tap_strides_8_16_32_without_hard_swish_or_squeeze_excite(name):
    backbone = build_backbone(name, (64, 96))
    shapes = {k: tuple(v.shape[1:3]) for k, v in backbone.lower.output.items()}
    assert shapes == {"C3": (8, 12), "C4": (4, 6)}
    assert tuple(backbone.last_stage().output.shape[1:3]) == (2, 3)
    layers = [*backbone.lower.layers, *backbone.last_stage().layers]
    assert not [layer.name for layer in layers if "squeeze_excite" in layer.name]
    assert not [layer.name for layer in layers if isinstance(layer, keras.layers.Multiply)]  # SE / hard-swish gates
    activations = {getattr(layer, "activation", None) for layer in layers if isinstance(layer, keras.layers.Activation)}
    assert not {a for a in activations if "hard" in getattr(a, "__name__", "")}
    # The taps are ReLU outputs (the C3/C4 taps of the hard-swish variant are its activations).
    taps = [layer for layer in backbone.lower.layers if layer.output is backbone.lower.output["C3"]]
    assert isinstance(taps[0], keras.layers.ReLU)


def test_ssdlite_head_matches_the_ssd_head_output_and_anchors_with_fewer_macs():
    from mtl_tf.bench.flops import count_macs

    models = {}
    for head in ("ssd", "ssdlite"):
        tasks = tiny_task_configs()
        tasks["detection"].update(head=head, feature_levels=5)
        models[head] = MultitaskModel({"name": "tiny", "width": 8}, tasks, (64, 64))
    ssd, lite = models["ssd"], models["ssdlite"]
    assert lite.tasks["detection"].num_anchors == ssd.tasks["detection"].num_anchors
    np.testing.assert_array_equal(lite.tasks["detection"].anchors, ssd.tasks["detection"].anchors)
    out = {head: m(np.zeros((2, 64, 64, 3), np.uint8)) for head, m in models.items()}
    assert {k: tuple(v.shape) for k, v in out["ssdlite"].items()} == {k: tuple(v.shape) for k, v in out["ssd"].items()}
    assert tuple(out["ssdlite"]["detection"].shape) == _expected_shapes(lite, 2)["detection"]
    names = [layer.name for layer in lite.layers]
    assert any("dwconv" in n for n in names) and not any("l2norm" in n for n in names)  # ssdlite: no L2 norm
    assert count_macs(lite) < count_macs(ssd)


def test_forward_pass_gives_the_declared_shapes(tiny_model):
    out = tiny_model(np.zeros((3, 64, 64, 3), np.uint8))
    assert {k: tuple(v.shape) for k, v in out.items()} == _expected_shapes(tiny_model, 3)


def test_split_last_stage_gives_each_task_an_identical_copy():
    shared = MultitaskModel({"name": "tiny", "width": 8}, tiny_task_configs(), (64, 64))
    split = MultitaskModel({"name": "tiny", "width": 8}, tiny_task_configs(), (64, 64), split_last_stage=True)
    stages = [layer for layer in split.layers if "last_stage" in layer.name]
    assert len(stages) == 2
    one_stage = stages[0].count_params()
    assert split.count_params() == shared.count_params() + one_stage
    for a, b in zip(stages[0].get_weights(), stages[1].get_weights()):
        np.testing.assert_array_equal(a, b)


def test_keras_file_round_trip(tiny_model, tmp_path):
    images = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3)).astype(np.uint8)
    tiny_model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded, MultitaskModel)
    before, after = tiny_model(images), loaded(images)
    for name in before:
        np.testing.assert_allclose(before[name], after[name], atol=1e-5)
    np.testing.assert_allclose(loaded.tasks["detection"].anchors, tiny_model.tasks["detection"].anchors)


def test_predict_step_decodes_every_task(tiny_model):
    out = tiny_model.predict(np.zeros((2, 64, 64, 3), np.uint8), verbose=0)
    det, seg = out["detection"], out["segmentation"]
    assert det["boxes"].shape[:2] == det["scores"].shape == det["classes"].shape
    assert seg["mask"].shape == (2, 64, 64) and seg["mask"].dtype == np.uint8
    assert np.all((det["boxes"] >= 0) & (det["boxes"] <= 1))


def test_segmentation_output_stride_gives_the_full_resolution_model_after_the_loss_upsample():
    """At output_stride 4 the head's logits are 16x16 for a 64x64 input; the loss and the decoded
    mask see them upsampled to 64x64, and the weights are the same as at stride 1."""
    import tensorflow as tf

    configs = tiny_task_configs()
    strided_configs = {**configs, "segmentation": {**configs["segmentation"], "output_stride": 4}}
    full = MultitaskModel({"name": "tiny", "width": 8}, configs, (64, 64))
    strided = MultitaskModel({"name": "tiny", "width": 8}, strided_configs, (64, 64))
    strided.set_weights(full.get_weights())  # a Resizing layer holds no weights
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    raw_full, raw_strided = full(images)["segmentation"], strided(images)["segmentation"]
    classes = len(configs["segmentation"]["classes"])
    assert raw_strided.shape == (2, 16, 16, classes) and raw_full.shape == (2, 64, 64, classes)
    mask = strided.postprocess({"detection": strided(images)["detection"], "segmentation": raw_strided})["segmentation"]["mask"]
    assert mask.shape == (2, 64, 64)
    task = strided.tasks["segmentation"]
    labels = tf.constant(np.random.default_rng(1).integers(0, classes, (2, 64, 64)), tf.int32)
    loss = float(task.loss(labels, raw_strided, tf.ones((2, 64, 64))))
    reference = float(task.loss(labels, tf.image.resize(raw_strided, (64, 64)), tf.ones((2, 64, 64))))
    assert abs(loss - reference) < 1e-6
    # Two bilinear steps (C4 -> 16x16 -> 64x64) stay close to one (C4 -> 64x64).
    agree = np.mean(np.argmax(raw_full, -1) == mask.numpy())
    assert agree > 0.8, agree
    assert task.export_parameters()["output_stride"] == 4


def test_l2_normalization_is_ssds_channel_norm_times_scale():
    """x / ||x|| over channels, times the per-channel scale (written as mean(x * x) * C so that
    TFLite does not fuse it into L2_NORMALIZATION, which XNNPACK does not run)."""
    from mtl_tf.model.layers import L2Normalization

    x = np.random.default_rng(0).normal(0, 3, (2, 5, 4, 16)).astype(np.float32)
    layer = L2Normalization(scale_init=20.0)
    expected = 20.0 * x / np.linalg.norm(x, axis=-1, keepdims=True)
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-5, atol=1e-5)

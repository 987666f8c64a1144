import numpy as np
import pytest
import tensorflow as tf

from conftest import DET_CLASSES, SEG_CLASSES
from mtl_tf.data import augment, pipeline
from mtl_tf.data.synthetic import SyntheticAerialSource
from mtl_tf.tasks import build_tasks

SIZE = (64, 64)


def _tasks(det_classes=DET_CLASSES, seg_classes=SEG_CLASSES):
    return build_tasks(
        {"detection": {"classes": det_classes, "min_scale": 0.1}, "segmentation": {"classes": seg_classes}}, SIZE
    )


def _sources(*labels, n=4):
    return [SyntheticAerialSource.Config(num_images=n, seed=i, labels=l) for i, l in enumerate(labels)]


def test_class_ids_are_remapped_to_the_task_class_order():
    reordered = list(reversed(DET_CLASSES))
    seg_reordered = list(reversed(SEG_CLASSES))
    plain = pipeline.ExampleReader(_sources("both"), _tasks(), SIZE).read(0, 1)
    remapped = pipeline.ExampleReader(_sources("both"), _tasks(reordered, seg_reordered), SIZE).read(0, 1)
    names = [DET_CLASSES[c] for c in plain["detection/box_classes"]]
    assert [reordered[c] for c in remapped["detection/box_classes"]] == names
    np.testing.assert_array_equal(
        np.array(seg_reordered)[remapped["segmentation/mask"]], np.array(SEG_CLASSES)[plain["segmentation/mask"]]
    )


def test_mixed_sources_give_per_task_sample_weights():
    tasks = _tasks()
    reader = pipeline.ExampleReader(_sources("boxes", "masks"), tasks, SIZE)
    ds = pipeline.validation_batches(pipeline.examples_dataset(reader), tasks, batch_size=8)
    images, targets, weights = next(iter(ds))
    assert images.dtype == tf.uint8 and images.shape == (8, 64, 64, 3)
    np.testing.assert_array_equal(weights["detection"].numpy(), [1] * 4 + [0] * 4)
    seg_weight = weights["segmentation"].numpy()
    assert seg_weight.shape == (8, 64, 64)
    assert seg_weight[:4].sum() == 0 and np.all(seg_weight[4:] == 1)
    assert targets["detection"].shape == (8, tasks["detection"].num_anchors, 5)


def test_horizontal_flip_moves_boxes_with_pixels():
    image = np.zeros((64, 64, 3), np.uint8)
    image[10:20, 5:15] = 255
    mask = np.zeros((64, 64), np.uint8)
    mask[10:20, 5:15] = 1
    box = np.array([[10 / 64, 5 / 64, 20 / 64, 15 / 64]], np.float32)
    example = {"image": image, "segmentation/mask": mask, "detection/boxes": box}
    flipped = augment.horizontal_flip(example, augment.label_layout(_tasks()))
    y0, x0, y1, x1 = (flipped["detection/boxes"].numpy()[0] * 64).round().astype(int)
    assert np.all(flipped["image"].numpy()[y0:y1, x0:x1] == 255)
    assert flipped["image"].numpy().sum() == image.sum()
    assert np.all(flipped["segmentation/mask"].numpy()[y0:y1, x0:x1] == 1)


def test_training_batches_are_seeded():
    tasks = _tasks()
    reader = pipeline.ExampleReader(_sources("both", n=8), tasks, SIZE)
    first = [pipeline.training_batches(pipeline.examples_dataset(reader), tasks, 4, 8, seed=7) for _ in range(2)]
    a, b = (next(iter(ds))[0].numpy() for ds in first)
    np.testing.assert_array_equal(a, b)


def test_evaluation_batches_pad_boxes_with_class_minus_one():
    tasks = _tasks()
    reader = pipeline.ExampleReader(_sources("both", n=6), tasks, SIZE)
    batch = next(pipeline.evaluation_batches(pipeline.examples_dataset(reader), reader.tasks, 6).as_numpy_iterator())
    counts = [len(reader.read(0, i)["detection/boxes"]) for i in range(6)]
    assert batch["detection/boxes"].shape[1] == max(counts)
    assert [(c >= 0).sum() for c in batch["detection/box_classes"]] == counts
    assert (batch["segmentation/mask"] != 0).any()  # masks are not padded (same size)


class _BrokenSource(SyntheticAerialSource):
    def __getitem__(self, index):
        ex = super().__getitem__(index)
        if index == 2:
            ex["box_classes"] = np.array([9], np.int32)
            ex["boxes"] = np.array([[0.1, 0.1, 0.2, 0.2]], np.float32)
        return ex


def test_bad_labels_raise_an_error_naming_source_and_example(monkeypatch):
    monkeypatch.setitem(pipeline.build_source.__globals__["SOURCES"], "synthetic_aerial", _BrokenSource)
    reader = pipeline.ExampleReader(_sources("both", n=4), _tasks(), SIZE)
    reader.read(0, 1)
    with pytest.raises(pipeline.DataError, match=r"synthetic_aerial\(seed=0, labels=both\) example 2: detection"):
        list(reader)

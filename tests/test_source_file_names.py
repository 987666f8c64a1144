"""Each example's source file name (what predict writes in detections.json), through the reader."""

from source_fixtures import truncate, write_coco, write_voc
from mtl_tf.data import pipeline
from mtl_tf.data.sources.coco import CocoConfig
from mtl_tf.data.sources.voc import VocConfig
from mtl_tf.predict import source_file_names
from mtl_tf.tasks import build_tasks


def test_file_names_follow_the_reader_order_and_skip_what_skip_invalid_dropped(tmp_path):
    write_coco(tmp_path / "coco")
    write_voc(tmp_path / "voc")
    truncate(tmp_path / "voc" / "JPEGImages" / "000002.jpg")
    tasks = build_tasks({"detection": {"classes": ["person", "car"], "min_scale": 0.1},
                         "segmentation": {"classes": ["background", "person", "car"]}}, (64, 64))
    configs = [
        CocoConfig(annotations=str(tmp_path / "coco" / "instances.json"), images=str(tmp_path / "coco" / "images"),
                   categories=["person", "car"]),
        VocConfig(root=str(tmp_path / "voc"), classes=["car", "person"], images="detection", skip_invalid=True),
    ]
    reader = pipeline.ExampleReader(configs, tasks, (64, 64))
    assert source_file_names(reader) == [
        "000000000001.jpg", "000000000002.jpg", "000000000003.jpg", "000001.jpg", "000003.jpg",
    ]

import numpy as np
import pytest

from source_fixtures import H, W, frame_value, write_sdd
from mtl_tf.data.sources import build_source
from mtl_tf.data.sources.common import DataProblem
from mtl_tf.data.sources.sdd import SddConfig


def _source(root, **kw):
    return build_source(SddConfig(root=str(root), **kw), (H, W))


def _expected(frame):
    """Pixel boxes and labels of SDD_ROWS at `frame` that are not lost."""
    from source_fixtures import SDD_ROWS

    rows = [r for r in SDD_ROWS if r[5] == frame and not r[6]]
    return np.array([r[1:5] for r in rows], np.float32), [r[9] for r in rows]


@pytest.mark.parametrize("from_frames", [False, True])
def test_every_nth_frame_with_its_boxes(tmp_path, from_frames):
    frames = tmp_path / "frames" if from_frames else None
    write_sdd(tmp_path, frames_folder=frames)
    source = _source(tmp_path, every=5, frames=str(frames) if frames else None,
                     rename={"Biker": "cyclist", "Pedestrian": "pedestrian", "Car": "car"})
    names = source.config.class_names("boxes")
    assert names == ["pedestrian", "cyclist", "Skater", "Cart", "car", "Bus"]
    assert len(source) == 2  # frames 0 and 5 of 10
    for index, frame in enumerate((0, 5)):
        example = source[index]
        assert abs(example["image"].mean() - frame_value(frame)) < 4  # the right frame was decoded
        pixels, labels = _expected(frame)
        x0, y0, x1, y1 = pixels.T
        np.testing.assert_allclose(example["boxes"], np.stack([y0 / H, x0 / W, y1 / H, x1 / W], 1), atol=1e-6)
        rename = {"Biker": "cyclist", "Pedestrian": "pedestrian", "Car": "car"}
        assert [names[c] for c in example["box_classes"]] == [rename[n] for n in labels]
        assert "boxes" in example and "mask" not in example
    assert len(source[0]["boxes"]) == 1  # the lost Biker box of frame 0 is dropped


def test_drop_generated_and_occluded(tmp_path):
    write_sdd(tmp_path)
    source = _source(tmp_path, every=5, drop_generated=True, drop_occluded=True)
    assert len(source[1]["boxes"]) == 1  # frame 5: only the pedestrian is neither
    assert len(_source(tmp_path, every=5)[1]["boxes"]) == 3


def test_unknown_label_and_bad_line_name_the_file(tmp_path):
    write_sdd(tmp_path)
    ann = tmp_path / "annotations" / "scene1" / "video0" / "annotations.txt"
    with pytest.raises(DataProblem, match=r"annotations.txt: class not in the class list: line 11: label 'Biker'"):
        _source(tmp_path, classes=["Pedestrian", "Car"])
    ann.write_text(ann.read_text() + "3 1 2 3\n")
    with pytest.raises(DataProblem, match=r"annotations.txt: unparsable annotation: line 14"):
        _source(tmp_path)

"""Sources of image-level labels: image_folder (one sub-folder per class, kind `label`) and csv
(one column per label, 1 / 0 / blank, kind `labels`), read through the recipe's tasks; bad files
are errors naming them or, with skip_invalid, skipped and counted; and a classification +
multilabel model trains on them and writes its labels files."""

import json
import re

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from source_fixtures import truncate, write_image_folder, write_label_csv
from mtl_tf.cli import main
from mtl_tf.data import pipeline
from mtl_tf.data.example import DataError
from mtl_tf.data.sources.common import DataProblem
from mtl_tf.data.sources.csv_labels import CsvSource
from mtl_tf.data.sources.image_folder import ImageFolderSource
from mtl_tf.recipe import recipe_from_dict
from mtl_tf.tasks import build_tasks

SIZE = 64


def _reader(sources, tasks):
    recipe = recipe_from_dict({"data": {"image_size": [SIZE, SIZE], "train": sources, "val": sources}, "tasks": tasks})
    built = build_tasks(recipe.tasks, recipe.data.image_size)
    return pipeline.ExampleReader(recipe.data.train, built, recipe.data.image_size)


def test_image_folder_classes_are_sorted_sub_folders_or_the_listed_ones(tmp_path):
    write_image_folder(tmp_path, {"dog": 2, "cat": 3, "ant": 1})
    (tmp_path / "notes.txt").write_text("not a class")
    reader = _reader([{"type": "image_folder", "root": str(tmp_path)}],
                     {"pets": {"type": "classification", "classes": ["dog", "cat", "ant"]}})
    examples = list(reader)
    # Source ids follow the sorted folders (ant, cat, dog); the task's ids its own list.
    assert [int(e["pets/label"]) for e in examples] == [2, 1, 1, 1, 0, 0]
    assert all(e["has_pets"] and e["image"].shape == (SIZE, SIZE, 3) for e in examples)
    source = ImageFolderSource(ImageFolderSource.Config(root=str(tmp_path), classes=["dog", "cat"]), (SIZE, SIZE))
    assert len(source) == 5 and [int(source[i]["label"]) for i in range(5)] == [0, 0, 1, 1, 1]
    with pytest.raises(DataProblem, match=r"emu: missing file: class sub-folder does not exist"):
        ImageFolderSource(ImageFolderSource.Config(root=str(tmp_path), classes=["emu"]), (SIZE, SIZE))


def test_image_folder_classes_must_be_in_the_task():
    from mtl_tf.config import RecipeError

    with pytest.raises(RecipeError, match=r"has label classes \['ant'\] that are not in tasks.pets.classes"):
        recipe_from_dict({"data": {"train": [{"type": "image_folder", "root": "x", "classes": ["ant", "cat"]}],
                                   "val": [{"type": "image_folder", "root": "x", "classes": ["cat"]}]},
                          "tasks": {"pets": {"type": "classification", "classes": ["cat", "dog"]}}})


def test_image_folder_split_is_class_balanced_and_disjoint(tmp_path):
    write_image_folder(tmp_path, {"a": 10, "b": 20})
    splits = {s: ImageFolderSource(ImageFolderSource.Config(root=str(tmp_path), split=s, split_shares=(0.6, 0.2, 0.2)),
                                   (SIZE, SIZE)) for s in ("train", "val", "test")}
    files = {s: {str(p) for p, _ in src.records} for s, src in splits.items()}
    assert sum(len(f) for f in files.values()) == 30 and len(set.union(*files.values())) == 30
    assert [sum(c == 0 for _, c in splits[s].records) for s in ("train", "val", "test")] == [6, 2, 2]


def test_truncated_image_is_an_error_naming_it_or_skipped(tmp_path, capsys):
    written = write_image_folder(tmp_path, {"a": 2, "b": 2})
    truncate(written["b"][0])
    tasks = {"kind": {"type": "classification", "classes": ["a", "b"]}}
    reader = _reader([{"type": "image_folder", "root": str(tmp_path)}], tasks)
    with pytest.raises(DataError, match=re.escape(f"{written['b'][0]}: unreadable image or video")):
        list(reader)
    reader = _reader([{"type": "image_folder", "root": str(tmp_path), "skip_invalid": True}], tasks)
    assert len(reader) == 3 and [int(e["kind/label"]) for e in reader] == [0, 0, 1]
    assert "skipped 1 invalid (kept 3 examples): 1 x unreadable image or video" in capsys.readouterr().out


def test_csv_cells_become_label_vectors_in_the_task_order(tmp_path):
    write_image_folder(tmp_path / "img", {"x": 3})
    csv_path = write_label_csv(tmp_path / "labels.csv", [("img/x/000.jpg", ["1", "", "0"]),
                                                         ("img/x/001.jpg", ["0", "1", "-1"]),
                                                         ("img/x/002.jpg", ["", "", ""])], ["cat", "dog", "sky"])
    source = CsvSource(CsvSource.Config(file=str(csv_path)), (SIZE, SIZE))
    assert source.columns == ["cat", "dog", "sky"]
    np.testing.assert_array_equal(source[1]["labels"], [0, 1, -1])
    # The task lists one more label (grass, unknown to this source) and another order.
    reader = _reader([{"type": "csv", "file": str(csv_path)}],
                     {"tags": {"type": "multilabel", "classes": ["sky", "grass", "dog", "cat"]}})
    labels = [e["tags/labels"].tolist() for e in reader]
    assert labels == [[0, -1, -1, 1], [-1, -1, 1, 0], [-1, -1, -1, -1]]


def test_csv_problems_name_the_file_and_line(tmp_path):
    write_image_folder(tmp_path / "img", {"x": 2})
    rows = [("img/x/000.jpg", ["1", "yes"]), ("img/x/gone.jpg", ["0", "1"]), ("img/x/001.jpg", ["0", "1"])]
    csv_path = write_label_csv(tmp_path / "labels.csv", rows, ["cat", "dog"])
    with pytest.raises(DataProblem, match=r"labels.csv: unparsable annotation: line 2, column dog: 'yes' is not 1, 0 or blank"):
        CsvSource(CsvSource.Config(file=str(csv_path)), (SIZE, SIZE))
    source = CsvSource(CsvSource.Config(file=str(csv_path), skip_invalid=True), (SIZE, SIZE))
    assert len(source) == 1 and [p.kind for p in source.skipped] == ["unparsable annotation", "missing file"]
    assert "gone.jpg: missing file: image does not exist" in str(source.skipped[1])
    with pytest.raises(DataProblem, match=r"labels.csv: unparsable annotation: no column path"):
        CsvSource(CsvSource.Config(file=str(csv_path), image_column="path"), (SIZE, SIZE))


def _invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def test_classification_and_multilabel_train_predict_export_and_inspect(tmp_path):
    """A flat colour per class folder; the CSV tags the same images beta (the second class)
    and bright (not the third class; a third of them unknown). One short fit, then predict,
    export (int8, verified) and data inspect."""
    files = write_image_folder(tmp_path / "img", {"alpha": 12, "beta": 12, "gamma": 12})
    rows = [(str(p.relative_to(tmp_path)), [str(int(name == "beta")), "" if i % 3 == 0 else str(int(name != "gamma"))])
            for name, paths in files.items() for i, p in enumerate(paths)]
    csv_path = write_label_csv(tmp_path / "tags.csv", rows, ["beta", "bright"])
    folder = {"type": "image_folder", "root": str(tmp_path / "img")}
    recipe = {
        "name": "cls", "data": {"image_size": [SIZE, SIZE], "batch_size": 8, "train": [folder, {"type": "csv", "file": str(csv_path)}],
                                "val": [folder, {"type": "csv", "file": str(csv_path)}], "augment": {"horizontal_flip": True}},
        "model": {"backbone": {"name": "tiny", "width": 8}},
        "tasks": {"colour": {"type": "classification", "classes": ["alpha", "beta", "gamma"], "label_smoothing": 0.05},
                  "tags": {"type": "multilabel", "classes": ["beta", "bright"], "hidden": 8}},
        "train": {"epochs": 8, "num_overlays": 2, "optimizer": {"learning_rate": 0.01}},
        "export": {"calibration_images": 8, "max_drop": {"colour": 0.2, "tags": 0.2}},
    }
    (tmp_path / "cls.yaml").write_text(yaml.safe_dump(recipe))
    _invoke("fit", tmp_path / "cls.yaml", "--out", tmp_path / "run", "--quiet")
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert set(metrics["colour"]) >= {"top1", "balanced_accuracy", "per_class_accuracy"} and "top5" not in metrics["colour"]
    assert set(metrics["tags"]) >= {"map", "balanced_accuracy", "f1", "per_label_ap"}
    assert (run / "colour_confusion_matrix.png").is_file()
    history = (run / "history.csv").read_text().splitlines()[0].split(",")
    assert {"val_colour_top1", "val_tags_map", "colour_loss", "tags_loss"} <= set(history)
    # 36 colour images + 36 tag images: the classifier is far better than chance on flat colours.
    assert metrics["colour"]["top1"] > 0.5

    _invoke("predict", run, files["beta"][0], files["gamma"][1], "--out", tmp_path / "pred")
    colour = json.loads((tmp_path / "pred" / "colour_labels.json").read_text())
    assert [r["image"] for r in colour] == [files["beta"][0].name, files["gamma"][1].name]
    assert all(len(r["top_k"]) == 3 and r["label"] == r["top_k"][0]["label"] for r in colour)
    tags = json.loads((tmp_path / "pred" / "tags_labels.json").read_text())
    assert set(tags[0]["scores"]) == {"beta", "bright"}

    _invoke("export", run, "--int8", "--calibration", "8", "--verify", "--out", tmp_path / "export")
    outputs = json.loads((tmp_path / "export" / "int8" / "metadata.json").read_text())["outputs"]
    assert set(outputs) == {"colour_probabilities", "tags_probabilities"}
    assert all(o["dtype"] == "int8" and o["quantization"]["scale"] > 0 for o in outputs.values())

    result = _invoke("data", "inspect", tmp_path / "cls.yaml", "--split", "train", "--json", tmp_path / "stats.json",
                     "--plot", tmp_path / "cls-data.png")
    assert (tmp_path / "cls-data.png").stat().st_size > 0
    assert "colour images per class: alpha 12, beta 12, gamma 12" in result.output
    stats = json.loads((tmp_path / "stats.json").read_text())
    tag_stats = [e["tasks"]["tags"] for e in stats if "tags" in e["tasks"] and e["labelled"]["tags"]][0]
    assert tag_stats["positives"]["beta"] == 12 and tag_stats["unknown"]["bright"] == 12


def test_csv_where_splits_a_label_into_positive_and_negative_sources_for_balanced_sampling(tmp_path):
    from mtl_tf.config import MixingConfig
    from mtl_tf.data import mixing

    write_image_folder(tmp_path / "img", {"x": 10})
    cells = [["1", "0"], ["1", ""], ["0", "1"], ["", "1"]] + [["0", "0"]] * 6  # cat: 2 positives, 7 negatives, 1 unknown
    rows = [(f"img/x/{i:03d}.jpg", c) for i, c in enumerate(cells)]
    csv_path = write_label_csv(tmp_path / "labels.csv", rows, ["cat", "dog"])
    positives, negatives = (CsvSource(CsvSource.Config(file=str(csv_path), where={"cat": v}), (SIZE, SIZE)) for v in (1, 0))
    assert len(positives) == 2 and len(negatives) == 7 and "cat=1" in positives.describe()
    assert all(labels[0] == 0 for _, labels in negatives.records)
    # Mixed with equal weights, each batch position is a positive half the time.
    cfg = MixingConfig(mode="sample", weights="uniform")
    draws = np.fromiter(mixing.source_choices(cfg, [2, 7], 4, 0, None).take(4000).as_numpy_iterator(), np.int64)
    assert abs((draws == 0).mean() - 0.5) < 0.03
    with pytest.raises(DataProblem, match=r"where: \['emu'\] are not label columns"):
        CsvSource(CsvSource.Config(file=str(csv_path), where={"emu": 1}), (SIZE, SIZE))

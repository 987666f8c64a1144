"""End-to-end: `mtl-tf data prepare | inspect | bench` on the tiny recipe."""

import json

from click.testing import CliRunner

from conftest import TINY_RECIPE
from mtl_tf.cli import main


def _invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def test_data_prepare_writes_shards_then_skips_them(tmp_path):
    cache_dir = tmp_path / "cache"
    args = ["data", "prepare", TINY_RECIPE, "--set", f"data.cache={cache_dir}", "--shard-size", "16"]
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    assert "train: 24 examples in 2 shards" in result.output and "val: 12 examples in 1 shards" in result.output
    assert len(list(cache_dir.rglob("*.tfrecord"))) == 4 and len(list(cache_dir.rglob("complete.json"))) == 3
    again = _invoke(*args)
    assert again.exit_code == 0 and again.output.count("(already complete)") == 3


def test_data_prepare_without_a_cache_folder_is_a_clear_error():
    result = _invoke("data", "prepare", TINY_RECIPE)
    assert result.exit_code == 1 and "data.cache" in result.output and "Traceback" not in result.output


def test_data_inspect_prints_counts_and_writes_a_plot(tmp_path):
    plot, counts = tmp_path / "data.png", tmp_path / "counts.json"
    result = _invoke("data", "inspect", TINY_RECIPE, "--split", "train", "--plot", plot, "--json", counts)
    assert result.exit_code == 0, result.output
    assert "images 24; labelled: detection 24, segmentation 24" in result.output
    assert "images 8; labelled: detection 8, segmentation 0" in result.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    entries = json.loads(counts.read_text())
    assert [e["images"] for e in entries] == [24, 8] and all(e["split"] == "train" for e in entries)


def test_data_bench_reports_pipeline_and_training_throughput(tmp_path):
    out = tmp_path / "bench.json"
    result = _invoke("data", "bench", TINY_RECIPE, "--batches", "1", "--rounds", "2", "--warmup", "1", "--json", out,
                     "--set", "data.augment={horizontal_flip: true, expand: {}, crop: {}, color: {}}")
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    rates = figures["images_per_s"]
    assert set(rates) == {"pipeline", "pipeline, no augmentation", "train", "train+data"} and all(r > 0 for r in rates.values())
    assert figures["pipeline_over_train"] == round(rates["pipeline"] / rates["train"], 2)
    assert "pipeline / train" in result.output


def test_every_command_reports_a_truncated_image_as_one_clear_line(tmp_path):
    """One error handler for every command: a DataError TensorFlow wraps while reading examples
    reaches the user as itself, naming the file, without a traceback."""
    import yaml

    from source_fixtures import truncate, write_voc

    write_voc(tmp_path / "voc")
    truncate(tmp_path / "voc" / "JPEGImages" / "000002.jpg")
    source = {"type": "voc", "root": str(tmp_path / "voc"), "classes": ["car", "person"], "images": "detection"}
    recipe = {"data": {"image_size": [64, 64], "batch_size": 2, "train": [source], "val": [source]},
              "model": {"backbone": {"name": "tiny", "width": 8}},
              "tasks": {"detection": {"classes": ["car", "person"], "min_scale": 0.1}}, "train": {"epochs": 1}}
    path = tmp_path / "voc.yaml"
    path.write_text(yaml.safe_dump(recipe))
    expected = f"{tmp_path / 'voc' / 'JPEGImages' / '000002.jpg'}: unreadable image or video"
    for command in (["data", "inspect", path, "--plot", tmp_path / "p.png"], ["data", "bench", path, "--rounds", "1",
                    "--batches", "1", "--warmup", "1"], ["fit", path, "--out", tmp_path / "run"]):
        result = _invoke(*command)
        assert result.exit_code == 1, (command, result.output)
        assert expected in result.output and "Traceback" not in result.output, (command, result.output)

"""The TFRecord cache (`data prepare`), reading from it, and `data inspect` counts."""

import hashlib
import json

import numpy as np
import pytest

from conftest import TINY_RECIPE
from mtl_tf.recipe import load_recipe
from mtl_tf.data import cache, pipeline, prepare, stats
from mtl_tf.data.synthetic import SyntheticAerialSource
from mtl_tf.tasks import build_tasks


def _recipe(tmp_path, *overrides):
    return load_recipe(TINY_RECIPE, [f"data.cache={tmp_path / 'cache'}", *overrides])


def _examples(recipe, split, use_cache):
    tasks = build_tasks(recipe.tasks, recipe.data.image_size)
    loaded = pipeline.load_sources(
        getattr(recipe.data, split), tasks, recipe.data.image_size, recipe.data.cache if use_cache else None, split
    )
    return loaded, list(pipeline.concatenated_examples(loaded).as_numpy_iterator())


def _digest(example):
    return hashlib.sha1(b"".join(np.ascontiguousarray(example[k]).tobytes() for k in sorted(example))).hexdigest()


def test_cached_pipeline_yields_the_same_examples_as_the_direct_one(tmp_path):
    recipe = _recipe(tmp_path)
    prepare.prepare(recipe, ("train", "val"), shard_size=5, progress=False)
    for split in ("train", "val"):
        loaded, cached = _examples(recipe, split, use_cache=True)
        assert {s.kind for s in loaded} == {"cache:png"}
        _, direct = _examples(recipe, split, use_cache=False)
        if split == "val":  # read in order: identical, key by key
            for a, b in zip(cached, direct, strict=True):
                assert a.keys() == b.keys()
                for key in a:
                    np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        else:  # training reads shards in parallel: the same examples, in another order
            assert sorted(map(_digest, cached)) == sorted(map(_digest, direct))


def test_prepare_resumes_without_rewriting_complete_shards(tmp_path, monkeypatch):
    recipe = _recipe(tmp_path)
    [first, _] = prepare.prepare(recipe, ("train",), shard_size=10, progress=False)
    folder = cache.Path(first["folder"])
    shards = sorted(folder.glob("*.tfrecord"))
    assert len(shards) == 3  # 24 examples in shards of 10
    # Simulate an interruption while the last shard was being written.
    (folder / "complete.json").unlink()
    shards[-1].rename(shards[-1].with_name(shards[-1].name + ".tmp"))
    before = {p.name: p.stat().st_mtime_ns for p in shards[:-1]}
    written = []
    real = cache._write_shard
    monkeypatch.setattr(cache, "_write_shard", lambda reader, indices, *a: written.append(list(indices)) or real(reader, indices, *a))
    summaries = prepare.prepare(recipe, ("train",), shard_size=10, progress=False)
    assert written == [list(range(20, 24))]  # only the missing shard
    assert {p.name: p.stat().st_mtime_ns for p in shards[:-1]} == before
    assert not list(folder.glob("*.tmp")) and json.loads((folder / "complete.json").read_text())["count"] == 24
    assert [s["already_complete"] for s in summaries] == [False, True]
    # Another shard size on a partial folder is refused rather than mixed.
    (folder / "complete.json").unlink()
    with pytest.raises(cache.CacheError, match="shard_size"):
        prepare.prepare(recipe, ("train",), shard_size=7, progress=False)


def test_a_changed_recipe_does_not_read_a_stale_cache(tmp_path):
    prepare.prepare(_recipe(tmp_path), ("val",), progress=False)
    reordered = _recipe(tmp_path, "tasks.detection.classes=[bus, car, cyclist, pedestrian]")
    loaded, _ = _examples(reordered, "val", use_cache=True)
    assert [s.kind for s in loaded] == ["memory"]


def test_inspect_counts_match_what_the_synthetic_source_generated(tmp_path):
    recipe = _recipe(tmp_path)
    entries = stats.inspect_recipe(recipe, ("train",), progress=False)
    assert [e["images"] for e in entries] == [24, 8]
    assert entries[0]["labelled"] == {"detection": 24, "segmentation": 24}
    assert entries[1]["labelled"] == {"detection": 8, "segmentation": 0}
    for entry, config in zip(entries, recipe.data.train):
        source = SyntheticAerialSource(config, recipe.data.image_size)
        raw = [source[i] for i in range(len(source))]
        det, seg = entry["tasks"]["detection"], entry["tasks"]["segmentation"]
        objects = np.bincount(np.concatenate([r["box_classes"] for r in raw]), minlength=4)
        assert list(det["objects"].values()) == objects.tolist()
        assert det["box_sizes"]["count"] == objects.sum()
        if config.labels == "both":
            pixels = np.bincount(np.concatenate([r["mask"].ravel() for r in raw]), minlength=256)
            assert list(seg["pixels"].values()) == pixels[:5].tolist() + [0]
        else:
            assert sum(seg["pixels"].values()) == 0  # no labelled example: nothing counted
    # Box sizes: sqrt(area) in input pixels, and COCO's split adds up.
    s = entries[0]["tasks"]["detection"]["box_sizes"]
    assert s["small"] + s["medium"] + s["large"] == s["count"] and 3 <= s["median"] <= 64

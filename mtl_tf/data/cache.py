"""The TFRecord cache of a recipe's sources (`mtl-tf data prepare`, the recipe's `data.cache`).

Layout: <cache>/<split>/<source type>-<key>/ with
  shard-00003-of-00008.tfrecord   examples [3 * shard_size, 4 * shard_size) of the source
  shard-00003-of-00008.json       {"count": examples written} (skipped examples are missing)
  spec.json                       what the folder holds: source, image size, task classes, plan
  complete.json                   written last: the folder is complete and can be read
The key hashes everything that changes the stored examples (source config, image size, the
tasks' class lists, the image format), so a changed recipe never reads a stale cache.

Writing is resumable: a shard is written under a temporary name and renamed when whole, and an
existing shard is never rewritten. Examples are stored after `ExampleReader` (resized, class ids
in the task's order): images and masks as PNG (lossless, so the cache reads back exactly what the
source gave) or images as JPEG (smaller, lossy); every other key as a serialized tensor.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import cv2
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from mtl_tf.config import SPLITS

FORMAT_VERSION = 1
IMAGE_FORMATS = ("png", "jpeg")


class CacheError(ValueError):
    """A cache folder that cannot be written or read as asked."""


def source_folder(root, split: str, config, tasks: dict, image_size, image_format: str = "png") -> Path:
    """The cache folder of one source, keyed by everything that changes its stored examples."""
    identity = {
        "version": FORMAT_VERSION,
        "source": config.model_dump(mode="json"),
        "image_size": list(image_size),
        "classes": {name: task.classes for name, task in tasks.items()},
        "image_format": image_format,
    }
    key = hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    return Path(root) / split / f"{config.type}-{key}"


def find_complete(root, split: str, config, tasks: dict, image_size) -> Path | None:
    """The complete cache folder of a source in any image format, or None."""
    for image_format in IMAGE_FORMATS:
        folder = source_folder(root, split, config, tasks, image_size, image_format)
        if (folder / "complete.json").is_file():
            return folder
    return None


# ---------------------------------------------------------------- writing


def _encode_image(image: np.ndarray, image_format: str) -> bytes:
    if image.ndim == 3:
        image = image[..., ::-1]  # OpenCV writes BGR
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if image_format == "jpeg" else []
    ok, data = cv2.imencode(".jpg" if image_format == "jpeg" else ".png", np.ascontiguousarray(image), params)
    if not ok:
        raise CacheError(f"could not encode an image of shape {image.shape} as {image_format}")
    return data.tobytes()


def serialize(example: dict, image_format: str = "png") -> bytes:
    """One example as a tf.train.Example: image (and mask) encoded, other keys as tensors."""
    feature = {}
    for key, value in example.items():
        value = np.asarray(value)
        if key == "image":
            data = _encode_image(value, image_format)
        elif key == "mask":
            data = _encode_image(value, "png")
        else:
            data = tf.make_tensor_proto(value).SerializeToString()
        feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[data]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _shard_name(index: int, total: int) -> str:
    return f"shard-{index:05d}-of-{total:05d}"


def _check_spec(folder: Path, spec: dict) -> None:
    path = folder / "spec.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if old != spec:
            changed = sorted(k for k in spec if old.get(k) != spec[k])
            raise CacheError(
                f"{folder}: holds a partial cache written with other settings ({', '.join(changed)}); "
                "delete the folder or prepare with the same settings"
            )
    else:
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(spec, indent=2))


def write_source(reader, folder: Path, shard_size: int, image_format: str, progress: tqdm | None = None) -> dict:
    """Write the examples of a one-source `ExampleReader` into sharded TFRecords under `folder`.

    Shards already complete are skipped; returns the contents of complete.json.
    """
    if image_format not in IMAGE_FORMATS:
        raise CacheError(f"image format must be one of {IMAGE_FORMATS}. Received: {image_format!r}")
    total = len(reader)
    num_shards = max(1, math.ceil(total / shard_size))
    spec = {"source": reader.sources[0].describe(), "examples": total, "shard_size": shard_size,
            "image_format": image_format, "image_size": list(reader.image_size)}
    _check_spec(folder, spec)
    shards, counts = [], []
    for k in range(num_shards):
        name = _shard_name(k, num_shards)
        record, count_file = folder / f"{name}.tfrecord", folder / f"{name}.json"
        indices = range(k * shard_size, min((k + 1) * shard_size, total))
        if not record.is_file():
            count = _write_shard(reader, indices, record, count_file, image_format, progress)
        else:
            count = json.loads(count_file.read_text())["count"]
            if progress is not None:
                progress.update(len(indices))
        shards.append(record.name)
        counts.append(count)
    complete = {**spec, "count": sum(counts), "shards": shards, "counts": counts}
    (folder / "complete.json").write_text(json.dumps(complete, indent=2))
    return complete


def _write_shard(reader, indices, record: Path, count_file: Path, image_format: str, progress) -> int:
    tmp = record.with_name(record.name + ".tmp")
    count = 0
    with tf.io.TFRecordWriter(str(tmp)) as writer:
        for i in indices:
            example = reader.read(0, i)
            if progress is not None:
                progress.update(1)
            writer.write(serialize(example, image_format))
            count += 1
    count_file.write_text(json.dumps({"count": count}))
    os.replace(tmp, record)  # the shard exists under its final name only when whole
    return count


def prepare(recipe, splits=SPLITS, shard_size: int = 512, image_format: str = "png", progress: bool = True) -> list[dict]:
    """Cache every source of the recipe's `splits` under `recipe.data.cache`; returns one summary
    per source (split, folder, count, shards, whether it was already complete)."""
    from mtl_tf.data.pipeline import ExampleReader
    from mtl_tf.tasks import build_tasks

    data = recipe.data
    if not data.cache:
        raise CacheError("the recipe has no data.cache folder; add one or pass --set data.cache=DIR")
    tasks = build_tasks(recipe.tasks, data.image_size)
    jobs = []
    for split in splits:
        for config in getattr(data, split):
            folder = source_folder(data.cache, split, config, tasks, data.image_size, image_format)
            jobs.append((split, config, folder))
    readers = [ExampleReader([config], tasks, data.image_size) for _, config, _ in jobs]
    summaries = []
    with tqdm(total=sum(len(r) for r in readers), unit="img", desc="prepare", disable=not progress) as bar:
        for (split, _, folder), reader in zip(jobs, readers):
            already = (folder / "complete.json").is_file()
            complete = write_source(reader, folder, shard_size, image_format, bar)
            summaries.append({"split": split, "folder": str(folder), "count": complete["count"],
                              "shards": len(complete["shards"]), "already_complete": already})
    return summaries


# ---------------------------------------------------------------- reading


def parse_fn(signature: dict, image_format: str):
    """A graph function: serialized tf.train.Example -> example dict matching `signature`."""
    features = {key: tf.io.FixedLenFeature([], tf.string) for key in signature}

    def parse(record):
        raw = tf.io.parse_single_example(record, features)
        example = {}
        for key, spec in signature.items():
            if key == "image":
                decode = tf.io.decode_jpeg if image_format == "jpeg" else tf.io.decode_png
                value = decode(raw[key], channels=3)
            elif key == "mask":
                value = tf.io.decode_png(raw[key], channels=1)[..., 0]
            else:
                value = tf.io.parse_tensor(raw[key], spec.dtype)
            example[key] = tf.ensure_shape(value, spec.shape)
        return example

    return parse


def read_records(folder: Path, ordered: bool = True) -> tuple[tf.data.Dataset, dict]:
    """The serialized examples of a complete cache folder (shards in order, or read in
    parallel), with the contents of its complete.json."""
    complete = json.loads((Path(folder) / "complete.json").read_text())
    files = [str(Path(folder) / name) for name in complete["shards"]]
    reads = None if ordered or len(files) == 1 else min(len(files), 4)
    records = tf.data.TFRecordDataset(files, num_parallel_reads=reads)
    return records.apply(tf.data.experimental.assert_cardinality(complete["count"])), complete

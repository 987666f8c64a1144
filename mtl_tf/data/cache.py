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
in the task's order): images and 8/16-bit label maps (as the tasks' label specs declare them) as
PNG (lossless, so the cache reads back exactly what the source gave) or images as JPEG (smaller,
lossy); every other key as a serialized tensor. `mtl-tf data prepare` writes caches through
`data/prepare.py`.
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

FORMAT_VERSION = 2  # 2: label keys namespaced per task (<task>/<key>)
IMAGE_FORMATS = ("png", "jpeg")


class CacheError(ValueError):
    """A cache folder that cannot be written or read as asked."""


def source_folder(root, split: str, config, tasks: dict, image_size, image_format: str = "png") -> Path:
    """The cache folder of one source, keyed by everything that changes its stored examples."""
    identity = {
        "version": FORMAT_VERSION,
        "source": config.model_dump(mode="json"),
        "image_size": list(image_size),
        "tasks": {name: [task.type, task.classes] for name, task in tasks.items()},
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


def png_keys(tasks: dict) -> dict[str, int]:
    """{example key: channels} of the label maps stored as PNG: 8/16-bit maps of 1, 3 or 4
    channels, as the tasks' label specs declare them."""
    keys = {}
    for task in tasks.values():
        for name, spec in task.label_spec().items():
            channels = 1 if len(spec.shape) == 2 else spec.shape[-1]
            if spec.geometry == "map" and spec.dtype in ("uint8", "uint16") and channels in (1, 3, 4):
                keys[task.key(name)] = channels
    return keys


def serialize(example: dict, tasks: dict, image_format: str = "png") -> bytes:
    """One example as a tf.train.Example: the image and the `png_keys` label maps encoded,
    other keys as tensors."""
    feature, pngs = {}, png_keys(tasks)
    for key, value in example.items():
        value = np.asarray(value)
        if key == "image":
            data = _encode_image(value, image_format)
        elif key in pngs:
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
            writer.write(serialize(example, reader.tasks, image_format))
            count += 1
    count_file.write_text(json.dumps({"count": count}))
    os.replace(tmp, record)  # the shard exists under its final name only when whole
    return count


# ---------------------------------------------------------------- reading


def parse_fn(signature: dict, tasks: dict, image_format: str):
    """A graph function: serialized tf.train.Example -> example dict matching `signature` (the
    examples' tf.TensorSpecs)."""
    features = {key: tf.io.FixedLenFeature([], tf.string) for key in signature}
    pngs = png_keys(tasks)

    def parse(record):
        raw = tf.io.parse_single_example(record, features)
        example = {}
        for key, spec in signature.items():
            if key == "image":
                decode = tf.io.decode_jpeg if image_format == "jpeg" else tf.io.decode_png
                value = decode(raw[key], channels=3)
            elif key in pngs:
                value = tf.io.decode_png(raw[key], channels=pngs[key], dtype=spec.dtype)
                value = value[..., 0] if len(spec.shape) == 2 else value
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

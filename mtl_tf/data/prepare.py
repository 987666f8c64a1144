"""`mtl-tf data prepare`: write the TFRecord cache of a recipe's sources (see data/cache.py)."""

from __future__ import annotations

from tqdm import tqdm

from mtl_tf.config import SPLITS
from mtl_tf.data.cache import CacheError, source_folder, write_source
from mtl_tf.data.pipeline import ExampleReader
from mtl_tf.tasks import build_tasks


def prepare(recipe, splits=SPLITS, shard_size: int = 512, image_format: str = "png", progress: bool = True) -> list[dict]:
    """Cache every source of the recipe's `splits` under `recipe.data.cache`; returns one summary
    per source (split, folder, count, shards, whether it was already complete)."""
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

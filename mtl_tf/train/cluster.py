"""Training across machines: TensorFlow's MultiWorkerMirroredStrategy, its cluster and who
writes what.

The cluster comes from `TF_CONFIG` (TensorFlow's own variable, set by a launcher or a cloud job)
or from `mtl-tf fit --workers host:port,... --worker-index I`, which writes it. Every worker runs
the same `fit`; the global batch (data.batch_size) is split evenly between the workers and the
gradients are summed across them, so N workers step as one process would on the whole batch.
Only the chief (worker 0) writes the run folder; the others write what Keras needs them to write
(checkpoints may involve collective ops, so every worker saves) into `<run>/.workers/worker-I/`,
removed when they finish. A restarted worker resumes from the chief's newest backup, so the
run folder must be on storage every worker reaches (a shared file system across machines).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

WORKERS_FOLDER = ".workers"


class ClusterError(ValueError):
    """A cluster description that cannot be used."""


@dataclass(frozen=True)
class Worker:
    """This process' place in the cluster: `index` of `count` workers."""

    index: int = 0
    count: int = 1

    @property
    def is_chief(self) -> bool:
        return self.index == 0


def cluster_config(workers: list[str], index: int) -> dict:
    """The TF_CONFIG of worker `index` in a cluster of `workers` (host:port each)."""
    if not workers:
        raise ClusterError("--workers needs at least one host:port")
    for address in workers:
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ClusterError(f"--workers: '{address}' is not host:port")
    if not 0 <= index < len(workers):
        raise ClusterError(f"--worker-index {index} is not an index of the {len(workers)} workers")
    return {"cluster": {"worker": list(workers)}, "task": {"type": "worker", "index": index}}


def current_worker(environ=os.environ) -> Worker:
    """This process' place from TF_CONFIG (a lone worker without it). A `chief` task in the
    cluster counts as worker 0, the workers after it."""
    raw = environ.get("TF_CONFIG")
    if not raw:
        return Worker()
    try:
        config = json.loads(raw)
        cluster, task = config["cluster"], config["task"]
        chiefs, workers = len(cluster.get("chief", [])), len(cluster.get("worker", []))
        index = int(task["index"]) + (chiefs if task["type"] == "worker" else 0)
    except (ValueError, KeyError, TypeError) as err:
        raise ClusterError(f"TF_CONFIG is not a cluster description TensorFlow reads: {err!r}") from None
    return Worker(index, chiefs + workers)


def worker_folder(run: Path, worker: Worker) -> Path:
    """Where `worker` writes: the run folder for the chief, a scratch folder inside it for the others."""
    return Path(run) if worker.is_chief else Path(run) / WORKERS_FOLDER / f"worker-{worker.index}"


def remove_scratch(run: Path, worker: Worker) -> None:
    """Remove what `worker` wrote outside the run folder's own files, once it has finished.

    The chief and the other workers finish in any order: the chief removes every scratch folder
    there is, and a worker finishing later removes its own and then `.workers` if it is empty,
    so whichever finishes last leaves no `.workers` behind.
    """
    scratch = Path(run) / WORKERS_FOLDER
    if worker.is_chief:
        shutil.rmtree(scratch, ignore_errors=True)
        return
    shutil.rmtree(worker_folder(run, worker), ignore_errors=True)
    try:
        scratch.rmdir()
    except OSError:  # another worker's folder is still there, or the chief removed it already
        pass

"""Training across machines (train.strategy: multi_worker): two worker processes on localhost
train as one process does on the whole batch, and a cluster killed mid-run resumes from the
chief's backup."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from conftest import ROOT, TINY_RECIPE
from mtl_tf.train.cluster import ClusterError, Worker, cluster_config, current_worker, remove_scratch, worker_folder

# Per replica 4 examples in both runs (batch norm sees the same batches); the engine sums the
# gradients of 8 examples per step across the workers, or over two batches of 4 in one process.
GLOBAL, PER_WORKER, STEPS = 8, 4, 2


def _recipe(tmp_path, batch: int, steps: int, epochs: int) -> str:
    recipe = yaml.safe_load(TINY_RECIPE.read_text())
    recipe["data"].update(batch_size=batch, train=[{"type": "synthetic_aerial", "num_images": 32, "seed": 1}],
                          val=[{"type": "synthetic_aerial", "num_images": 4, "seed": 9}])
    recipe["data"].pop("mixing", None)
    recipe["train"] = {"epochs": epochs, "steps_per_epoch": steps, "num_overlays": 0,
                       "optimizer": {"name": "adam", "learning_rate": 0.002, "schedule": "constant"},
                       "accumulate": {"trunk": GLOBAL, "detection": GLOBAL, "segmentation": GLOBAL}}
    path = tmp_path / f"recipe-{batch}-{epochs}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def _ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _fit(recipe: str, run, *extra) -> list[str]:
    return [sys.executable, "-m", "mtl_tf.cli", "fit", recipe, "--out", str(run), "--quiet", *extra]


def _start_cluster(recipe: str, run, log_dir) -> list[subprocess.Popen]:
    workers = ",".join(f"127.0.0.1:{p}" for p in _ports(2))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return [subprocess.Popen(_fit(recipe, run, "--workers", workers, "--worker-index", str(i)), env=env,
                             stdout=open(log_dir / f"worker{i}.log", "a"), stderr=subprocess.STDOUT)
            for i in range(2)]


def _wait(processes, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    for p in processes:
        try:
            p.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return [p.returncode for p in processes]


def _trainable(path) -> list[np.ndarray]:
    import keras

    import mtl_tf.model.multitask  # noqa: F401  (registers the model class)

    model = keras.models.load_model(path)
    return [np.asarray(v) for v in model.trainable_weights]


def _initial(recipe_path) -> list[np.ndarray]:
    """The weights `fit` starts from (it seeds, then builds)."""
    import keras

    from mtl_tf.recipe import load_recipe
    from mtl_tf.train.fit import build_model

    recipe = load_recipe(recipe_path)
    keras.utils.set_random_seed(recipe.train.seed)
    return [np.asarray(v) for v in build_model(recipe).trainable_weights]


def _max_diff(a, b) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


def test_cluster_descriptions():
    config = cluster_config(["a:1", "b:2"], 1)
    assert config == {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    assert current_worker({"TF_CONFIG": json.dumps(config)}) == Worker(1, 2)
    chief = {"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}
    assert current_worker({"TF_CONFIG": json.dumps(chief)}) == Worker(1, 2)
    assert current_worker({}) == Worker(0, 1) and Worker(0, 2).is_chief
    assert worker_folder(ROOT, Worker(1, 2)) == ROOT / ".workers" / "worker-1" and worker_folder(ROOT, Worker()) == ROOT
    for bad in (["a"], ["a:x"], []):
        with pytest.raises(ClusterError):
            cluster_config(bad, 0)
    with pytest.raises(ClusterError, match="not an index"):
        cluster_config(["a:1"], 1)


@pytest.mark.parametrize("chief_first", [True, False])
def test_no_scratch_folder_is_left_whichever_worker_finishes_last(tmp_path, chief_first):
    (tmp_path / "metrics.json").write_text("{}")
    chief, other = Worker(0, 2), Worker(1, 2)
    scratch = worker_folder(tmp_path, other)
    scratch.mkdir(parents=True)
    if chief_first:
        remove_scratch(tmp_path, chief)
        scratch.mkdir(parents=True)  # the other worker is still saving
        (scratch / "model.keras").write_text("weights")
        remove_scratch(tmp_path, other)
    else:
        (scratch / "model.keras").write_text("weights")
        remove_scratch(tmp_path, other)
        remove_scratch(tmp_path, chief)
    assert not (tmp_path / ".workers").exists() and (tmp_path / "metrics.json").is_file()


def test_two_workers_train_as_one_process_on_the_whole_batch(tmp_path):
    single = tmp_path / "single"
    done = subprocess.run(_fit(_recipe(tmp_path, PER_WORKER, 2 * STEPS, 2), single), capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    cluster = tmp_path / "cluster"
    codes = _wait(_start_cluster(_recipe(tmp_path, GLOBAL, STEPS, 2), cluster, tmp_path), timeout=600)
    logs = "".join((tmp_path / f"worker{i}.log").read_text()[-3000:] for i in range(2))
    assert codes == [0, 0], logs
    assert "worker 1 of 2" in logs
    # Only the chief wrote the run folder; the other worker's scratch folder is gone.
    assert (cluster / "metrics.json").is_file() and not (cluster / ".workers").exists()
    ours, theirs = _trainable(cluster / "model.keras"), _trainable(single / "model.keras")
    assert _max_diff(ours, theirs) < 1e-4, _max_diff(ours, theirs)
    assert _max_diff(theirs, _initial(single / "recipe.yaml")) > 1e-3  # and training moved them


@pytest.mark.slow
def test_a_cluster_killed_mid_run_resumes_from_the_chiefs_backup(tmp_path):
    """`pytest tests/test_multi_worker.py -m slow`: kill worker 1 once the chief has backed up
    epoch 1, let (or make) the chief stop, restart both; the run ends as an uninterrupted one."""
    recipe = _recipe(tmp_path, GLOBAL, STEPS, 3)
    reference = tmp_path / "reference"
    assert _wait(_start_cluster(recipe, reference, tmp_path), timeout=900) == [0, 0]

    run = tmp_path / "run"
    processes = _start_cluster(recipe, run, tmp_path)
    deadline = time.monotonic() + 600
    while not list((run / "backup").glob("epoch-0001")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert list((run / "backup").glob("epoch-0001")), "the chief never backed up epoch 1"
    processes[1].send_signal(signal.SIGKILL)
    _wait(processes, timeout=120)  # the chief fails on its next collective op (or is killed)
    assert not (run / "metrics.json").exists()

    assert _wait(_start_cluster(recipe, run, tmp_path), timeout=900) == [0, 0]
    log = (tmp_path / "worker0.log").read_text()
    assert "resum" in log.lower()
    assert _max_diff(_trainable(run / "model.keras"), _trainable(reference / "model.keras")) < 1e-4

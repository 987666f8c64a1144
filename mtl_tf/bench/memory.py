"""Peak RSS of a model in a fresh process: `python -m mtl_tf.bench.memory RUNTIME THREADS RUNS [MODEL ...]`.

The child loads every MODEL (.keras for runtime "keras", .onnx for "onnx", .tflite otherwise), runs RUNS inferences
of each on one zero image, and prints one JSON line {"pid", "peak_rss_bytes"}. With no MODEL it
only starts the runtime: the baseline of an empty interpreter process. Nothing is subtracted.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path


class MeasurementError(RuntimeError):
    """The child process measuring a model failed."""


def peak_rss(runtime: str, paths: list[Path], threads: int, runs: int = 3, timeout: float = 900) -> dict:
    """Run the measurement in a child process; returns its {"pid", "peak_rss_bytes"}."""
    args = ["mtl_tf.bench.memory", runtime, str(threads), str(runs), *map(str, paths)]
    return run_child(args, f"memory measurement of {runtime} {[str(p) for p in paths]}", timeout=timeout)


def run_child(module_args: list[str], what: str, env: dict | None = None, timeout: float = 900) -> dict:
    """`python -m <module_args>` in a fresh process importing this package, with `env` added to
    the environment; returns the JSON of its last stdout line. A failure is a one-line
    MeasurementError saying `what` failed and why (the child's last meaningful stderr line)."""
    package_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, **(env or {}),
           "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    try:
        done = subprocess.run([sys.executable, "-m", *module_args], capture_output=True, text=True, env=env,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise MeasurementError(f"{what} failed: no result after {timeout:.0f} s") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise MeasurementError(f"{what} failed: {last_error_line(done.stderr) or f'exit status {done.returncode}'}")
    return json.loads(lines[-1])


# TensorFlow's C++ log lines ("E0000 00:00:... file.cc:52] ...", "WARNING: All log messages ...").
_LOG_LINE = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:|WARNING: All log messages)")


def last_error_line(stderr: str) -> str:
    """The last line of a child's stderr that is not TensorFlow log noise (usually the Python
    exception), with the exception's module path dropped."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and not _LOG_LINE.match(line)]
    return re.sub(r"^(?:\w+\.)+(\w+:)", r"\1", lines[-1]) if lines else ""


def main(argv: list[str]) -> None:
    from mtl_tf.bench.timing import configure_tensorflow, runner_for

    runtime, threads, runs, *paths = argv
    threads = int(threads)
    if runtime == "keras":
        configure_tensorflow(threads)
        import tensorflow as tf

        tf.zeros([1]).numpy()  # start the runtime even with no model (the baseline)
    elif runtime == "onnx":
        import onnxruntime  # noqa: F401  (the baseline: the runtime loaded)
    else:
        import ai_edge_litert.interpreter  # noqa: F401
    runners = [runner_for(runtime, Path(p), threads) for p in paths]
    for _ in range(int(runs)):
        for run in runners:  # the naive set: one model after the other on the same image
            run()
    print(json.dumps({"pid": os.getpid(), "peak_rss_bytes": own_peak_rss()}))


def own_peak_rss() -> int:
    """This process's peak RSS in bytes: VmHWM of its own address space on Linux.

    Not getrusage's ru_maxrss: Linux carries the parent's RSS at fork into the child's maxrss
    across exec, so a child of a big parent would report the parent's size.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    import resource

    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, kilobytes elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


if __name__ == "__main__":
    main(sys.argv[1:])

"""Per-op time of an .onnx serving graph in ONNX Runtime's profiler (docs/bench/six_tasks.md):
LiteRT's Python wheel has no profiler, ONNX Runtime's CPU provider has one.

    PYTHONPATH=. python docs/bench/onnx_profile.py ARTIFACT.onnx [--threads 1] [--runs 200]

Artifacts: `mtl-tf bench RECIPE` leaves them in runs/bench/<recipe>/artifacts-*/ (e.g.
detection.onnx). Prints ms per run by (trunk or not, op type), then the 30 slowest other nodes.
"""
import argparse
import collections
import json
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--trunk", default="mobilenet", help="a node whose name holds this is the trunk's")
    args = parser.parse_args()
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_profiling = True
    folder = tempfile.mkdtemp(prefix="onnx_profile_")  # ORT writes its profile; not into the repository
    options.profile_file_prefix = str(Path(folder) / "profile")
    session = ort.InferenceSession(args.artifact, options, providers=["CPUExecutionProvider"])
    (image,) = session.get_inputs()
    feed = {image.name: np.zeros([d if isinstance(d, int) else 1 for d in image.shape], np.uint8)}
    for _ in range(args.runs):
        session.run(None, feed)
    profile = Path(session.end_profiling())
    events = [e for e in json.loads(profile.read_text()) if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    profile.unlink()
    Path(folder).rmdir()
    per_node = collections.defaultdict(float)
    for e in events:
        per_node[e["name"].removesuffix("_kernel_time"), e["args"].get("op_name")] += e["dur"] / args.runs / 1000
    groups = collections.defaultdict(float)
    for (name, op), ms in per_node.items():
        groups[("trunk " if args.trunk in name else "other ") + op] += ms
    print(f"total {sum(per_node.values()):.3f} ms per run ({len(per_node)} nodes)")
    for group, ms in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"  {group:32s} {ms:.3f}")
    print("slowest nodes outside the trunk:")
    others = [(ms, op, name) for (name, op), ms in per_node.items() if args.trunk not in name]
    for ms, op, name in sorted(others, reverse=True)[:30]:
        print(f"  {ms:.3f} {op:16s} {name[:90]}")


if __name__ == "__main__":
    main()

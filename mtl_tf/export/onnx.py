"""SavedModel -> ONNX through tf2onnx (keeps the signature's input and output names), the
input of TensorRT on Jetson (see export/jetson/)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from mtl_tf.export.tflite import ExportError

OPSET = 17


def convert_onnx(saved_model: Path, opset: int = OPSET) -> bytes:
    """The `serve` signature of a SavedModel as an ONNX model (bytes)."""
    with tempfile.TemporaryDirectory(prefix="mtl_tf_onnx_") as work:
        path = Path(work) / "model.onnx"
        command = [
            sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved_model),
            "--signature_def", "serve", "--opset", str(opset), "--output", str(path),
        ]
        # A child process: tf2onnx rewrites TensorFlow's global graph state while converting.
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0 or not path.is_file():
            tail = "\n".join(done.stderr.strip().splitlines()[-5:])
            raise ExportError(f"ONNX conversion with tf2onnx failed:\n{tail}")
        return path.read_bytes()


def onnx_outputs(path: Path) -> dict:
    """Output name -> shape and dtype of an ONNX model (ONNX artifacts are not quantized)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    outputs = {}
    for out in graph.output:
        tensor = out.type.tensor_type
        outputs[out.name] = {
            "shape": [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim],
            "dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name,
            "quantization": {"scale": 0.0, "zero_point": 0},
        }
    return outputs

"""mtl-tf: multitask vision models (one backbone, one head per task) for embedded deployment."""

import os

# TensorFlow 2.21's oneDNN CPU kernels corrupt memory (double free, segfault) in the backward
# pass of strided 1x1 convolutions once the batch size changes between calls; they must be off
# before TensorFlow is imported. Set TF_ENABLE_ONEDNN_OPTS=1 yourself to opt back in.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

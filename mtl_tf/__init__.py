"""mtl-tf: multitask vision models (one backbone, one head per task) for embedded deployment."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

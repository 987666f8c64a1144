"""The benchmark: trunk, single-task models, the naive set and the multitask model side by side.

Importing this package must stay light (no TensorFlow): `memory.py` runs as a child process
whose peak RSS is the measurement.
"""

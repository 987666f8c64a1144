"""Run as a script (a fresh process: logical devices must be set before TensorFlow starts):
trains the same tiny model with the engine (a) under MirroredStrategy over 2 logical CPUs with
global batches of 8, (b) on one device with batches of 4 and accumulation over 8 examples, and
prints the largest difference between their trainable weights, as JSON."""

import json
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

sys.path.insert(0, sys.argv[1])  # tests/
import numpy as np  # noqa: E402

from engine_support import attach_engine, batches, tiny, weights_of  # noqa: E402

LABELLED = {"detection": [1, 1, 0, 1, 0, 0, 1, 1] * 2, "segmentation": [0, 1, 1, 1, 1, 0, 0, 1] * 2}
accumulate = {"trunk": 8, "detection": 4, "segmentation": 4}

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    mirrored = tiny()
    attach_engine(mirrored, 8, accumulate=accumulate)
single = tiny()
attach_engine(single, 4, accumulate=accumulate)
before = weights_of(single.trainable_variables)
np.testing.assert_array_equal(before[0], weights_of(mirrored.trainable_variables)[0])

mirrored.fit(batches(mirrored, 16, 8, LABELLED), epochs=1, verbose=0, shuffle=False)
single.fit(batches(single, 16, 4, LABELLED), epochs=1, verbose=0, shuffle=False)
a, b = weights_of(mirrored.trainable_variables), weights_of(single.trainable_variables)
print(json.dumps({
    "replicas": strategy.num_replicas_in_sync,
    "max_abs_diff": max(float(np.abs(x - y).max()) for x, y in zip(a, b)),
    "max_update": max(float(np.abs(x - y).max()) for x, y in zip(b, before)),
    "iterations": {g: int(o.iterations.numpy()) for g, o in mirrored.engine.optimizers.items()},
    "iterations_single": {g: int(o.iterations.numpy()) for g, o in single.engine.optimizers.items()},
}))

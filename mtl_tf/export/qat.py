"""Quantization-aware training for Keras 3 (tensorflow-model-optimization needs tf_keras).

`quantize_model` clones a multitask model with
- the kernels of Conv2D layers that do not feed a BatchNorm fake-quantized per output channel
  (symmetric, narrow range: what the TFLite converter does to int8 kernels), and
- `FakeQuant` layers after activations (ReLU, Add, resizing, average pooling, L2 norm, convs
  without a BatchNorm after them), whose min/max follow an exponential moving average of the
  training batches,
with BatchNorm frozen (inference statistics). Conv + BatchNorm pairs are left unquantized in the
graph: the converter folds the BatchNorm into the kernel and quantizes the folded kernel itself;
a fake-quant node on the unfolded kernel (or between conv and BatchNorm) defeats that folding
(it measured 7.7 mIoU points worse, though before the average-pool fix below, which may account
for part of it). The fine-tuned model converts to full int8
like any other (the converter keeps the learned ranges and calibrates the other tensors).

Every conv input needs a learned range: given a FakeQuant range on an average pool's input and a
calibrated one on its output, the converter quantized the next conv's int32 bias with the
calibrated scale, then gave the pool output its input's scale (int8 pooling keeps the scale), so
the bias came out 7-44% off in LiteRT (`tflite.bias_scale_mismatches`); that, not training, cost
the 8 mIoU points QAT int8 lost. Hence the FakeQuant after `AveragePooling2D`.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from mtl_tf.model.layers import L2Normalization
from mtl_tf.model.multitask import MultitaskModel


MIN_RANGE = 1e-3  # the narrowest activation range FakeQuant passes to the converter


@keras.saving.register_keras_serializable(package="mtl_tf")
class FakeQuant(keras.layers.Layer):
    """8-bit fake quantization of activations with min/max tracked by EMA during training."""

    def __init__(self, momentum: float = 0.99, **kwargs):
        super().__init__(**kwargs)
        self.momentum = momentum

    def build(self, input_shape):
        zeros = keras.initializers.Zeros()
        self.min = self.add_weight(name="min", shape=(), initializer=zeros, trainable=False)
        self.max = self.add_weight(name="max", shape=(), initializer=zeros, trainable=False)
        self.seen = self.add_weight(name="seen", shape=(), initializer=zeros, trainable=False)

    def call(self, x, training=None):
        if training:
            low, high = tf.reduce_min(x), tf.reduce_max(x)
            m = tf.where(self.seen > 0, self.momentum, 0.0)  # the first batch sets the range
            self.min.assign(m * self.min + (1 - m) * tf.minimum(low, 0.0))
            self.max.assign(m * self.max + (1 - m) * tf.maximum(high, 0.0))
            # An empty range (a tensor zero on every batch, e.g. behind dead ReLUs) would give the
            # converter a zero scale, which LiteRT aborts on.
            self.max.assign(tf.maximum(self.max, self.min + MIN_RANGE))
            self.seen.assign(1.0)
        return tf.quantization.fake_quant_with_min_max_vars(x, self.min, self.max, num_bits=8)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum}


@keras.saving.register_keras_serializable(package="mtl_tf")
class QuantConv2D(keras.layers.Conv2D):
    """Conv2D whose kernel is fake-quantized to int8 per output channel."""

    def convolution_op(self, inputs, kernel):
        bound = tf.stop_gradient(tf.reduce_max(tf.abs(kernel), axis=[0, 1, 2]))
        bound = tf.maximum(bound, 1e-8)
        kernel = tf.quantization.fake_quant_with_min_max_vars_per_channel(
            kernel, -bound, bound, num_bits=8, narrow_range=True
        )
        return super().convolution_op(inputs, kernel)


# Every tensor a conv reads must have one (see the module docstring on average pooling).
_QUANTIZED_OUTPUTS = (
    keras.layers.ReLU, keras.layers.Add, keras.layers.Resizing, keras.layers.AveragePooling2D, L2Normalization
)


def _feeding_batchnorm(model) -> set[str]:
    """Names of the layers whose output goes into a BatchNormalization (nested models included)."""
    names = set()
    for layer in leaf_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            for node in layer._inbound_nodes:
                names.update(t._keras_history.operation.name for t in node.input_tensors)
    return names


def _quantizers(model):
    """(clone_function, call_function) for `keras.models.clone_model`."""
    before_bn = _feeding_batchnorm(model)

    def clone_layer(layer):
        config = layer.get_config()
        if type(layer) is keras.layers.Conv2D and layer.name not in before_bn:
            return QuantConv2D.from_config(config)
        clone = layer.__class__.from_config(config)
        if isinstance(layer, keras.layers.BatchNormalization):
            clone.trainable = False  # frozen: the converter folds its inference statistics
        return clone

    def call_layer(layer, *args, **kwargs):
        out = layer(*args, **kwargs)
        conv = isinstance(layer, keras.layers.Conv2D) and layer.name not in before_bn
        if conv or isinstance(layer, _QUANTIZED_OUTPUTS):
            out = FakeQuant(name=f"{layer.name}_fq")(out)
        return out

    return clone_layer, call_layer


def leaf_layers(model) -> list:
    """The layers holding weights of a model, nested functional models flattened."""
    layers = []
    for layer in model.layers:
        layers.extend(leaf_layers(layer) if isinstance(layer, keras.Model) else [layer])
    return layers


class QuantizationAwareModel(keras.Model):
    """A fake-quantized copy of a `MultitaskModel`: same tasks, outputs, losses and training."""

    compute_loss = MultitaskModel.compute_loss
    predict_step = MultitaskModel.predict_step
    postprocess = MultitaskModel.postprocess

    def __init__(self, source: MultitaskModel):
        functional = keras.Model(source.inputs, [source.output[n] for n in source.tasks])
        clone_layer, call_layer = _quantizers(source)
        clone = keras.models.clone_model(functional, clone_function=clone_layer, call_function=call_layer, recursive=True)
        super().__init__(inputs=clone.inputs, outputs=dict(zip(source.tasks, clone.outputs)),
                         name=f"{source.name}_qat")
        originals = {layer.name: layer for layer in leaf_layers(source)}
        for layer in leaf_layers(clone):
            if layer.name in originals:
                layer.set_weights(originals[layer.name].get_weights())
        for attr in ("backbone_args", "task_configs", "image_size", "split_last_stage", "tasks"):
            setattr(self, attr, getattr(source, attr))
        self.task_loss_trackers = {n: keras.metrics.Mean(name=f"{n}_loss") for n in source.tasks}


def quantize_model(model: MultitaskModel) -> QuantizationAwareModel:
    """A fake-quantized copy of `model`, ready for `fit` (see `qat_finetune`)."""
    return QuantizationAwareModel(model)


def qat_finetune(model: MultitaskModel, recipe, epochs: int, learning_rate: float | None = None,
                 verbose="auto") -> QuantizationAwareModel:
    """Fine-tune a fake-quantized copy of `model` on the recipe's training data for `epochs`."""
    from mtl_tf.train.setup import training_data

    qat = quantize_model(model)
    training = training_data(recipe, qat.tasks)
    qat.compile(optimizer=keras.optimizers.Adam(learning_rate or recipe.export.qat_learning_rate))
    qat.fit(training.batches(), epochs=epochs, steps_per_epoch=training.steps, verbose=verbose)
    return qat

"""The multitask training engine: the `train_step` of `MultitaskModel` when a recipe asks for it.

What it does, per batch (one replica's share under tf.distribute):
- one forward pass through the trunk and every head;
- per task t, if the batch holds n_t > 0 examples labelled for t and t is not frozen: ONE backward
  pass through head t alone (down to the backbone taps), inside a `tf.cond`. A task without
  labels in the batch costs no head backward pass (its branch is never run); its forward pass is
  not skipped (the model is one graph);
- one backward pass through the trunk, fed with the sum of the heads' tap gradients;
- `train.head_backward: sequential` chains the heads' branches (each starts once the previous
  one's gradients exist), so at most one head's activations are alive besides the trunk's
  (UberNet's one-head-at-a-time backward); `joint` leaves the order to the executor;
- gradients land in accumulators (non-trainable variables, summed across replicas): head t's
  steps once it has seen B_t labelled examples, the trunk once it has seen B_0 examples
  (UberNet, Kokkinos 2017). The loss of task t on a batch is weighted by n_t, so an accumulated
  step is the per-example average over the examples seen, and equals one big batch when the
  losses are per-example means (`train.accumulate`). With `train.trunk_weighting: tasks` the
  trunk instead gets each present task's batch-mean loss at full weight (Keras' summed losses);
- task balancing (`train.balance`): fixed weights, uncertainty weighting, GradNorm on the last
  shared layer, dynamic weight average (updated per epoch by `DWAUpdate`), or normalized (each
  loss divided by a running mean of its own magnitude);
- gradient surgery (`train.gradient_surgery`): the trunk gets PCGrad's or CAGrad's combination of
  the tasks' trunk gradients (one trunk backward pass per task) instead of their sum;
- per-group learning rates: the recipe's schedule at the engine's global step times a per-group
  multiplier (`train.lr_multipliers`, lowered by `TaskPlateau`), each group with its own
  optimizer (so Adam's bias correction counts that group's own steps).

Steps happen in the cross-replica context (one `merge_call` per batch), where `tf.cond` around
an update is allowed; the per-variable updates are Keras' own `update_step`.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from mtl_tf.config import TrainConfig
from mtl_tf.train.optim import build_optimizer, learning_rate
from mtl_tf.train.surgery import combine

TRUNK = "trunk"


def labelled_count(sample_weight) -> tf.Tensor:
    """Examples of the batch carrying a task's labels: those with any positive sample weight."""
    w = tf.cast(sample_weight, tf.float32)
    w = tf.reshape(w, [tf.shape(w)[0], -1])
    return tf.reduce_sum(tf.cast(tf.reduce_max(w, axis=1) > 0, tf.float32))


def dwa_weights(previous: np.ndarray, before: np.ndarray, temperature: float) -> np.ndarray:
    """Dynamic weight average (Liu et al. 2019): w_t = T exp(r_t / temp) / sum_k exp(r_k / temp)
    with r_t = L_t(epoch - 1) / L_t(epoch - 2); weights sum to the number of tasks."""
    ratio = np.asarray(previous, np.float64) / np.maximum(np.asarray(before, np.float64), 1e-12)
    e = np.exp(ratio / temperature)
    return len(e) * e / e.sum()


def _state(value, dtype="float32", aggregation="none"):
    return keras.Variable(value, dtype=dtype, trainable=False, aggregation=aggregation)


def _zeros_like(variables, aggregation="sum"):
    return [_state(np.zeros(v.shape, np.float32), aggregation=aggregation) for v in variables]


class MultitaskEngine:
    """State and step of the engine for `model` (build it inside the strategy's scope, after
    `model.compile`). Its variables are not part of the model file; `state()` and
    `set_state()` give them to the backup callback."""

    def __init__(self, model, train: TrainConfig, batch_size: int, total_steps: int):
        self.model = model
        self.tasks = list(model.tasks)
        self.balance = train.balance
        self.surgery, self.cagrad_c = train.gradient_surgery, train.cagrad_c
        self.trunk_weighting = train.trunk_weighting
        self.sequential = train.head_backward == "sequential"
        self.schedule = learning_rate(train.optimizer, total_steps)
        graph = model.engine_graph
        self.vars = {TRUNK: graph.trunk_vars, **graph.head_vars}
        self.sizes = {g: float(train.accumulate.get(g, batch_size)) for g in self.vars}
        # One optimizer per group; the trunk's is the compiled one (built over every model variable
        # so that model.keras reloads cleanly; only the trunk's slots are used).
        model.optimizer.build(model.trainable_variables)
        self.optimizers = {TRUNK: model.optimizer}
        for name in self.tasks:
            self.optimizers[name] = build_optimizer(train.optimizer, total_steps, constant=True)
            self.optimizers[name].build(self.vars[name])
        self.acc = {g: _zeros_like(v) for g, v in self.vars.items()}
        self.count = {g: _state(0.0, aggregation="sum") for g in self.vars}
        self.step = _state(0, "int64")
        self.multiplier = {g: _state(train.lr_multipliers.get(g, 1.0)) for g in self.vars}
        self.active = {t: _state(1.0) for t in self.tasks}
        self.weights = _state(np.array([model.tasks[t].config.loss_weight for t in self.tasks], np.float32))
        # Learned balancing variables: log-variances (uncertainty) or task weights (GradNorm).
        self.balance_vars = []
        if self.balance.method == "uncertainty":
            self.log_vars = keras.Variable(np.zeros(len(self.tasks), np.float32), name="log_variances")
            self.balance_vars = [self.log_vars]
        if self.balance.method == "gradnorm":
            self.gn_weights = keras.Variable(np.ones(len(self.tasks), np.float32), name="gradnorm_weights")
            self.initial_losses = _state(np.zeros(len(self.tasks), np.float32), aggregation="mean")
            self.balance_vars = [self.gn_weights]
            self.last_shared = [v for v in self.vars[TRUNK] if len(v.shape) >= 2][-1]
        if self.balance.method == "normalized":  # running mean of each task's loss (0: none seen yet)
            self.loss_scale = _state(np.zeros(len(self.tasks), np.float32), aggregation="mean")
        self.dwa_history = _state(np.zeros((2, len(self.tasks)), np.float32))  # loss means, last 2 epochs
        self.dwa_epochs = _state(0, "int64")
        if self.balance_vars:
            rate = train.optimizer.learning_rate if self.balance.method == "uncertainty" else self.balance.gradnorm_learning_rate
            self.balance_optimizer = keras.optimizers.Adam(rate) if self.balance.method == "uncertainty" else keras.optimizers.SGD(rate)
            self.balance_optimizer.build(self.balance_vars)
            self.balance_acc = _zeros_like(self.balance_vars)

    # ------------------------------------------------------------------ state
    def _state_variables(self) -> list:
        out = [self.step, self.dwa_history, self.dwa_epochs, self.weights]
        for g in self.vars:
            out += [*self.acc[g], self.count[g], self.multiplier[g]]
            if g != TRUNK:
                out += [self.active[g], *self.optimizers[g].variables]
        if self.balance_vars:
            out += [*self.balance_vars, *self.balance_acc, *self.balance_optimizer.variables]
        if self.balance.method == "gradnorm":
            out.append(self.initial_losses)
        if self.balance.method == "normalized":
            out.append(self.loss_scale)
        return out

    def state(self) -> list[np.ndarray]:
        """Every engine variable as numpy arrays (accumulators, counters, balancer, optimizers)."""
        return [np.asarray(keras.ops.convert_to_numpy(v)) for v in self._state_variables()]

    def set_state(self, values: list[np.ndarray]) -> None:
        variables = self._state_variables()
        if len(values) != len(variables):
            raise ValueError(f"engine state holds {len(values)} arrays, this engine has {len(variables)}")
        for v, value in zip(variables, values):
            v.assign(value)

    def task_weights(self) -> tf.Tensor:
        """The current balancing weight of every task (in `self.tasks` order)."""
        if self.balance.method == "uncertainty":
            return self.weights * tf.exp(-self.log_vars)
        if self.balance.method == "gradnorm":
            return self.weights * self.gn_weights
        if self.balance.method == "normalized":
            return self.weights / tf.where(self.loss_scale > 0, self.loss_scale, 1.0)
        return self.weights

    def _weight(self, i: int, loss) -> tf.Tensor:
        """Task i's weight on its loss in this step (no gradient flows through it for
        `normalized`, whose first step divides by the loss itself)."""
        if self.balance.method == "normalized":
            scale = tf.where(self.loss_scale[i] > 0, self.loss_scale[i], loss)
            return self.weights[i] / tf.maximum(tf.stop_gradient(scale), 1e-12)
        weight = self.task_weights()[i]
        return tf.stop_gradient(weight) if self.balance.method == "gradnorm" else weight  # GradNorm: own loss

    def _update_loss_scale(self, losses, counts) -> None:
        """normalized: each present task's running mean of its loss (its first loss to start)."""
        m = self.balance.normalized_momentum
        scale, losses = self.loss_scale.value, tf.stack(losses)
        new = tf.where(scale > 0, m * scale + (1 - m) * losses, losses)
        self.loss_scale.assign(tf.where(tf.stack(counts) > 0, new, scale))

    # ------------------------------------------------------------------ the step
    def train_step(self, data):
        model = self.model
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        graph = model.engine_graph
        weights = self.task_weights()
        with tf.GradientTape(persistent=self.balance.method == "gradnorm" or self.surgery != "none") as tape:
            taps = graph.trunk(x, training=True)
        counts = [labelled_count(sample_weight[t]) for t in self.tasks]
        batch = tf.cast(tf.shape(x)[0], tf.float32)

        tap_grads = [tf.zeros_like(t) for t in taps]
        balance_grads = [tf.zeros_like(v) for v in self.balance_vars]
        losses, norms, per_task = [], [], []
        previous = []  # head_backward sequential: the outputs of the last head's branch
        for i, name in enumerate(self.tasks):
            data_i = (y[name], sample_weight[name])
            head_grads, task_taps, task_balance, loss = self._task_gradients(i, data_i, counts[i], taps, previous)
            if self.sequential:
                previous = [*head_grads, *task_taps, *task_balance, loss]
            if self.trunk_weighting == "tasks":  # the task's batch-mean loss, times the batch size
                scale = batch / tf.maximum(counts[i], 1.0)
                task_taps = [g * scale for g in task_taps]
                task_balance = [g * scale for g in task_balance]
            self._accumulate(name, head_grads, counts[i])
            tap_grads = [a + b for a, b in zip(tap_grads, task_taps)]
            balance_grads = [a + b for a, b in zip(balance_grads, task_balance)]
            losses.append(loss)
            if self.balance.method == "gradnorm":  # ||d (w_t L_t) / d W|| at the last shared layer
                g_last = tape.gradient(taps, self.last_shared, output_gradients=task_taps)
                norms.append(tf.norm(g_last) / tf.maximum(counts[i], 1.0))
            if self.surgery != "none":
                per_task.append(self._trunk_gradients(tape, taps, task_taps))
        if per_task:
            trunk_grads = combine(per_task, self.surgery, self.cagrad_c)
        else:
            trunk_grads = tape.gradient(taps, self.vars[TRUNK], output_gradients=tap_grads)
        del tape
        if self.balance.method == "normalized":
            self._update_loss_scale(losses, counts)
        self._accumulate(TRUNK, trunk_grads, batch)
        if self.balance.method == "gradnorm":
            balance_grads = [batch * self._gradnorm_gradient(tf.stack(norms), tf.stack(losses), tf.stack(counts))]
        for a, g in zip(getattr(self, "balance_acc", []), balance_grads):
            a.assign_add(g)

        tf.distribute.get_replica_context().merge_call(self._apply_ready)
        return self._logs(losses, counts, weights)

    def _trunk_gradients(self, tape, taps, task_taps) -> list:
        """One task's gradients of the trunk variables (zeros where it does not reach)."""
        grads = tape.gradient(taps, self.vars[TRUNK], output_gradients=task_taps)
        return [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g) for g, v in zip(grads, self.vars[TRUNK])]

    def _task_gradients(self, i: int, data, count, taps, after=()):
        """Head i's forward and backward pass from the taps: gradients of count * objective for
        its variables, the taps and the balancer variables, and its loss. When the batch has
        no labels for the task (or it is frozen) the branch does not run: zeros. The branch
        starts only once every tensor in `after` is computed."""
        name = self.tasks[i]
        task, branch, head = self.model.tasks[name], self.model.engine_graph.branches[name], self.vars[name]

        def run():
            # In-branch copies: the taps are captured from outside the cond, and a tape only
            # connects tensors of the graph it records in.
            inputs = [tf.identity(t) for t in taps]
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                loss = task.loss(data[0], branch(inputs, training=True), data[1])
                objective = self._weight(i, loss) * loss
                if self.balance.method == "uncertainty":
                    objective = objective + self.log_vars[i]
                scaled = count * objective
            targets = [*head, *inputs, *self.balance_vars]
            grads = tape.gradient(scaled, targets)
            return [tf.zeros_like(t) if g is None else tf.convert_to_tensor(g) for g, t in zip(grads, targets)], loss

        def skip():
            return [tf.zeros_like(t) for t in [*head, *taps, *self.balance_vars]], tf.constant(0.0)

        with tf.control_dependencies(after):
            # Every op of the branch waits for its predicate (and its captured inputs).
            present = tf.identity((count > 0) & (self.active[name] > 0))
        grads, loss = tf.cond(present, run, skip)
        n_head, n_taps = len(head), len(taps)
        return grads[:n_head], grads[n_head : n_head + n_taps], grads[n_head + n_taps :], loss

    def _gradnorm_gradient(self, norms, losses, counts):
        """d L_grad / d w for GradNorm (Chen et al. 2018), over the tasks present in the batch:
        L_grad = sum_t |G_t - mean(G) * r_t ** alpha|, G_t = w_t ||grad_W L_t||, r_t the task's
        inverse training rate L_t / L_t(0) relative to the mean."""
        present = tf.cast(counts > 0, tf.float32)
        unset = tf.cast(self.initial_losses <= 0, tf.float32) * present
        self.initial_losses.assign(self.initial_losses * (1 - unset) + losses * unset)
        k = tf.maximum(tf.reduce_sum(present), 1.0)
        ratio = losses / tf.maximum(self.initial_losses, 1e-12) * present
        relative = ratio / tf.maximum(tf.reduce_sum(ratio) / k, 1e-12)
        mean_norm = tf.reduce_sum(norms * present) / k
        target = tf.stop_gradient(mean_norm * relative ** self.balance.gradnorm_alpha)
        # G_t = w_t * g_t with g_t = norms / w_t (norms were taken with the weights applied).
        per_weight = norms / tf.maximum(self.gn_weights, 1e-12)
        return tf.sign(norms - target) * per_weight * present

    def _accumulate(self, group: str, grads, count) -> None:
        for a, g in zip(self.acc[group], grads):
            a.assign_add(g)
        self.count[group].assign_add(count)

    # ------------------------------------------------------------------ cross-replica updates
    def _apply_ready(self, strategy) -> None:
        lr = tf.cast(self.schedule(self.step) if callable(self.schedule) else self.schedule, tf.float32)
        for group in self.vars:
            ready = self.count[group] >= self.sizes[group]
            if group != TRUNK:
                ready = ready & (self.active[group] > 0)
            tf.cond(ready, lambda g=group: self._step_group(strategy, g, lr), lambda: None)
        self.step.assign_add(1)

    def _step_group(self, strategy, group: str, lr):
        denominator = tf.maximum(self.count[group].value, 1.0)
        _update(strategy, self.optimizers[group], self.vars[group], self.acc[group], denominator,
                lr * self.multiplier[group])
        if group == TRUNK and self.balance_vars:
            _update(strategy, self.balance_optimizer, self.balance_vars, self.balance_acc, denominator,
                    self.balance_optimizer.learning_rate)
            if self.balance.method == "gradnorm":  # renormalize: weights stay positive, sum to T
                w = tf.maximum(self.gn_weights.value, 1e-3)
                self.gn_weights.assign(w * len(self.tasks) / tf.reduce_sum(w))
        self.count[group].assign(0.0)

    def _logs(self, losses, counts, weights) -> dict:
        model = self.model
        for i, name in enumerate(self.tasks):
            model.task_loss_trackers[name].update_state(losses[i], sample_weight=tf.cast(counts[i] > 0, tf.float32))
        total = tf.add_n([weights[i] * losses[i] for i in range(len(self.tasks))])
        model._loss_tracker.update_state(total)
        logs = model.get_metrics_result()
        for i, name in enumerate(self.tasks):
            logs[f"{name}_weight"] = weights[i]
        return logs


def _add(a, b):
    return b if a is None else (a if b is None else a + b)


def _update(strategy, optimizer, variables, accumulators, denominator, lr) -> None:
    """One optimizer step with the averaged accumulated gradients, in the cross-replica context,
    then reset the accumulators. Mirrors Keras' own apply: clipnorm, decoupled weight decay,
    `update_step`, iterations + 1."""
    optimizer.learning_rate.assign(lr)
    rate = tf.convert_to_tensor(optimizer.learning_rate)

    def update(var, acc):
        grad = acc / denominator
        if optimizer.clipnorm:
            grad = tf.clip_by_norm(grad, optimizer.clipnorm)
        if optimizer.weight_decay and optimizer._use_weight_decay(var):
            var.assign_sub(var * optimizer.weight_decay * rate)
        optimizer.update_step(grad, var, rate)

    for var, acc in zip(variables, accumulators):
        strategy.extended.update(var.value, update, args=(acc.value,), group=False)
    optimizer.iterations.assign_add(1)
    for acc in accumulators:
        acc.assign(tf.zeros(acc.shape, acc.dtype))

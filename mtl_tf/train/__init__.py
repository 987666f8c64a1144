"""Training: optimizers, callbacks and the `fit` job that writes a run folder."""

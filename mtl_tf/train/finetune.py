"""`train.finetune_heads`: a last stage with the shared trunk frozen and every head trained (the
classification thesis' final step, once the tasks have shaped the shared features).

The trunk's layers are set non-trainable (their BatchNorm statistics stay as they are), the model
is recompiled with a fresh optimizer (the recipe's, at `finetune_heads.learning_rate`, its
schedule over the stage's steps) and trained for `finetune_heads.epochs` more epochs with Keras'
plain step; its epochs continue the run's numbering, logged in finetune_history.csv. The trunk is made trainable
again and the main optimizer put back afterwards, so the saved model loads and trains like any
other. With
`model.split_last_stage`, each task's copy of the last stage is part of its head and is trained.
"""

from __future__ import annotations

from mtl_tf.train.optim import build_optimizer


def finetune_heads(model, recipe, batches, steps: int, validation_data, callbacks=(), verbose="auto") -> None:
    """Train `model`'s heads for `recipe.train.finetune_heads.epochs` epochs of `steps` batches
    with the trunk frozen; nothing happens without `finetune_heads` in the recipe."""
    stage = recipe.train.finetune_heads
    if stage is None:
        return
    trunk = model.engine_graph.trunk_layers
    optimizer = recipe.train.optimizer.model_copy(update={"learning_rate": stage.learning_rate or
                                                          recipe.train.optimizer.learning_rate})
    engine, model.engine = model.engine, None  # the plain Keras step: only the heads have variables to train
    main_optimizer = model.optimizer
    for layer in trunk:
        layer.trainable = False
    try:
        model.compile(optimizer=build_optimizer(optimizer, steps * stage.epochs))
        first = recipe.train.epochs
        print(f"finetune_heads: {stage.epochs} epochs, trunk frozen, learning rate {optimizer.learning_rate}")
        model.fit(batches, initial_epoch=first, epochs=first + stage.epochs, steps_per_epoch=steps,
                  validation_data=validation_data, callbacks=list(callbacks), verbose=verbose, shuffle=False)
    finally:
        for layer in trunk:
            layer.trainable = True
        model.compile(optimizer=main_optimizer)
        model.engine = engine

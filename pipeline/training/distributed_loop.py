"""The training loop of ``train.distribution: multi_worker`` (the other strategies keep
``model.fit``).

Keras 3 cannot ``fit`` under MultiWorkerMirroredStrategy: its first-batch build reduces a
``PerReplica`` data batch (``ValueError: Attempt to convert a value (PerReplica ...) to a
Tensor``, keras-team/keras#20585) and its train and test steps reduce the scalar loss with
``strategy.reduce("MEAN", v, axis=0)`` (``Invalid reduction dimension 0 for input with 0
dimensions``, tensorflow#72388). This module owns what replaces them:

* :func:`fit_function`: ``model.fit``'s stand-in (:func:`train_epochs`): ``steps`` steps an
  epoch over a ``tf.data`` stream distributed with
  ``strategy.experimental_distribute_dataset``; a ``tf.function`` step runs ``strategy.run``
  (per-example loss of the compiled loss, averaged over the global batch with
  ``tf.nn.compute_average_loss``, gradient tape, ``optimizer.apply_gradients``, which sums the
  gradients over every replica) and logs the loss summed over replicas
  (``strategy.reduce(SUM)``). The trainer's callbacks run through a
  ``keras.callbacks.CallbackList`` as under ``fit``, and a ``History`` is returned, so the
  timed checkpoint, progress lines and history rows are the same code.
* :func:`local_copy`: the weights on a model outside the strategy, for validation: every
  worker validates the same way on its own, with no collective op (Keras' distributed
  ``evaluate``/``predict`` hit the same reduction bug).
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""model -> its compiled train step: made once per run, not per epoch."""

_LOCAL: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""model -> its copy outside the strategy (see :func:`local_copy`)."""


def with_class_weights(ds: Any, class_weight: Mapping[int, float] | None) -> Any:
    """``(x, y)`` batches -> ``(x, y, weight of y's class)`` as ``fit(class_weight=...)`` does
    (``y``: class indices, or one-hot rows whose arg-max is the class)."""
    if not class_weight:
        return ds
    import tensorflow as tf

    table = tf.constant([float(class_weight.get(k, 1.0)) for k in range(max(class_weight) + 1)],
                        tf.float32)

    def add_weights(x: Any, y: Any) -> tuple[Any, Any, Any]:
        if y.shape.rank is not None and y.shape.rank >= 2 and y.shape[-1] != 1:
            classes = tf.argmax(y, axis=-1, output_type=tf.int32)
        else:
            classes = tf.cast(tf.round(tf.reshape(y, [-1])), tf.int32)
        return x, y, tf.gather(table, classes)

    return ds.map(add_weights)


def unreduced_loss(model: Any) -> Any:
    """The model's compiled loss with ``reduction=None`` (one value per example or element)."""
    import keras

    loss = model.loss if isinstance(model.loss, keras.losses.Loss) else keras.losses.get(model.loss)
    if isinstance(loss, keras.losses.Loss):
        loss = copy.copy(loss)
        loss.reduction = None
    return loss  # a plain loss function returns one value per example already


def make_train_step(model: Any, strategy: Any) -> Any:
    """The compiled step: one global batch from a distributed iterator -> the global mean loss."""
    import tensorflow as tf

    loss_fn = unreduced_loss(model)

    def replica_step(*batch: Any) -> Any:
        x, y, weight = batch if len(batch) == 3 else (*batch, None)
        with tf.GradientTape() as tape:
            pred = model(x, training=True)
            values = tf.convert_to_tensor(loss_fn(y, pred))
            per_example = tf.reduce_mean(tf.reshape(values, [tf.shape(values)[0], -1]), axis=1)
            loss = tf.nn.compute_average_loss(per_example, sample_weight=weight)
            if model.losses:  # regularizers and add_loss terms, as fit adds them
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        grads = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    @tf.function
    def train_step(iterator: Any) -> Any:
        per_replica = strategy.run(replica_step, args=next(iterator))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    return train_step


def _step_for(model: Any, strategy: Any) -> Any:
    if model not in _STEPS:
        if not model.optimizer.built:  # slots made in the strategy's scope, not in the step
            with strategy.scope():
                model.optimizer.build(model.trainable_variables)
        _STEPS[model] = make_train_step(model, strategy)
    return _STEPS[model]


def fit_function(model: Any, strategy: Any) -> Any:
    """A stand-in for ``model.fit`` under ``strategy`` (the keywords the trainer passes):
    ``fit(dataset, steps_per_epoch=..., initial_epoch=..., epochs=..., verbose=...,
    class_weight=..., callbacks=...)`` returns a ``keras.callbacks.History``."""

    def fit(dataset: Any, *, steps_per_epoch: int, initial_epoch: int = 0, epochs: int = 1,
            verbose: int = 0, class_weight: Mapping[int, float] | None = None,
            callbacks: Sequence[Any] = ()) -> Any:
        return train_epochs(model, strategy, dataset, steps_per_epoch, range(initial_epoch, epochs),
                            class_weight=class_weight, callbacks=callbacks, verbose=verbose)

    return fit


def train_epochs(model: Any, strategy: Any, dataset: Any, steps: int, epochs: Sequence[int], *,
                 class_weight: Mapping[int, float] | None = None, callbacks: Sequence[Any] = (),
                 verbose: int = 0) -> Any:
    """Trains ``steps`` steps in each of ``epochs`` (0-based numbers) under ``strategy``, as
    ``model.fit(dataset, steps_per_epoch=steps, initial_epoch=epochs[0], epochs=epochs[-1] + 1)``.

    Args:
        model: a compiled model built in ``strategy.scope()``.
        strategy: the ``tf.distribute`` strategy (every worker calls this in step).
        dataset: an endless stream of global batches ``(x, y)`` or ``(x, y, weight)``.
        steps: global batches per epoch.
        epochs: the epoch numbers the callbacks see.
        class_weight: class index -> loss weight (only with ``(x, y)`` batches).
        callbacks: Keras callbacks, called at train, epoch and batch ends as under ``fit``.
        verbose: 0 silent, 1 progress bar, 2 one line per epoch.

    Returns:
        The ``keras.callbacks.History`` (``history["loss"]``: per epoch, the mean of its step
        losses, as ``fit`` logs it).
    """
    import keras

    train_step = _step_for(model, strategy)
    history = keras.callbacks.History()
    cbs = keras.callbacks.CallbackList([*callbacks, history], add_progbar=verbose != 0,
                                       model=model, verbose=verbose,
                                       epochs=max(epochs, default=0) + 1, steps=steps)
    batches = with_class_weights(dataset, class_weight)
    iterator = iter(strategy.experimental_distribute_dataset(batches))
    model.stop_training = False
    cbs.on_train_begin()
    logs: dict[str, float] = {}
    for epoch in epochs:
        cbs.on_epoch_begin(epoch)
        total = 0.0
        for step in range(steps):
            cbs.on_train_batch_begin(step)
            total += float(train_step(iterator))
            logs = {"loss": total / (step + 1)}
            cbs.on_train_batch_end(step, logs)
            if model.stop_training:
                break
        cbs.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    cbs.on_train_end(logs)
    return history


def local_copy(model: Any) -> Any:
    """A compiled copy of ``model`` outside any strategy, holding its current weights.

    Validation runs on it (``evaluate``, ``predict``, ``predict_on_batch``), so each worker
    computes the same numbers locally; the copy is made once per model, its weights refreshed
    at every call.
    """
    import keras

    local = _LOCAL.get(model)
    if local is None:  # called outside strategy.scope(): plain variables
        local = keras.models.clone_model(model)
        local.compile(loss=model.loss, jit_compile=False)
        _LOCAL[model] = local
    local.set_weights(model.get_weights())
    return local

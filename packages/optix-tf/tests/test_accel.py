"""optix_tf.accel.adam.apply_gradients: Adam's step fused per variable equals Keras's Adam."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from optix_tf.accel.adam import apply_gradients, fusable


def network(seed: int = 0) -> keras.Sequential:
    init = keras.initializers.GlorotUniform(seed=seed)
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(8, activation="tanh", kernel_initializer=init),
            keras.layers.Dense(2, kernel_initializer=init, bias_initializer="ones"),
        ]
    )
    return model


def steps(optimizer: keras.optimizers.Optimizer, fused: bool, count: int = 5) -> list[np.ndarray]:
    """``count`` compiled steps on one network from the same start and batches; the
    weights and the optimizer's variables after them."""
    model = network()
    optimizer.build(model.trainable_variables)
    batches = np.random.default_rng(0).normal(size=(count, 16, 3)).astype(np.float32)

    @tf.function
    def step(x: tf.Tensor) -> None:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x) - 1.0))
        grads = tape.gradient(loss, model.trainable_variables)
        if fused:
            apply_gradients(optimizer, grads, model.trainable_variables)
        else:
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))

    for x in batches:
        step(tf.constant(x))
    return [v.numpy() for v in [*model.weights, *optimizer.variables]]


@pytest.mark.parametrize("options", [{}, {"beta_1": 0.8, "beta_2": 0.95, "epsilon": 1e-5}])
def test_the_fused_step_is_kerass_adam(options) -> None:
    """The same arithmetic in another order: equal to float32 rounding over 5 steps (a
    wrong bias correction, β or ε moves the weights by far more)."""
    keras_adam = keras.optimizers.Adam(learning_rate=3e-2, **options)
    fused_adam = keras.optimizers.Adam(learning_rate=3e-2, **options)
    expected, got = steps(keras_adam, fused=False), steps(fused_adam, fused=True)
    assert len(got) == len(expected)  # weights, then iterations, learning rate, m and v
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)
    assert int(fused_adam.iterations.numpy()) == 5


def test_a_learning_rate_set_between_steps_is_used() -> None:
    optimizers = [keras.optimizers.Adam(learning_rate=1e-2) for _ in range(2)]
    for optimizer in optimizers:
        optimizer.learning_rate.assign(0.1)
    expected, got = steps(optimizers[0], fused=False), steps(optimizers[1], fused=True)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "optimizer",
    [
        keras.optimizers.Adam(amsgrad=True),
        keras.optimizers.Adam(weight_decay=0.01),
        keras.optimizers.Adam(clipnorm=1.0),
        keras.optimizers.AdamW(),
        keras.optimizers.SGD(momentum=0.9),
        keras.optimizers.RMSprop(),
    ],
    ids=["amsgrad", "weight_decay", "clipnorm", "adamw", "sgd", "rmsprop"],
)
def test_other_optimizers_step_through_keras(optimizer) -> None:
    """What the kernel does not do goes through the optimizer's own step, and so
    equals it exactly."""
    twin = optimizer.from_config(optimizer.get_config())
    expected, got = steps(twin, fused=False), steps(optimizer, fused=True)
    assert optimizer.built and not fusable(optimizer, network().trainable_variables)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_array_equal(g, e)


def test_an_optimizer_not_built_yet_builds_through_keras() -> None:
    model = network()
    optimizer = keras.optimizers.Adam()
    assert not fusable(optimizer, model.trainable_variables)
    grads = [tf.ones_like(v) for v in model.trainable_variables]
    apply_gradients(optimizer, grads, model.trainable_variables)
    assert optimizer.built and int(optimizer.iterations.numpy()) == 1
    assert fusable(optimizer, model.trainable_variables)


def test_a_keras_without_the_internals_read_steps_through_keras(monkeypatch) -> None:
    """DESIGN.md's rule for accelerators: where the framework internals they read
    are missing, the plain path runs."""
    model = network()
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    assert fusable(optimizer, model.trainable_variables)
    owner = next(c for c in type(optimizer).__mro__ if "_get_variable_index" in vars(c))
    monkeypatch.delattr(owner, "_get_variable_index")
    assert not fusable(optimizer, model.trainable_variables)

"""The Keras-style Python API (numbacnn/keras.py): the README's example, the functional form with several
outputs, model files shared with the CLI, and the errors a Keras user meets first."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

import numbacnn as nc
from numbacnn.cli import cli
from numbacnn.data import make_shapes


@pytest.fixture(scope="module")
def data():
    x, y, _ = make_shapes(500, seed=1)
    return x[:400], y[:400], x[400:], y[400:]


def lenet_like():
    return nc.Sequential([nc.layers.Conv2D(6, 5, padding="same", activation="relu", input_shape=(1, 28, 28)),
                          nc.layers.MaxPooling2D(2), nc.layers.Flatten(), nc.layers.Dense(10)])


def test_the_readme_example_trains_evaluates_predicts_and_saves(data, tmp_path, capsys):
    x, y, x_test, y_test = data
    model = lenet_like()
    model.compile(optimizer=nc.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=4, batch_size=64, validation_split=0.1,
                        callbacks=[nc.callbacks.EarlyStopping(patience=2, restore_best_weights=True)])
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history.history)
    assert history.history["loss"][-1] < history.history["loss"][0]
    loss, acc = model.evaluate(x_test, y_test)
    assert 0 <= acc <= 1 and loss > 0
    probs = model.predict(x_test)
    assert probs.shape == (100, 10)
    assert acc == pytest.approx(np.mean(probs.argmax(1) == y_test))
    model.summary()
    out = capsys.readouterr().out
    assert "conv2d_1 (Conv2D)" in out and "conv2d_1_relu (ReLU)" in out and "Total params: 11,926" in out
    model.save(tmp_path / "m.h5")
    again = nc.load_model(tmp_path / "m.h5")
    assert again.evaluate(x_test, y_test) == pytest.approx([loss, acc])
    np.testing.assert_array_equal(again.predict(x_test), probs)
    res = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "m.h5"), "--data", "builtin", "--limit", "50"])
    assert res.exit_code == 0, res.output              # the CLI reads the Keras API's model file
    assert "accuracy" in res.stdout


def test_functional_model_with_two_outputs(data):
    x, y, _, _ = data
    inputs = nc.Input(shape=(1, 28, 28))
    h = nc.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    main = nc.layers.Dense(10, name="main")(nc.layers.Flatten()(h))
    aux = nc.layers.Dense(10, name="aux")(nc.layers.Flatten()(nc.layers.MaxPooling2D(2)(h)))
    merged = nc.layers.Add()([h, nc.layers.Conv2D(8, 1)(h)])          # a DAG join
    third = nc.layers.Dense(10, name="third")(nc.layers.Flatten()(nc.layers.GlobalAveragePooling2D()(merged)))
    model = nc.Model(inputs, [main, aux, third])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"], loss_weights=[1.0, 0.3, 0.5])
    assert model.graph.output == "main" and model.graph.aux_outputs == {"aux": 0.3, "third": 0.5}
    history = model.fit(x[:128], y[:128], epochs=2, batch_size=32, verbose=0)
    assert len(history.history["loss"]) == 2
    outs = model.predict(x[:5])
    assert [o.shape for o in outs] == [(5, 10)] * 3
    with pytest.raises(ValueError, match="main one"):
        model.compile("adam", "sparse_categorical_crossentropy", loss_weights=[0.5, 0.3, 0.5])


def test_keras_names_padding_and_activations():
    layers = nc.layers
    assert layers.MaxPooling2D is layers.MaxPool2D and layers.BatchNormalization is layers.BatchNorm
    m = nc.Sequential([layers.Conv2D(4, 3, padding="same", activation="tanh", input_shape=(2, 9, 7)),
                       layers.Activation("relu"), layers.Flatten(), layers.Dense(3, activation="softmax")])
    m.compile("sgd", "sparse_categorical_crossentropy")
    out = m.predict(np.random.default_rng(0).random((2, 2, 9, 7), dtype=np.float32))
    np.testing.assert_allclose(out.sum(1), 1.0, rtol=1e-5)          # the softmax activation is the output
    assert m.graph.logits_node() == "dense_1"                      # ... and the loss reads its input
    assert m.graph.output_shapes["conv2d_1"] == (4, 9, 7)
    with pytest.raises(ValueError, match="padding='same' needs stride 1"):
        layers.Conv2D(4, 3, strides=2, padding="same")
    with pytest.raises(ValueError, match="activation must be one of"):
        layers.Dense(3, activation="gelu")


def test_errors_a_keras_user_meets(data):
    x, y, _, _ = data
    model = lenet_like()
    with pytest.raises(ValueError, match="compile"):
        model.fit(x, y)
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"channels-last: numbacnn takes \(N, C, H, W\)"):
        model.fit(np.transpose(x, (0, 2, 3, 1)), y)
    with pytest.raises(ValueError, match="unknown loss"):
        model.compile("adam", "hinge")
    with pytest.raises(ValueError, match="unknown metric"):
        model.compile("adam", "mse", metrics=["auc"])


def test_sequential_takes_its_input_shape_from_the_data(data):
    x, y, _, _ = data
    model = nc.Sequential([nc.layers.Flatten(), nc.layers.Dense(10)])
    model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    onehot = np.eye(10, dtype=np.float32)[y[:64]]
    model.fit(x[:64], onehot, epochs=1, verbose=0)                 # one-hot targets for categorical_crossentropy
    assert model.graph.input_shape == (1, 28, 28)

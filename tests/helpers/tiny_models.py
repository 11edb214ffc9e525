"""Small Keras models whose Grad-CAM can be worked out by hand."""

from __future__ import annotations

from typing import Any

import numpy as np


def paper_model() -> Any:
    """2x2 image -> 1x1 conv (A0 = R, A1 = G) -> flatten -> dense(2).

    Class 0 kernel: channel 0 gets [2, 0, 0, 2] (mean 1), channel 1 gets -0.5
    everywhere (mean -0.5). Class 1 kernel: channel 1 gets 0.5 everywhere.
    """
    import keras

    inp = keras.Input((2, 2, 3))
    feat = keras.layers.Conv2D(2, 1, use_bias=False, name="feat")(inp)
    flat = keras.layers.Flatten()(feat)
    out = keras.layers.Dense(2, name="logits")(flat)
    model = keras.Model(inp, out)
    # raw preprocessing hands the model RGB: channel 0 = R, 1 = G, 2 = B
    kernel = np.zeros((1, 1, 3, 2), np.float32)
    kernel[0, 0, 0, 0] = 1.0  # A0 = R
    kernel[0, 0, 1, 1] = 1.0  # A1 = G
    model.get_layer("feat").set_weights([kernel])
    dense = np.zeros((2, 2, 2, 2), np.float32)  # (i, j, k, class), the flatten order
    dense[:, :, 0, 0] = [[2, 0], [0, 2]]
    dense[:, :, 1, 0] = -0.5
    dense[:, :, 1, 1] = 0.5
    model.get_layer("logits").set_weights([dense.reshape(8, 2), np.zeros(2, np.float32)])
    return model


def paper_image() -> np.ndarray:
    """BGR uint8: R = [[1,0],[0,2]], G = [[0,3],[1,0]], B = 0."""
    image = np.zeros((1, 2, 2, 3), np.uint8)
    image[0, :, :, 2] = [[1, 0], [0, 2]]  # R is the last BGR channel
    image[0, :, :, 1] = [[0, 3], [1, 0]]
    return image


def pooled_model(seed: int = 0) -> Any:
    """A conv -> maxpool -> flatten -> dense-relu -> dense head, like VGG16 in small."""
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="last_conv")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16, activation="relu")(x)
    x = keras.layers.Dropout(0.5)(x)
    x = keras.layers.Dense(5, activation="softmax")(x)
    return keras.Model(inp, x)


def gap_model(seed: int = 0, pool: str = "avg") -> Any:
    """A ResNet/MobileNet-style head: global pooling -> dense."""
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="last_conv")(inp)
    x = keras.layers.AveragePooling2D(2)(x)
    glob = keras.layers.GlobalAveragePooling2D() if pool == "avg" else keras.layers.GlobalMaxPooling2D()
    x = glob(x)
    x = keras.layers.Dense(4)(x)
    return keras.Model(inp, x)

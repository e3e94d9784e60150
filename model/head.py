"""The masked sequence head: per-frame features -> probability that the window is fake."""

from __future__ import annotations

import keras

from model.config import HeadConfig


def build_head(config: HeadConfig, frames_per_window: int, feature_dim: int) -> keras.Model:
    """features [B, T, D] and mask [B, T] -> fake probability [B, 1].

    A ``Normalization`` layer (adapted on the training features) puts backbone features on a
    common scale before the prototype's LSTM stack; padded frames are masked out of the LSTMs.
    """
    features = keras.Input((frames_per_window, feature_dim), name="features")
    mask = keras.Input((frames_per_window,), dtype="bool", name="mask")
    x = keras.layers.Normalization(axis=-1, name="feature_norm")(features)
    units = list(config.lstm_units)
    for i, n in enumerate(units):
        x = keras.layers.LSTM(n, return_sequences=i < len(units) - 1, name=f"lstm_{i}")(
            x, mask=mask
        )
    x = keras.layers.Dropout(config.dropout, name="dropout")(x)
    x = keras.layers.Dense(config.dense_units, activation="relu", name="dense")(x)
    fake = keras.layers.Dense(1, activation="sigmoid", name="fake_probability")(x)
    return keras.Model([features, mask], fake, name="sequence_head")

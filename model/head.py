"""The new, trained head: pooled base features → normalization → dropout → dense.

Normalization is not optional: a frozen random-init base gives pooled features ~1e-4 in
scale, and a dense layer on them learns nothing. `standardize` fixes per-feature mean and
variance from the training split (frozen base: the features never change); `batchnorm`
learns them (finetune/scratch: the features move while training).
"""
import dataclasses

import keras
import numpy as np

NORMS = ("standardize", "batchnorm")


@dataclasses.dataclass(frozen=True)
class HeadConfig:
    num_classes: int
    norm: str = "standardize"
    dropout_rate: float = 0.3
    multi_label: bool = False
    l2: float = 1e-4


def build_head(feature_dim: int, config: HeadConfig, train_features: np.ndarray = None):
    """A Keras model [b, feature_dim] → [b, num_classes] probabilities (softmax, or sigmoid
    when multi_label). `train_features` are required for `standardize`."""
    inputs = keras.Input((feature_dim,), name="pooled_features")
    if config.norm == "standardize":
        if train_features is None:
            raise ValueError("standardize needs the training features")
        mean, variance = feature_moments(train_features)
        x = keras.layers.Normalization(axis=-1, mean=mean, variance=variance,
                                       name="standardize")(inputs)
    elif config.norm == "batchnorm":
        x = keras.layers.BatchNormalization(name="batchnorm")(inputs)
    else:
        raise ValueError(f"norm must be one of {NORMS}")
    x = keras.layers.Dropout(config.dropout_rate, name="dropout")(x)
    outputs = keras.layers.Dense(
        config.num_classes, activation="sigmoid" if config.multi_label else "softmax",
        kernel_regularizer=keras.regularizers.L2(config.l2), name="scores")(x)
    return keras.Model(inputs, outputs, name="head")


def feature_moments(features: np.ndarray, floor_ratio: float = 1e-3):
    """Per-feature mean and variance, the variance floored at `floor_ratio` × the median
    positive variance: a feature dead on the training split (variance 0, common after
    ReLU in random bases) must not turn a tiny value elsewhere into a huge input."""
    x = np.asarray(features, np.float64)
    mean, var = x.mean(axis=0), x.var(axis=0)
    positive = var[var > 0]
    floor = floor_ratio * float(np.median(positive)) if positive.size else 1.0
    return mean.astype(np.float32), np.maximum(var, floor).astype(np.float32)


def loss_for(config: HeadConfig):
    return (keras.losses.BinaryCrossentropy() if config.multi_label
            else keras.losses.CategoricalCrossentropy())


def class_weights(labels: np.ndarray, num_classes: int) -> dict:
    """Balanced class weights n / (k * count); classes absent from training get 1."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    total = counts.sum()
    return {i: (total / (num_classes * c) if c else 1.0) for i, c in enumerate(counts)}

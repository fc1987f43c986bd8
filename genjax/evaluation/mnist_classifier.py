"""A small CNN classifier of MNIST digits: the feature extractor of "MNIST FID / KID / IS / PRD".

Architecture (input [B, 28, 28, 1] in [0, 1], 241,546 parameters):

  conv 3x3, 32, ReLU -> max-pool 2  -> [B, 14, 14, 32]
  conv 3x3, 64, ReLU -> max-pool 2  -> [B, 7, 7, 64]
  conv 3x3, 128, ReLU -> max-pool 2 -> [B, 3, 3, 128]
  dense 128, ReLU                   -> features [B, 128]  (the FID/KID/PRD feature space)
  dropout, dense 10                 -> logits [B, 10]     (IS uses p(y|x) = softmax(logits))

It is trained on the real MNIST training split by scripts/train_mnist_classifier.py; the trained
weights live in genjax/evaluation/weights/ and are identified by their SHA-256
(MNIST_CLASSIFIER_SHA256 in genjax/evaluation/extractors.py), which enters every
reference-statistics file and every evaluation protocol.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

MNIST_FEATURE_DIM = 128
MNIST_NUM_CLASSES = 10


class MnistCNN(nn.Module):
  """images [B, 28, 28, 1] in [0, 1] -> (features [B, 128], logits [B, 10])."""

  channels: tuple[int, ...] = (32, 64, 128)
  feature_dim: int = MNIST_FEATURE_DIM
  num_classes: int = MNIST_NUM_CLASSES
  dropout_rate: float = 0.3

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    x = images * 2.0 - 1.0  # centre the pixels
    for index, width in enumerate(self.channels):
      x = nn.relu(nn.Conv(width, (3, 3), padding="SAME", name=f"conv{index}")(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    features = nn.relu(nn.Dense(self.feature_dim, name="features")(x.reshape(x.shape[0], -1)))
    hidden = nn.Dropout(self.dropout_rate, deterministic=not train)(features)
    logits = nn.Dense(self.num_classes, name="logits")(hidden)
    return features, logits


def init_mnist_cnn(rng: jax.Array) -> dict:
  """Randomly initialized parameters of MnistCNN (the training script's starting point)."""
  return MnistCNN().init(rng, jnp.zeros((1, 28, 28, 1), jnp.float32))["params"]

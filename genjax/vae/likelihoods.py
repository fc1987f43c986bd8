"""Observation models p(x|z) of the VAE family and the Gaussian KL of its posterior.

  bernoulli              x in {0, 1} (binarized images)              decoder: logits
  gaussian               x continuous (dequantized images, points)   decoder: mean, log-std
  discretized_gaussian   x on the 256 grey levels k/255              decoder: mean, log-std
Each entry states how many decoder outputs it needs per data channel, log p(x|z) per example (nats,
summed over the dimensions of one example) and the mean of p(x|z) (what samples show).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from genjax.distributions import discretized_gaussian_log_prob, gaussian_log_prob
from genjax.registry import Registry

LIKELIHOODS: Registry = Registry("VAE likelihood")


def _sum_per_example(values: jax.Array) -> jax.Array:
  return values.reshape(values.shape[0], -1).sum(axis=1)


@LIKELIHOODS.register("bernoulli")
class Bernoulli:
  params_per_channel = 1

  @staticmethod
  def log_prob(out: jax.Array, x: jax.Array) -> jax.Array:
    """out: logits [B, *shape]; x in [0, 1]. Returns [B]."""
    return -_sum_per_example(optax.sigmoid_binary_cross_entropy(out, x))

  @staticmethod
  def mean(out: jax.Array) -> jax.Array:
    return jax.nn.sigmoid(out)


def _split_gaussian(out: jax.Array) -> tuple[jax.Array, jax.Array]:
  mean, log_std = jnp.split(out, 2, axis=-1)
  return mean, jnp.clip(log_std, -7.0, 5.0)


@LIKELIHOODS.register("gaussian")
class Gaussian:
  params_per_channel = 2

  @staticmethod
  def log_prob(out: jax.Array, x: jax.Array) -> jax.Array:
    return _sum_per_example(gaussian_log_prob(x, *_split_gaussian(out)))

  @staticmethod
  def mean(out: jax.Array) -> jax.Array:
    return _split_gaussian(out)[0]


@LIKELIHOODS.register("discretized_gaussian")
class DiscretizedGaussian:
  """P(x = k/255) = Phi((k + 1/2)/255) - Phi((k - 1/2)/255) under N(mean, std^2), with the edge bins
  k = 0 and k = 255 extended to -inf and +inf so the 256 probabilities sum to one (computed in log
  space by genjax.distributions.discretized_gaussian_log_prob)."""

  params_per_channel = 2

  @staticmethod
  def log_prob(out: jax.Array, x: jax.Array) -> jax.Array:
    """out: mean and log-std stacked on the channel axis [B, ..., 2C]; x [B, ..., C] on the levels
    k/255. Returns [B]."""
    mean, log_std = _split_gaussian(out)
    return _sum_per_example(discretized_gaussian_log_prob(x, mean, log_std, (0.0, 1.0)))

  @staticmethod
  def mean(out: jax.Array) -> jax.Array:
    return jnp.clip(_split_gaussian(out)[0], 0.0, 1.0)


def gaussian_kl_to_standard(mean: jax.Array, log_std: jax.Array) -> jax.Array:
  """KL(N(mean, std^2) || N(0, I)) summed over the last axis."""
  return jnp.sum(0.5 * (mean**2 + jnp.exp(2 * log_std) - 1.0) - log_std, axis=-1)

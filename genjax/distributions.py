"""Gaussian log-likelihoods shared by the model families, elementwise (callers sum over the axes they
need), with the standard deviation given as its log.

  gaussian_log_prob               log N(x; mean, std^2), the density of continuous x
  discretized_gaussian_log_prob   log P(x) for x on the evenly spaced grey levels of an image: the
                                  mass of N(mean, std^2) in the bin around x (Ho et al. 2020, eq. 13),
                                  computed in log space so that a pixel far in the tails keeps its
                                  true value and gradient.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import log_ndtr

_LOG_2PI = math.log(2 * math.pi)


def gaussian_log_prob(
  x: jax.Array, mean: jax.Array | float, log_std: jax.Array | float
) -> jax.Array:
  """log N(x; mean, std^2) = -((x - mean) / std)^2 / 2 - log(2 pi) / 2 - log std, elementwise; the
  arguments broadcast together (mean = 0., log_std = 0. gives the standard normal)."""
  standardized = (x - mean) * jnp.exp(-log_std)
  return -0.5 * (standardized**2 + _LOG_2PI) - log_std


def _log_sub_exp(log_big: jax.Array, log_small: jax.Array) -> jax.Array:
  """log(exp(log_big) - exp(log_small)) for log_small <= log_big: log_big + log(1 - exp(gap)),
  gap = log_small - log_big. The gap is held at <= -1e-12 so that two values equal in float
  precision (a bin far narrower than the std) give a mass 1e-12 exp(log_big) with a finite
  gradient rather than log 0."""
  return log_big + jnp.log(-jnp.expm1(jnp.minimum(log_small - log_big, -1e-12)))


def discretized_gaussian_log_prob(
  x: jax.Array,
  mean: jax.Array,
  log_std: jax.Array,
  value_range: tuple[float, float],
  levels: int = 256,
) -> jax.Array:
  """log P(x) under N(mean, std^2) discretized to `levels` evenly spaced values of value_range.

  With (low, high) = value_range, the levels are x_k = low + k w, k = 0 .. levels - 1, bin width
  w = (high - low) / (levels - 1), and
    P(x_k) = Phi(b) - Phi(a),   a = (x_k - w/2 - mean) / std,   b = (x_k + w/2 - mean) / std,
  with a = -inf for k = 0 and b = +inf for k = levels - 1, so the probabilities of the levels sum
  to one. The difference is taken in log space on the side of the mean where it does not cancel:
    a > 0:   log P = log(Phi(-a) - Phi(-b)) = log Phi(-a) + log(1 - Phi(-b) / Phi(-a)),
    a <= 0:  log P = log(Phi(b) - Phi(a))   = log Phi(b)  + log(1 - Phi(a) / Phi(b)),
  each log Phi from log_ndtr, which stays accurate (with its gradient) many stds into the tails.
  The bin is [x - w/2, x + w/2] around x itself; only the choice of an edge bin uses the level
  index k = round((x - low) / w), so it holds for any value_range, for x a rounding error off the
  first or last level, and for x beyond the range. A bin much narrower than the std (w / std of
  1e-4) keeps only ~1e-3 relative accuracy in float32, from cancellation, as any CDF difference.

  x, mean, log_std: broadcastable arrays (e.g. [B, H, W, C] each), x on the levels. Returns log P(x),
  elementwise, in nats, with their broadcast shape.
  """
  low, high = value_range
  bin_width = (high - low) / (levels - 1)
  half_bin = 0.5 * bin_width
  inv_std = jnp.exp(-log_std)
  centered = x - mean
  upper = (centered + half_bin) * inv_std
  lower = (centered - half_bin) * inv_std
  log_cdf_upper = log_ndtr(upper)  # log P(X <= x + w/2): the whole mass of the k = 0 bin
  log_sf_lower = log_ndtr(-lower)  # log P(X > x - w/2): the whole mass of the last bin
  log_interior = jnp.where(
    lower > 0,
    _log_sub_exp(log_sf_lower, log_ndtr(-upper)),
    _log_sub_exp(log_cdf_upper, log_ndtr(lower)),
  )
  level = jnp.round((x - low) / bin_width)
  return jnp.where(
    level <= 0, log_cdf_upper, jnp.where(level >= levels - 1, log_sf_lower, log_interior)
  )

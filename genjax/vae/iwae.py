"""The importance-weighted bound of Burda et al. 2016, evaluated in bounded memory."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from genjax.distributions import gaussian_log_prob


def iwae_log_likelihood(
  log_joint_fn, mean: jax.Array, log_std: jax.Array, rng: jax.Array, num_samples: int, chunk: int
) -> jax.Array:
  """log (1/k) sum_i p(x, z_i) / q(z_i | x) with z_i ~ q, for every example; [B].

  log_joint_fn(z [B, L]) -> log p(x, z) [B]. Samples are drawn `chunk` at a time inside a
  lax.scan that keeps a running logsumexp, so memory is O(B * chunk), not O(B * k).
  """
  if num_samples % chunk:
    raise ValueError(f"eval.iwae_samples={num_samples} must be a multiple of eval.iwae_chunk={chunk}.")

  def one_chunk(running, key):
    eps = jax.random.normal(key, (chunk, *mean.shape), mean.dtype)
    z = mean + jnp.exp(log_std) * eps  # [chunk, B, L]
    log_q = jnp.sum(gaussian_log_prob(z, mean, log_std), axis=-1)
    log_w = jax.vmap(log_joint_fn)(z) - log_q  # [chunk, B]
    return jnp.logaddexp(running, jax.nn.logsumexp(log_w, axis=0)), None

  keys = jax.random.split(rng, num_samples // chunk)
  total, _ = jax.lax.scan(one_chunk, jnp.full(mean.shape[:1], -jnp.inf, mean.dtype), keys)
  return total - math.log(num_samples)

"""Gaussian data, for which every process's exact noise prediction is known in closed form.

For data x_0 ~ N(mu, Sigma), x_t = alpha_t x_0 + sigma_t z ~ N(alpha_t mu, C_t) with
C_t = alpha_t^2 Sigma + sigma_t^2 I, so the score is -C_t^{-1} (x - alpha_t mu) and the exact
noise prediction is eps(x, t) = -sigma_t score = sigma_t C_t^{-1} (x - alpha_t mu). Driving a
sampler with it isolates the sampler's own error (discretization, bias) from the network's: the
tests check every sampler against the data's moments, and scripts/sampler_error.py measures each
sampler's error against its number of network evaluations.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from genjax.diffusion.processes import Process
from genjax.diffusion.samplers import EpsFn


def gaussian_eps(process: Process, mean: np.ndarray, cov: np.ndarray) -> EpsFn:
  """(x [B, D], t [B]) -> the exact eps for data N(mean [D], cov [D, D]) under `process`."""
  mean, cov = jnp.asarray(mean), jnp.asarray(cov)

  def eps(x: jax.Array, t: jax.Array) -> jax.Array:
    alpha, sigma = process.marginal(t)
    cov_t = alpha[:, None, None] ** 2 * cov + sigma[:, None, None] ** 2 * jnp.eye(len(mean))
    centred = x - alpha[:, None] * mean
    return sigma[:, None] * jnp.linalg.solve(cov_t, centred[..., None])[..., 0]

  return eps


def image_like_gaussian(dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """A random N(mu, Sigma) in `dim` dimensions whose variances fall off as 1/k (k = 1..dim, from
  1 down to 1/dim) along random orthogonal directions, like the spectra of natural images; the mean
  has entries in [-0.5, 0.5]. Float32 arrays."""
  rng = np.random.default_rng(seed)
  rotation, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
  variances = 1.0 / np.arange(1, dim + 1)
  cov = (rotation * variances) @ rotation.T
  mean = rng.uniform(-0.5, 0.5, size=dim)
  return mean.astype(np.float32), ((cov + cov.T) / 2).astype(np.float32)

"""Latent diffusion's z-scaling (Rombach et al. 2022, Sec. 4.3.2 and their `scale_by_std`).

A diffusion model trained on an autoencoder's latents assumes they have roughly unit variance;
latent diffusion multiplies them by s = 1 / std(z), the standard deviation taken over every element
of a batch of encoded training images, and divides its samples by s before decoding.

Here z is the posterior mean of q(z|x) (deterministic; latent diffusion takes one sample of the
posterior of its first batch). With a small KL weight the posterior standard deviations are far
below the spread of the means, so the two scales nearly agree; a stage that encodes with samples
can compute it on samples with `latent_scale` itself.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def latent_scale(latents: jax.Array, weights: jax.Array | None = None) -> jax.Array:
  """s = 1 / std(z) for z [B, ...], pooled over the examples and all their latent dimensions:
  std^2 = sum_b w_b sum_d (z_bd - mu)^2 / (D sum_b w_b), mu = sum_b w_b sum_d z_bd / (D sum_b w_b),
  with weights w [B] (1 by default; 0 leaves out an example, e.g. evaluation's padding rows).
  Returns a scalar; s * z then has unit (weighted) standard deviation."""
  flat = latents.reshape(latents.shape[0], -1)
  if weights is None:
    weights = jnp.ones(flat.shape[:1], flat.dtype)
  count = jnp.sum(weights) * flat.shape[1]
  mean = jnp.sum(weights[:, None] * flat) / count
  variance = jnp.sum(weights[:, None] * (flat - mean) ** 2) / count
  return jax.lax.rsqrt(variance)


def latent_scale_factor(family, params, images: jax.Array) -> float:
  """s = 1 / std of the posterior means of images [N, H, W, C] (in data.value_range) under a
  VAE family's network with parameters params (genjax.families.vae.VAEFamily)."""
  mean, _ = jax.jit(family._encode)(params, images)
  return float(latent_scale(mean))

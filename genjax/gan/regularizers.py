"""Discriminator and generator regularizers.

  gradient_penalty  (Gulrajani et al. 2017, WGAN-GP)  E[(||grad_x D(x_hat)||_2 - 1)^2] at
                    x_hat = eps * x_real + (1 - eps) * x_fake, eps ~ U[0, 1] per example
  r1_penalty        (Mescheder et al. 2018)           E[||grad_x D(x_real)||_2^2]; the loss adds
                    gamma / 2 times it
  orthogonal_regularization (Brock et al. 2019, BigGAN)
                    sum over kernels W [fan_in, fan_out] of ||W^T W * (1 - I)||_F^2

`critic` is x [B, ...] -> D(x) [B]. Examples must not interact inside the critic (no batch norm),
so the gradient of sum_b D(x_b) with respect to x_b is the per-example gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

Critic = Callable[[jax.Array], jax.Array]


def _per_example_gradient_sq_norm(critic: Critic, x: jax.Array) -> jax.Array:
  """||grad_x D(x_b)||_2^2 for every example; [B]."""
  grads = jax.grad(lambda inputs: jnp.sum(critic(inputs)))(x)
  return jnp.sum(grads.reshape(grads.shape[0], -1) ** 2, axis=1)


def gradient_penalty(critic: Critic, real: jax.Array, fake: jax.Array, eps: jax.Array) -> jax.Array:
  """WGAN-GP penalty: mean_b (||grad D(x_hat_b)|| - 1)^2; eps [B] in [0, 1] mixes real and fake."""
  eps = eps.reshape(-1, *([1] * (real.ndim - 1)))
  interpolates = eps * real + (1.0 - eps) * fake
  # sqrt has an infinite derivative at 0; the epsilon keeps the penalty's own gradient finite.
  norms = jnp.sqrt(_per_example_gradient_sq_norm(critic, interpolates) + 1e-12)
  return jnp.mean((norms - 1.0) ** 2)


def r1_penalty(critic: Critic, real: jax.Array) -> jax.Array:
  """R1: mean_b ||grad_x D(x_b)||^2 on real data (multiply by gamma / 2 in the loss)."""
  return jnp.mean(_per_example_gradient_sq_norm(critic, real))


def orthogonal_regularization(params: Any) -> jax.Array:
  """BigGAN's off-diagonal orthogonality penalty summed over every leaf named `kernel` (dense and
  convolution weights; convolution kernels [kh, kw, in, out] are read as [kh * kw * in, out]).
  Biases, norm scales and class embeddings are not penalized, as in BigGAN."""
  total = jnp.zeros(())
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    if getattr(path[-1], "key", None) != "kernel" or leaf.ndim < 2:
      continue
    matrix = leaf.reshape(-1, leaf.shape[-1])
    gram = matrix.T @ matrix
    off_diagonal = gram * (1.0 - jnp.eye(gram.shape[0], dtype=gram.dtype))
    total = total + jnp.sum(off_diagonal**2)
  return total

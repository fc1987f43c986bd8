"""Precision and recall (Kynkaenniemi et al. 2019) and density and coverage (Naeem et al. 2020).

Each real feature r_j gets the radius rho_k(r_j): the distance to its k-th nearest other real
feature (likewise each fake feature f_i in the fake set). With M fake and N real features:

  precision = (1/M) sum_i 1[ exists j: |f_i - r_j| <= rho_k(r_j) ]   (fakes on the real manifold)
  recall    = (1/N) sum_j 1[ exists i: |r_j - f_i| <= rho_k(f_i) ]   (reals on the fake manifold)
  density   = (1/(k M)) sum_i sum_j 1[ |f_i - r_j| <= rho_k(r_j) ]   (~1 if fake ~ real; may be > 1)
  coverage  = (1/N) sum_j 1[ min_i |f_i - r_j| <= rho_k(r_j) ]       (real balls holding a fake)

The papers' defaults are k = 3 for precision/recall and k = 5 for density/coverage. Distances come
from |a|^2 + |b|^2 - 2 a.b (float32, HIGHEST-precision matmuls) over row blocks of `block_size`, so
memory is O(block_size * N), not O(N * M).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

_HIGHEST = jax.lax.Precision.HIGHEST


def _squared_distances(a: jax.Array, b: jax.Array) -> jax.Array:
  """|a_i - b_j|^2 for a [m, D], b [n, D] -> [m, n] (clipped at 0 against round-off)."""
  cross = jnp.matmul(a, b.T, precision=_HIGHEST)
  return jnp.maximum(jnp.sum(a * a, -1)[:, None] + jnp.sum(b * b, -1)[None, :] - 2.0 * cross, 0.0)


def _blocks(features: jax.Array, block_size: int) -> tuple[jax.Array, jax.Array]:
  """features [N, D] -> ([N_blocks, block, D] zero padded, mask [N_blocks, block])."""
  count = features.shape[0]
  num_blocks = -(-count // block_size)
  padded = (
    jnp.zeros((num_blocks * block_size, features.shape[1]), features.dtype).at[:count].set(features)
  )
  mask = jnp.arange(num_blocks * block_size) < count
  return padded.reshape(num_blocks, block_size, -1), mask.reshape(num_blocks, block_size)


@functools.partial(jax.jit, static_argnames=("k", "block_size"))
def kth_neighbour_radii(features: jax.Array, k: int, block_size: int = 1024) -> jax.Array:
  """Squared distance of every row of features [N, D] to its k-th nearest other row; [N].

  The row itself is at distance 0 and is the first of the k + 1 smallest distances.
  """
  blocks, _ = _blocks(features, block_size)

  def radii(block):
    smallest = -jax.lax.top_k(-_squared_distances(block, features), k + 1)[0]
    return smallest[:, k]

  return jax.lax.map(radii, blocks).reshape(-1)[: features.shape[0]]


@functools.partial(jax.jit, static_argnames=("block_size",))
def _ball_statistics(fake: jax.Array, real: jax.Array, real_radii: jax.Array, block_size: int):
  """For fake rows against the balls B(r_j, rho(r_j)): per fake row, whether it lies in any ball and
  in how many; per real row, the smallest squared distance to a fake row."""
  blocks, masks = _blocks(fake, block_size)

  def step(nearest_fake, block_and_mask):
    block, mask = block_and_mask
    distances = _squared_distances(block, real)  # [block, N]
    inside = distances <= real_radii[None, :]
    nearest = jnp.min(jnp.where(mask[:, None], distances, jnp.inf), axis=0)
    return jnp.minimum(nearest_fake, nearest), (jnp.any(inside, axis=1), jnp.sum(inside, axis=1))

  nearest_fake, (in_any, counts) = jax.lax.scan(
    step, jnp.full(real.shape[:1], jnp.inf), (blocks, masks)
  )
  count = fake.shape[0]
  return in_any.reshape(-1)[:count], counts.reshape(-1)[:count], nearest_fake


def precision_recall_density_coverage(
  real: np.ndarray,
  fake: np.ndarray,
  k_precision_recall: int = 3,
  k_density_coverage: int = 5,
  block_size: int = 1024,
) -> dict[str, float]:
  """{"precision", "recall", "density", "coverage"} of fake features [M, D] against real [N, D]."""
  real, fake = jnp.asarray(real, jnp.float32), jnp.asarray(fake, jnp.float32)
  if real.ndim != 2 or real.shape[1:] != fake.shape[1:]:
    raise ValueError(
      f"PRDC needs feature matrices [N, D] of one space, got {real.shape} and {fake.shape}."
    )
  largest_k = max(k_precision_recall, k_density_coverage)
  if min(real.shape[0], fake.shape[0]) <= largest_k:
    raise ValueError(
      f"PRDC with k={largest_k} needs more than {largest_k} samples per set, got "
      f"{real.shape[0]} real and {fake.shape[0]} fake."
    )
  block_size = min(block_size, max(real.shape[0], fake.shape[0]))
  real_pr = kth_neighbour_radii(real, k_precision_recall, block_size)
  fake_pr = kth_neighbour_radii(fake, k_precision_recall, block_size)
  real_dc = kth_neighbour_radii(real, k_density_coverage, block_size)
  in_real_manifold, _, _ = _ball_statistics(fake, real, real_pr, block_size)
  in_fake_manifold, _, _ = _ball_statistics(real, fake, fake_pr, block_size)
  _, ball_counts, nearest_fake = _ball_statistics(fake, real, real_dc, block_size)
  return {
    "precision": float(jnp.mean(in_real_manifold)),
    "recall": float(jnp.mean(in_fake_manifold)),
    "density": float(jnp.sum(ball_counts) / (k_density_coverage * fake.shape[0])),
    "coverage": float(jnp.mean(nearest_fake <= real_dc)),
  }

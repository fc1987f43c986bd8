"""Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2 with a cubic polynomial kernel.

  k(x, y) = (x . y / D + 1)^3                                   (D = feature dimension)
  MMD^2_u(X, Y) = sum_{i != j} k(x_i, x_j) / (m (m - 1)) + sum_{i != j} k(y_i, y_j) / (m (m - 1))
                  - 2 sum_{i, j} k(x_i, y_j) / m^2               (m rows of each set)

Protocol used here: both feature sets are cut into B = min(N_real, N_fake) // subset_size DISJOINT
subsets of `subset_size` rows (after a permutation drawn from `seed`); KID is the mean of the B
unbiased estimates and its standard error is their sample standard deviation / sqrt(B). Because the
subsets are disjoint the estimates are independent, so this standard error is honest (the common
"100 random subsets drawn with replacement" overlaps subsets; its spread is not a standard
error). Kernel sums are float32 matmuls at HIGHEST precision, one subset at a time (memory
O(subset_size^2)).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

_HIGHEST = jax.lax.Precision.HIGHEST


def polynomial_kernel(x: jax.Array, y: jax.Array) -> jax.Array:
  """k(x, y) = (x . y / D + 1)^3 for x [m, D], y [n, D]; returns [m, n]."""
  return (jnp.matmul(x, y.T, precision=_HIGHEST) / x.shape[-1] + 1.0) ** 3


def unbiased_mmd2(x: jax.Array, y: jax.Array) -> jax.Array:
  """The unbiased MMD^2 estimate between x [m, D] and y [m, D] under the cubic polynomial kernel."""
  m = x.shape[0]
  k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
  off_diagonal = m * (m - 1)
  return (
    (jnp.sum(k_xx) - jnp.trace(k_xx)) / off_diagonal
    + (jnp.sum(k_yy) - jnp.trace(k_yy)) / off_diagonal
    - 2.0 * jnp.sum(k_xy) / (m * m)
  )


@jax.jit
def _subset_estimates(real_subsets: jax.Array, fake_subsets: jax.Array) -> jax.Array:
  return jax.lax.map(lambda pair: unbiased_mmd2(*pair), (real_subsets, fake_subsets))


def kernel_inception_distance(
  real: np.ndarray, fake: np.ndarray, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float, int]:
  """(KID, its standard error, number of disjoint subsets B) for features real [N, D], fake [M, D].

  subset_size is lowered to min(N, M) when either set is smaller (then B = 1 and the standard
  error is NaN: one estimate has no spread).
  """
  real, fake = np.asarray(real, np.float32), np.asarray(fake, np.float32)
  if real.ndim != 2 or real.shape[1:] != fake.shape[1:]:
    raise ValueError(
      f"KID needs feature matrices [N, D] of one space, got {real.shape} and {fake.shape}."
    )
  size = min(subset_size, len(real), len(fake))
  if size < 2:
    raise ValueError(f"KID needs at least 2 samples per set, got {len(real)} and {len(fake)}.")
  count = min(len(real), len(fake)) // size
  rng = np.random.default_rng(seed)
  real_subsets = real[rng.permutation(len(real))[: count * size]].reshape(count, size, -1)
  fake_subsets = fake[rng.permutation(len(fake))[: count * size]].reshape(count, size, -1)
  estimates = np.asarray(_subset_estimates(real_subsets, fake_subsets), np.float64)
  error = float(np.std(estimates, ddof=1) / math.sqrt(count)) if count > 1 else float("nan")
  return float(np.mean(estimates)), error, count

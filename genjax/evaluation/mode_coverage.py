"""Mode coverage of Gaussian mixtures (the metric of Metz et al. 2017 and Srivastava et al. 2017).

A generated point is high quality when it lies within 3 standard deviations of its nearest mode;
a mode is covered when it receives at least `min_fraction` of the high-quality points a perfect
generator would give it (N / num_modes), which follows PacGAN's "at least 1/5 of the expected
count" rule rather than counting a single stray point as coverage.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def mode_statistics(
  points: jax.Array, modes: jax.Array | np.ndarray, std: float, min_fraction: float = 0.2
) -> dict[str, jax.Array]:
  """points [N, D], modes [K, D] -> {"high_quality" [N] in {0, 1}, "mode_distance" [N] (Euclidean
  distance to the nearest mode), "modes_covered" scalar count of covered modes}, in points.dtype."""
  modes = jnp.asarray(modes, points.dtype)
  distances = jnp.linalg.norm(points[:, None, :] - modes[None], axis=-1)  # [N, K]
  nearest = jnp.argmin(distances, axis=1)
  mode_distance = jnp.min(distances, axis=1)
  high_quality = (mode_distance <= 3.0 * std).astype(points.dtype)
  counts = jnp.zeros(modes.shape[0], points.dtype).at[nearest].add(high_quality)
  needed = min_fraction * points.shape[0] / modes.shape[0]
  return {
    "high_quality": high_quality,
    "mode_distance": mode_distance,
    "modes_covered": jnp.sum(counts >= needed).astype(points.dtype),
  }

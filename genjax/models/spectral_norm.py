"""Spectral normalization (Miyato et al. 2018) as a switchable Flax layer wrapper.

W_sn = W / sigma(W), with sigma(W) the largest singular value of the kernel read as a matrix
[fan_in, fan_out] (convolution kernels [kh, kw, in, out] as [kh * kw * in, out]; embeddings
[classes, features] as they are). sigma is estimated by power iteration,
  v <- normalize(u W^T),  u <- normalize(v W),  sigma ~= v W u^T,
carrying u ([1, fan_out], no gradient) from one call to the next so one iteration per training
step suffices. flax.linen.SpectralNorm does the arithmetic; this module fixes where its state
lives: the `spectral_norm` collection, which genjax keeps in TrainState.model_state (so u is
checkpointed and restored with the rest of the state) and never hands to the optimizer.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn

SPECTRAL_COLLECTION = "spectral_norm"


def spectral_normalized(
  layer: nn.Module, enabled: bool, update_stats: bool, power_iterations: int = 1
) -> Callable[..., Any]:
  """`layer`, with its kernel divided by its estimated spectral norm when `enabled`.

  Call inside a parent's @nn.compact method. update_stats=True stores the new power-iteration
  vector u (pass mutable=[SPECTRAL_COLLECTION] to apply); False reuses the stored one.
  """
  if not enabled:
    return layer
  wrapper = nn.SpectralNorm(layer, n_steps=power_iterations, collection_name=SPECTRAL_COLLECTION)
  return functools.partial(wrapper, update_stats=update_stats)


def spectral_norm_estimates(model_state: Any) -> dict[str, float]:
  """The stored sigma estimates: {"<module path>/<layer>/kernel": sigma}, from a variables
  dict that holds a `spectral_norm` collection (at any depth)."""
  estimates = {}

  def visit(tree: Any, prefix: str) -> None:
    for key, value in tree.items():
      path = f"{prefix}/{key}" if prefix else str(key)
      if isinstance(value, dict) or hasattr(value, "items"):
        visit(value, path)
      elif path.endswith("/sigma"):
        estimates[path.removesuffix("/sigma")] = float(value)

  visit(model_state, "")
  return estimates

"""Mixed precision (config.precision): the compute dtype of the networks a family trains.

"float32"   network.apply(variables, ...) exactly as written.
"bfloat16"  the same network, computed in bfloat16 where the flops are:
  * the floating variables are cast to bfloat16 on the way in (the spectral-norm vectors and
    StyleGAN2's buffers too, so a spectrally normalised kernel stays bfloat16), except the
    collections of FLOAT32_COLLECTIONS (batch-norm statistics). The cast is differentiable, so
    gradients with respect to the float32 parameters are float32, and the parameters, optimizer
    state and EMA stay float32;
  * the floating inputs of every compute layer (COMPUTE_LAYERS: dense, convolution, embedding,
    StyleGAN2's equalised dense and convolution, DCGAN's transposed convolution) are cast to
    bfloat16, so their matmuls and convolutions have bfloat16 operands. A float32 value that
    meets a bfloat16 one (a time embedding, a positional embedding) promotes the result to
    float32 under jnp's rules, but the next compute layer casts it back;
  * flax's normalisation layers and genjax's GroupNorm (genjax.models.normalization) compute their
    means, variances and rsqrt in float32 by themselves (flax: force_float32_reductions, on by
    default) and return bfloat16 for bfloat16 inputs and parameters; the batch-norm statistics
    they read and write stay float32 (FLOAT32_COLLECTIONS);
  * every floating output (the network's, and the updated collections that mutable= returns) is
    cast to float32, so losses and their reductions are float32.
Integer inputs (labels, token ids) and PRNG keys pass unchanged. Softmax runs on float32 logits
inside the attention layers themselves (genjax.models.attention, genjax.models.unet).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.models.gan import TransposedConv4x4
from genjax.models.stylegan2 import Conv as EqualizedConv
from genjax.models.stylegan2 import Dense as EqualizedDense

PRECISIONS = ("float32", "bfloat16")  # config.precision
FLOAT32_COLLECTIONS = ("batch_stats",)  # normalisation statistics, kept float32
COMPUTE_LAYERS = (
  nn.Dense, nn.DenseGeneral, nn.Einsum, nn.Conv, nn.ConvTranspose, nn.ConvLocal, nn.Embed,
  EqualizedDense, EqualizedConv, TransposedConv4x4,
)

NetworkApply = Callable[..., Any]  # (module, variables, *args, **kwargs) -> module.apply's result


def _cast_floating(tree: Any, dtype: jnp.dtype) -> Any:
  """`tree` with every floating array leaf cast to dtype; other leaves (ints, bools, keys,
  Python scalars, strings, None) as they are."""

  def cast(leaf):
    floating = hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating)
    return leaf.astype(dtype) if floating else leaf

  return jax.tree.map(cast, tree)


def _bfloat16_inputs_interceptor(next_fun, args, kwargs, context):
  """Calls a COMPUTE_LAYERS module's __call__ with its floating arguments cast to bfloat16."""
  if context.method_name == "__call__" and isinstance(context.module, COMPUTE_LAYERS):
    args, kwargs = _cast_floating((args, kwargs), jnp.bfloat16)
  return next_fun(*args, **kwargs)


def _bfloat16_apply(module: nn.Module, variables, *args, **kwargs):
  variables = {
    name: collection if name in FLOAT32_COLLECTIONS else _cast_floating(collection, jnp.bfloat16)
    for name, collection in variables.items()
  }
  with nn.intercept_methods(_bfloat16_inputs_interceptor):
    outputs = module.apply(variables, *args, **kwargs)
  return _cast_floating(outputs, jnp.float32)


def _float32_apply(module: nn.Module, variables, *args, **kwargs):
  return module.apply(variables, *args, **kwargs)


def network_apply(precision: str) -> NetworkApply:
  """The `module.apply` of a precision: apply(module, variables, *args, **kwargs) takes
  module.apply's arguments and returns its result with float32 floating leaves (see the module
  docstring). Raises ValueError for a precision not in PRECISIONS."""
  if precision not in PRECISIONS:
    raise ValueError(
      f"Unknown config.precision {precision!r}; use one of {', '.join(map(repr, PRECISIONS))}."
    )
  return _bfloat16_apply if precision == "bfloat16" else _float32_apply

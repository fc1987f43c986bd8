"""A 2-D convolution whose kernel gradient is fast on XLA:CPU.

XLA:CPU lowers the gradient of a convolution with respect to its kernel to a convolution whose
"window" is the whole image, which runs at a fraction of the machine's matmul rate: for a 3x3
convolution of a [64, 32, 32, 128] batch to 128 channels it takes about 3.3x the forward pass
(about 1.5x on the forward pass is what PyTorch's oneDNN needs). `conv_general_dilated` below is
lax's convolution with the same forward pass and input gradient, and a kernel gradient computed as
one matmul per kernel tap:

  dL/dw[i, j, c, o] = sum over b, p, q of x_pad[b, s p + i, s q + j, c] dL/dy[b, p, q, o],

accumulated over chunks of the batch inside `lax.scan`, so each chunk's operands stay in cache.
Measured on the 2-core CPU (fwd + bwd, batch 64, 3x3, stride 1): 1.4x faster at 32x32x128 ->
128 and 1.2x at 32x32x64 -> 64; for stride-2 convolutions lax's gradient was as fast or faster, so
they keep it. It is used on the CPU backend only; GPU/TPU keep lax's own gradient (cuDNN and the
TPU compiler handle it well). `Conv` is flax's nn.Conv using it; the parameters are unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

_NHWC = ("NHWC", "HWIO", "NHWC")
_IMAGES_PER_CHUNK = 4  # measured fastest at 32x32x128 on a 2-core CPU (vs 1, 16 or the whole batch)


def _lax_conv(x, w, strides, pads):
  return jax.lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_NHWC)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(x: jax.Array, w: jax.Array, strides: tuple[int, int], pads: tuple) -> jax.Array:
  return _lax_conv(x, w, strides, pads)


def _conv_forward(x, w, strides, pads):
  return _lax_conv(x, w, strides, pads), (x, w)


def _conv_backward(strides, pads, residuals, dy):
  x, w = residuals
  _, input_vjp = jax.vjp(lambda x: _lax_conv(x, w, strides, pads), x)
  (dx,) = input_vjp(dy)
  return dx, kernel_gradient(x, dy, w.shape, strides, pads)


_conv.defvjp(_conv_forward, _conv_backward)


def kernel_gradient(
  x: jax.Array, dy: jax.Array, kernel_shape: Sequence[int], strides: tuple[int, int], pads: tuple
) -> jax.Array:
  """dL/dw [kh, kw, C, O] of y = conv(x, w) from x [B, H, W, C] and dL/dy [B, P, Q, O]."""
  kh, kw, channels, out_channels = kernel_shape
  (sh, sw), ((top, bottom), (left, right)) = strides, pads
  x = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
  batch, out_h, out_w = dy.shape[:3]
  chunk = _IMAGES_PER_CHUNK if batch % _IMAGES_PER_CHUNK == 0 else 1
  # Chunk k holds images k, k + B/chunk, ...: with a batch sharded over devices every chunk is
  # spread evenly over them.
  x_chunks = jnp.moveaxis(x.reshape(chunk, batch // chunk, *x.shape[1:]), 1, 0)
  dy_chunks = jnp.moveaxis(dy.reshape(chunk, batch // chunk, out_h * out_w, out_channels), 1, 0)

  def accumulate(total, chunk_inputs):
    x_chunk, dy_chunk = chunk_inputs
    dy_rows = dy_chunk.reshape(-1, out_channels)
    taps = []
    for i in range(kh):
      for j in range(kw):
        window = x_chunk[:, i : i + sh * (out_h - 1) + 1 : sh, j : j + sw * (out_w - 1) + 1 : sw]
        taps.append(
          jax.lax.dot_general(window.reshape(-1, channels), dy_rows, (((0,), (0,)), ((), ())))
        )
    return total + jnp.stack(taps), None

  zeros = jnp.zeros((kh * kw, channels, out_channels), jnp.result_type(x, dy))
  total, _ = jax.lax.scan(accumulate, zeros, (x_chunks, dy_chunks))
  return total.reshape(kh, kw, channels, out_channels)


def conv_general_dilated(
  lhs: jax.Array,
  rhs: jax.Array,
  window_strides: Sequence[int],
  padding,
  lhs_dilation=None,
  rhs_dilation=None,
  dimension_numbers=None,
  feature_group_count: int = 1,
  batch_group_count: int = 1,
  precision=None,
  preferred_element_type=None,
) -> jax.Array:
  """lax.conv_general_dilated's signature; 2-D stride-1 NHWC/HWIO convolutions without dilation
  or groups get the fast kernel gradient on CPU, everything else goes to lax unchanged."""
  plain = (
    jax.default_backend() == "cpu"
    and lhs.ndim == 4
    and all(stride == 1 for stride in window_strides)
    and all(d in (None, 1) for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
    and feature_group_count == 1
    and batch_group_count == 1
    and precision is None
    and preferred_element_type is None
    and _is_nhwc(dimension_numbers, lhs.shape, rhs.shape)
  )
  if not plain:
    return jax.lax.conv_general_dilated(
      lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
      feature_group_count, batch_group_count, precision, preferred_element_type,
    )
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
  pads = tuple((int(low), int(high)) for low, high in padding)
  return _conv(lhs, rhs, tuple(int(s) for s in window_strides), pads)


def _is_nhwc(dimension_numbers, lhs_shape, rhs_shape) -> bool:
  if dimension_numbers is None:
    return False
  expected = jax.lax.conv_dimension_numbers(lhs_shape, rhs_shape, _NHWC)
  given = jax.lax.conv_dimension_numbers(lhs_shape, rhs_shape, dimension_numbers)
  return given == expected


Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)

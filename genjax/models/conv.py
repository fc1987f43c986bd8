"""A 2-D convolution whose gradients are fast on XLA:CPU.

XLA:CPU runs the gradients of a convolution at a fraction of the machine's matmul rate.
`conv_general_dilated` below has lax's signature and values, and on the CPU backend it computes
NHWC convolutions without dilation or groups in one of two ways whose kernel gradients are
matmuls, differentiable in forward and reverse mode to any order:

- stride 1 (`_conv`): lax's convolution with a custom JVP,
    d conv(x, w) = conv(dx, w) + conv(x, dw),
  whose part linear in the kernel tangent is written as the transpose of `kernel_gradient`, one
  matmul per kernel tap,
    dL/dw[i, j, c, o] = sum over b, p, q of x_pad[b, s p + i, s q + j, c] dL/dy[b, p, q, o],
  accumulated over chunks of the batch inside `lax.scan`, so each chunk's operands stay in cache.
  Reverse mode transposes the JVP: lax's input gradient, and kernel_gradient's matmuls (the
  transpose of the transpose). Forward mode (jax.jvp, e.g. the probability-flow ODE's
  divergence, which perturbs the input) is lax's convolution of dx; a kernel tangent costs the
  per-tap matmuls.
  XLA:CPU's own kernel gradient of a 3x3 convolution of a [64, 32, 32, 128] batch to 128 channels
  takes about 3.3x the forward pass. Measured on the 2-core CPU (fwd + bwd, batch 64, 3x3): 1.4x
  faster at 32x32x128 -> 128 and 1.2x at 32x32x64 -> 64.
- stride > 1, kernel a multiple of the stride: im2col after a space-to-depth (`_im2col_conv`),
  one matmul of the stacked patches with w.reshape(kh kw C, O). The patches take kh kw / (sh sw)
  times the input's memory (4x for the 4x4 stride-2 convolutions of DCGAN). The critic gradient
  of wgan_gp_mnist with its gradient penalty (second-order gradients), batch 64, takes 122 ms
  this way and 535 ms with lax's convolutions on the 2-core CPU. First-order gradients gain
  nothing: XLA:CPU's strided convolutions are as fast there. Other strided convolutions go to lax.

GPU/TPU keep lax's convolution (cuDNN and the TPU compiler handle it well). `Conv` is flax's
nn.Conv using it; the parameters are unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

_NHWC = ("NHWC", "HWIO", "NHWC")
_IMAGES_PER_CHUNK = 4  # measured fastest at 32x32x128 on a 2-core CPU (vs 1, 16 or the whole batch)


def _lax_conv(x, w, strides, pads):
  return jax.lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_NHWC)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _conv(x: jax.Array, w: jax.Array, strides: tuple[int, int], pads: tuple) -> jax.Array:
  return _lax_conv(x, w, strides, pads)


def _conv_jvp(strides, pads, primals, tangents):
  """conv(x, w) and its tangent conv(dx, w) + conv(x, dw), leaving out symbolically zero terms."""
  x, w = primals
  dx, dw = tangents
  terms = []
  if type(dx) is not SymbolicZero:
    terms.append(_conv(dx, w, strides, pads))
  if type(dw) is not SymbolicZero:
    terms.append(_kernel_tangent(x, dw, strides, pads))
  return _conv(x, w, strides, pads), sum(terms[1:], start=terms[0])


_conv.defjvp(_conv_jvp, symbolic_zeros=True)


def _kernel_tangent(
  x: jax.Array, dw: jax.Array, strides: tuple[int, int], pads: tuple
) -> jax.Array:
  """conv(x, dw), linear in dw, as the transpose of dw = kernel_gradient(x, dy): reverse mode
  transposes it back into kernel_gradient's per-tap matmuls."""
  output = jax.eval_shape(lambda: _lax_conv(x, dw, strides, pads))
  transpose = jax.linear_transpose(
    lambda dy: kernel_gradient(x, dy, dw.shape, strides, pads), output
  )
  (dy,) = transpose(dw)
  return dy


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

  # Rematerialized, so that differentiating the transpose of this function (_kernel_tangent)
  # keeps the windows inside the scan rather than storing kh kw shifted copies of x.
  @functools.partial(jax.checkpoint, prevent_cse=False)
  def chunk_taps(x_chunk, dy_chunk):
    dy_rows = dy_chunk.reshape(-1, out_channels)
    taps = []
    for i in range(kh):
      for j in range(kw):
        window = x_chunk[:, i : i + sh * (out_h - 1) + 1 : sh, j : j + sw * (out_w - 1) + 1 : sw]
        taps.append(
          jax.lax.dot_general(window.reshape(-1, channels), dy_rows, (((0,), (0,)), ((), ())))
        )
    return jnp.stack(taps)

  def accumulate(total, chunk_inputs):
    return total + chunk_taps(*chunk_inputs), None

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
  """lax.conv_general_dilated's signature. On CPU, 2-D NHWC/HWIO convolutions without dilation
  or groups get the fast kernel gradient (stride 1) or im2col (strides dividing the kernel);
  everything else goes to lax unchanged."""
  plain = (
    jax.default_backend() == "cpu"
    and lhs.ndim == 4
    and all(d in (None, 1) for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
    and feature_group_count == 1
    and batch_group_count == 1
    and precision is None
    and preferred_element_type is None
    and _is_nhwc(dimension_numbers, lhs.shape, rhs.shape)
    # stride 1, or im2col's space-to-depth: kernel [kh, kw, C, O] a multiple of the strides
    and all(size % int(stride) == 0 for size, stride in zip(rhs.shape[:2], window_strides))
  )
  if not plain:
    return jax.lax.conv_general_dilated(
      lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
      feature_group_count, batch_group_count, precision, preferred_element_type,
    )
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
  pads = tuple((int(low), int(high)) for low, high in padding)
  strides = tuple(int(s) for s in window_strides)
  if strides == (1, 1):
    return _conv(lhs, rhs, strides, pads)
  return _im2col_conv(lhs, rhs, strides, pads)


def _im2col_conv(x: jax.Array, w: jax.Array, strides: tuple[int, int], pads: tuple) -> jax.Array:
  """conv(x [B, H, W, C], w [kh, kw, C, O]) -> [B, P, Q, O] as one matmul of the stacked patches
  [B, P, Q, kh kw C] with w [kh kw C, O], with kh, kw multiples of the strides sh, sw.

  The patches are gathered after a space-to-depth: x_pad [B, sh R, sw S, C] -> s [B, R, S,
  sh sw C], so the kh x kw window at stride (sh, sw) is the (kh / sh) x (kw / sw) window of s at
  stride 1, i.e. (kh / sh)(kw / sw) contiguous slices. Their gradients are as many pads of s's
  size, where kh kw strided slices of x would cost kh kw pads of x's size."""
  kh, kw, channels, out_channels = w.shape
  (sh, sw), ((top, bottom), (left, right)) = strides, pads
  blocks_h, blocks_w = kh // sh, kw // sw
  out_h = (x.shape[1] + top + bottom - kh) // sh + 1
  out_w = (x.shape[2] + left + right - kw) // sw + 1
  rows, cols = out_h + blocks_h - 1, out_w + blocks_w - 1  # rows and columns of s that are used
  # Pad, or crop the unused bottom/right edge, to exactly sh * rows x sw * cols.
  x = jax.lax.pad(
    x,
    jnp.zeros((), x.dtype),
    (
      (0, 0, 0),
      (top, sh * rows - x.shape[1] - top, 0),
      (left, sw * cols - x.shape[2] - left, 0),
      (0, 0, 0),
    ),
  )
  batch = x.shape[0]
  s = x.reshape(batch, rows, sh, cols, sw, channels).transpose(0, 1, 3, 2, 4, 5)
  s = s.reshape(batch, rows, cols, sh * sw * channels)
  patches = jnp.concatenate(
    [s[:, i : i + out_h, j : j + out_w] for i in range(blocks_h) for j in range(blocks_w)], axis=-1
  )
  # w [i sh + a, j sw + b, c, o] -> [(i, j, a, b, c), o], the order of the patches' channels.
  w = w.reshape(blocks_h, sh, blocks_w, sw, channels, out_channels).transpose(0, 2, 1, 3, 4, 5)
  return jnp.einsum("bpqk,ko->bpqo", patches, w.reshape(-1, out_channels))


def _is_nhwc(dimension_numbers, lhs_shape, rhs_shape) -> bool:
  if dimension_numbers is None:
    return False
  expected = jax.lax.conv_dimension_numbers(lhs_shape, rhs_shape, _NHWC)
  given = jax.lax.conv_dimension_numbers(lhs_shape, rhs_shape, dimension_numbers)
  return given == expected


Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)

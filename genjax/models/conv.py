"""Convolutions as XLA:CPU runs them fastest, and lax's own ops on GPU/TPU.

The backend decision is genjax.backend.uses_matmul_formulations(), made when a layer is traced:
True on XLA:CPU. There, `conv_general_dilated` (lax's signature and values) computes two kinds of
NHWC convolution (no dilation, no groups) as matmuls, differentiable in forward and reverse mode
to any order; everything else, stride-1 convolutions included, is lax's convolution:

- stride > 1 and the kernel gradient itself differentiated (differentiated_twice, e.g. a
  gradient penalty or R1): im2col, one matmul of the stacked patches with w.reshape(kh kw C, O),
  after a space-to-depth when the kernel is a multiple of the stride (`_im2col_conv`), else from
  kh kw strided slices (`patches_conv`; StyleGAN2's 3x3 stride-2 convolutions, whose R1
  step gains 3-7x). The patches take about kh kw / (sh sw) times the input's memory (4x for the
  4x4 stride-2 convolutions of DCGAN). First-order gradients do not gain from it (lax's strided
  convolutions are 1.5-4x faster there), so strided convolutions differentiated only once go to
  lax.
- stride-2 transposed convolutions with kernels up to 4x4 (`transposed_conv_full`, and
  `transposed_conv_4x4`, PyTorch's ConvTranspose2d(4, 2, 1)): four matmuls and an overlap-add
  (`_by_patch_matmul`), whose gradients are matmuls, pads and slices too, as XLA:CPU's gradient of
  a transposed convolution is slow; elsewhere lax's convolution of the dilated input.

Stride-1 convolutions had a custom JVP whose kernel gradient was per-tap matmuls while XLA:CPU
ran convolutions through YNNPACK; with genjax.backend's XLA flags (no YNNPACK convolutions) lax's
own stride-1 convolution and its gradients are faster than that (3x3 at 32x32x64, batch 64, forward
and both gradients: 262 vs 338 ms) and on par with PyTorch (254 ms).

`Conv` is flax's nn.Conv using `conv_general_dilated`; the parameters are unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.backend import uses_matmul_formulations

_NHWC = ("NHWC", "HWIO", "NHWC")


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
  *,
  differentiated_twice: bool = True,
) -> jax.Array:
  """lax.conv_general_dilated's signature. With the matmul formulations (CPU), strided 2-D
  NHWC/HWIO convolutions without dilation or groups whose kernel gradient is differentiated again
  (differentiated_twice) are im2col (strides dividing the kernel); everything else goes to lax
  unchanged."""
  strided = any(int(stride) != 1 for stride in window_strides)
  plain = (
    uses_matmul_formulations()
    and strided
    and differentiated_twice
    and lhs.ndim == 4
    and all(d in (None, 1) for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
    and feature_group_count == 1
    and batch_group_count == 1
    and precision is None
    and preferred_element_type is None
    and _is_nhwc(dimension_numbers, lhs.shape, rhs.shape)
  )
  if not plain:
    return jax.lax.conv_general_dilated(
      lhs,
      rhs,
      window_strides,
      padding,
      lhs_dilation,
      rhs_dilation,
      dimension_numbers,
      feature_group_count,
      batch_group_count,
      precision,
      preferred_element_type,
    )
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
  pads = tuple((int(low), int(high)) for low, high in padding)
  strides = tuple(int(s) for s in window_strides)
  if all(size % stride == 0 for size, stride in zip(rhs.shape[:2], strides)):
    return _im2col_conv(lhs, rhs, strides, pads)
  return patches_conv(lhs, rhs, strides, pads)


def patches_conv(x: jax.Array, w: jax.Array, strides: tuple[int, int], pads: tuple) -> jax.Array:
  """conv(x [B, H, W, C], w [kh, kw, C, O]) -> [B, P, Q, O] as one matmul of the stacked
  patches [B, P, Q, kh kw C] (kh kw strided slices of the padded x) with w [kh kw C, O], any
  stride. For strided kernels that are not a multiple of the strides, where `_im2col_conv`'s
  space-to-depth does not apply, and for every convolution of StyleGAN2's second-order calls
  (R1, path length), stride 1 included: inside a whole training step XLA:CPU's kernel gradients
  of those were up to 10x slower than these matmuls (genjax.models.stylegan2)."""
  kh, kw, _, out_channels = w.shape
  (sh, sw), ((top, bottom), (left, right)) = strides, pads
  x = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
  out_h, out_w = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
  patches = jnp.concatenate(
    [
      x[:, i : i + sh * (out_h - 1) + 1 : sh, j : j + sw * (out_w - 1) + 1 : sw]
      for i in range(kh)
      for j in range(kw)
    ],
    axis=-1,
  )
  return jnp.einsum("bpqk,ko->bpqo", patches, w.reshape(-1, out_channels))


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


def transposed_conv_4x4(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Up-sampling by 2, PyTorch's ConvTranspose2d(4, 2, 1): x [B, H, W, C_in] and kernel
  [4, 4, C_in, F] -> [B, 2H, 2W, F] with, per spatial axis,
    out[2i + k - 1] += x[i] w[k],
  i.e. `transposed_conv_full` without its first and last row and column."""
  height, width = x.shape[1:3]
  return transposed_conv_full(x, kernel)[:, 1 : 2 * height + 1, 1 : 2 * width + 1]


def transposed_conv_full(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """The uncropped stride-2 transposed convolution: x [B, H, W, C_in] and kernel [k, k, C_in, F]
  with k <= 4 -> [B, 2H + 2, 2W + 2, F] with, per spatial axis,
    out[2i + t] += x[i] w[t]   (t < k; rows 2H + k - 1 and after are zero).
  Matmuls on CPU (`_by_patch_matmul`), whose gradients of every order are matmuls, pads and
  slices: XLA:CPU's own transposed convolution, and its kernel gradient above all, is 10-25x
  slower (StyleGAN2's 3x3 up-convolutions). Elsewhere lax's convolution of the 2x-dilated
  input with the flipped kernel."""
  size = kernel.shape[0]
  if size > 4 or kernel.shape[1] != size:
    raise ValueError(
      f"transposed_conv_full needs a square kernel of size <= 4, got {kernel.shape}."
    )
  if uses_matmul_formulations():
    return _by_patch_matmul(x, jnp.pad(kernel, ((0, 4 - size), (0, 4 - size), (0, 0), (0, 0))))
  pads = ((size - 1, 3), (size - 1, 3))  # the dilated 2H - 1, padded, less k - 1: 2H + 2
  return jax.lax.conv_general_dilated(
    x, kernel[::-1, ::-1], (1, 1), pads, lhs_dilation=(2, 2), dimension_numbers=_NHWC
  )


def _by_patch_matmul(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """`transposed_conv_full` for a 4x4 kernel: tap t = 2 h + a (h, a in {0, 1}) sends x[r] to row
  2 (r + h) + a of the output [2H + 2]: with the output in 2x2 blocks, x @ w[h, :, g, :]
  [C_in, (a, b, F)] lands on block (r + h, s + g). Four matmuls, four shifted adds, one
  depth-to-space."""
  batch, height, width, channels = x.shape
  features = kernel.shape[-1]
  taps = kernel.reshape(2, 2, 2, 2, channels, features)  # [h, a, g, b, C_in, F]
  blocks = jnp.zeros((batch, height + 1, width + 1, 2, 2, features), x.dtype)
  for h in (0, 1):
    for g in (0, 1):
      weights = taps[h, :, g].transpose(2, 0, 1, 3).reshape(channels, 4 * features)
      patch = jnp.einsum("bhwc,ck->bhwk", x, weights).reshape(batch, height, width, 2, 2, features)
      blocks = blocks + jnp.pad(patch, ((0, 0), (h, 1 - h), (g, 1 - g), (0, 0), (0, 0), (0, 0)))
  return blocks.transpose(0, 1, 3, 2, 4, 5).reshape(batch, 2 * height + 2, 2 * width + 2, features)


def Conv(*args, differentiated_twice: bool = True, **kwargs) -> nn.Conv:
  """flax's nn.Conv (same arguments and parameters) computed by `conv_general_dilated`.
  differentiated_twice=False promises that the kernel gradient is not differentiated again
  (no gradient penalty), which keeps lax's strided convolutions."""
  convolution = functools.partial(conv_general_dilated, differentiated_twice=differentiated_twice)
  return nn.Conv(*args, conv_general_dilated=convolution, **kwargs)

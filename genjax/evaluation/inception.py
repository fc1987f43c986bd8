"""InceptionV3 in Flax with the architecture of the FID network (TF 2015-12-05 graph / pytorch-fid).

The network is the one pytorch-fid's `FIDInceptionA/C/E_1/E_2` blocks define on top of torchvision's
InceptionV3: 3x3 average pools in the A, C and E_1 blocks exclude the padding from the count, the
last block (E_2, Mixed_7c) max-pools its pool branch, there is no auxiliary head and the classifier
has 1008 outputs. Every convolution is conv (no bias) -> batch norm (eps 1e-3, running statistics)
-> ReLU. Shapes for one image:

  [299, 299, 3] -> Conv2d_1a..4a, two 3x3/2 max-pools -> [35, 35, 192]
  Mixed_5b/5c/5d (A) -> [35, 35, 256/288/288];  Mixed_6a (B) -> [17, 17, 768]
  Mixed_6b..6e (C) -> [17, 17, 768];  Mixed_7a (D) -> [8, 8, 1280];  Mixed_7b/7c (E) -> [8, 8, 2048]
  global average pool -> pool3 [2048] (the FID/KID/PRD features) -> fc -> logits [1008] (for IS)

23,850,960 trainable parameters (conv kernels, batch-norm scales and offsets, fc) plus the
batch-norm running means and variances.

Input protocols (INPUT_PROTOCOLS, eval.inception_protocol). Both first quantise to 8 bits
(round(255 x) for x in [0, 1]: papers evaluate saved 8-bit images) and repeat one channel to three:
  "tf_fid"       the TF FID of the TTUR code (Heusel et al.), which the GAN papers' CIFAR-10 numbers
                 use, and StyleGAN2-ADA's and fid-helper's default: the graph's legacy TF1
                 ResizeBilinear to 299 x 299 (align_corners=False *without* half-pixel centres:
                 output pixel j samples input position j * in / out, edge-clamped), then
                 (v - 128) / 128 on v in [0, 255], i.e. the range [-1, 127/128].
  "pytorch_fid"  pytorch-fid's: bilinear resize with half-pixel centres, no antialias
                 (F.interpolate(mode="bilinear", align_corners=False)), then 2 v / 255 - 1, i.e. [-1, 1].
The two differ by a sub-pixel shift of the resize (up to half an input pixel) and 1/128 of range at
the top; on CIFAR-10 such differences move FID by a few tenths, so compare numbers of one protocol.

Weights: genjax.evaluation.inception_weights (no fc layer in the fid-helper file: no Inception
Score from it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

INCEPTION_FEATURE_DIM = 2048
INCEPTION_NUM_CLASSES = 1008
INCEPTION_SIZE = 299


def _pad(kernel: Sequence[int]) -> tuple[tuple[int, int], tuple[int, int]]:
  return ((kernel[0] // 2, kernel[0] // 2), (kernel[1] // 2, kernel[1] // 2))


class BasicConv(nn.Module):
  """conv (no bias) -> batch norm (eps 1e-3) -> ReLU; 'same' padding unless `valid`."""

  features: int
  kernel: tuple[int, int] = (1, 1)
  stride: int = 1
  valid: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    padding = "VALID" if self.valid else _pad(self.kernel)
    x = nn.Conv(
      self.features, self.kernel, strides=self.stride, padding=padding, use_bias=False, name="conv"
    )(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
    return nn.relu(x)


def _avg_pool_3x3(x: jax.Array) -> jax.Array:
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_stride2(x: jax.Array) -> jax.Array:
  return nn.max_pool(x, (3, 3), strides=(2, 2))


class InceptionA(nn.Module):
  """Mixed_5b/5c/5d: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avg-pool-1x1 (pool_features)."""

  pool_features: int

  @nn.compact
  def __call__(self, x):
    branch1x1 = BasicConv(64, name="branch1x1")(x)
    branch5x5 = BasicConv(64, (5, 5), name="branch5x5_2")(BasicConv(48, name="branch5x5_1")(x))
    branch3x3dbl = BasicConv(64, name="branch3x3dbl_1")(x)
    branch3x3dbl = BasicConv(96, (3, 3), name="branch3x3dbl_2")(branch3x3dbl)
    branch3x3dbl = BasicConv(96, (3, 3), name="branch3x3dbl_3")(branch3x3dbl)
    branch_pool = BasicConv(self.pool_features, name="branch_pool")(_avg_pool_3x3(x))
    return jnp.concatenate([branch1x1, branch5x5, branch3x3dbl, branch_pool], axis=-1)


class InceptionB(nn.Module):
  """Mixed_6a (35 -> 17): 3x3/2 | 1x1-3x3-3x3/2 | max-pool/2."""

  @nn.compact
  def __call__(self, x):
    branch3x3 = BasicConv(384, (3, 3), stride=2, valid=True, name="branch3x3")(x)
    branch3x3dbl = BasicConv(64, name="branch3x3dbl_1")(x)
    branch3x3dbl = BasicConv(96, (3, 3), name="branch3x3dbl_2")(branch3x3dbl)
    branch3x3dbl = BasicConv(96, (3, 3), stride=2, valid=True, name="branch3x3dbl_3")(branch3x3dbl)
    return jnp.concatenate([branch3x3, branch3x3dbl, _max_pool_3x3_stride2(x)], axis=-1)


class InceptionC(nn.Module):
  """Mixed_6b..6e: 1x1 | 1x1-1x7-7x1 | 1x1-7x1-1x7-7x1-1x7 | avg-pool-1x1, c7 inner channels."""

  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c7 = self.channels_7x7
    branch1x1 = BasicConv(192, name="branch1x1")(x)
    branch7x7 = BasicConv(c7, name="branch7x7_1")(x)
    branch7x7 = BasicConv(c7, (1, 7), name="branch7x7_2")(branch7x7)
    branch7x7 = BasicConv(192, (7, 1), name="branch7x7_3")(branch7x7)
    branch7x7dbl = BasicConv(c7, name="branch7x7dbl_1")(x)
    for index, (width, kernel) in enumerate(
      [(c7, (7, 1)), (c7, (1, 7)), (c7, (7, 1)), (192, (1, 7))]
    ):
      branch7x7dbl = BasicConv(width, kernel, name=f"branch7x7dbl_{index + 2}")(branch7x7dbl)
    branch_pool = BasicConv(192, name="branch_pool")(_avg_pool_3x3(x))
    return jnp.concatenate([branch1x1, branch7x7, branch7x7dbl, branch_pool], axis=-1)


class InceptionD(nn.Module):
  """Mixed_7a (17 -> 8): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | max-pool/2."""

  @nn.compact
  def __call__(self, x):
    branch3x3 = BasicConv(192, name="branch3x3_1")(x)
    branch3x3 = BasicConv(320, (3, 3), stride=2, valid=True, name="branch3x3_2")(branch3x3)
    branch7x7x3 = BasicConv(192, name="branch7x7x3_1")(x)
    branch7x7x3 = BasicConv(192, (1, 7), name="branch7x7x3_2")(branch7x7x3)
    branch7x7x3 = BasicConv(192, (7, 1), name="branch7x7x3_3")(branch7x7x3)
    branch7x7x3 = BasicConv(192, (3, 3), stride=2, valid=True, name="branch7x7x3_4")(branch7x7x3)
    return jnp.concatenate([branch3x3, branch7x7x3, _max_pool_3x3_stride2(x)], axis=-1)


class InceptionE(nn.Module):
  """Mixed_7b (avg pool, FIDInceptionE_1) / Mixed_7c (max pool, FIDInceptionE_2):
  1x1 | 1x1-(1x3, 3x1) | 1x1-3x3-(1x3, 3x1) | pool-1x1."""

  max_pool: bool

  @nn.compact
  def __call__(self, x):
    branch1x1 = BasicConv(320, name="branch1x1")(x)
    branch3x3 = BasicConv(384, name="branch3x3_1")(x)
    branch3x3 = jnp.concatenate(
      [
        BasicConv(384, (1, 3), name="branch3x3_2a")(branch3x3),
        BasicConv(384, (3, 1), name="branch3x3_2b")(branch3x3),
      ],
      axis=-1,
    )
    branch3x3dbl = BasicConv(448, name="branch3x3dbl_1")(x)
    branch3x3dbl = BasicConv(384, (3, 3), name="branch3x3dbl_2")(branch3x3dbl)
    branch3x3dbl = jnp.concatenate(
      [
        BasicConv(384, (1, 3), name="branch3x3dbl_3a")(branch3x3dbl),
        BasicConv(384, (3, 1), name="branch3x3dbl_3b")(branch3x3dbl),
      ],
      axis=-1,
    )
    if self.max_pool:
      pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
    else:
      pooled = _avg_pool_3x3(x)
    branch_pool = BasicConv(192, name="branch_pool")(pooled)
    return jnp.concatenate([branch1x1, branch3x3, branch3x3dbl, branch_pool], axis=-1)


class FIDInceptionV3(nn.Module):
  """images [B, 299, 299, 3] (see INPUT_PROTOCOLS) -> (pool3 features [B, 2048],
  logits [B, num_classes]); num_classes 0 (weights without the fc layer) gives logits [B, 0]."""

  num_classes: int = INCEPTION_NUM_CLASSES

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    x = BasicConv(32, (3, 3), stride=2, valid=True, name="Conv2d_1a_3x3")(x)
    x = BasicConv(32, (3, 3), valid=True, name="Conv2d_2a_3x3")(x)
    x = BasicConv(64, (3, 3), name="Conv2d_2b_3x3")(x)
    x = _max_pool_3x3_stride2(x)
    x = BasicConv(80, name="Conv2d_3b_1x1")(x)
    x = BasicConv(192, (3, 3), valid=True, name="Conv2d_4a_3x3")(x)
    x = _max_pool_3x3_stride2(x)
    x = InceptionA(32, name="Mixed_5b")(x)
    x = InceptionA(64, name="Mixed_5c")(x)
    x = InceptionA(64, name="Mixed_5d")(x)
    x = InceptionB(name="Mixed_6a")(x)
    for name, width in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
      x = InceptionC(width, name=name)(x)
    x = InceptionD(name="Mixed_7a")(x)
    x = InceptionE(max_pool=False, name="Mixed_7b")(x)
    x = InceptionE(max_pool=True, name="Mixed_7c")(x)
    pool3 = jnp.mean(x, axis=(1, 2))
    if not self.num_classes:
      return pool3, jnp.zeros((x.shape[0], 0), pool3.dtype)
    return pool3, nn.Dense(self.num_classes, name="fc")(pool3)


def _legacy_tf_bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
  """[out, in] weights of TF1's ResizeBilinear (align_corners=False, no half-pixel centres): output
  j interpolates input position j * in / out between its two neighbours, clamped at the last."""
  position = np.arange(out_size, dtype=np.float64) * (in_size / out_size)
  lower = np.minimum(np.floor(position).astype(int), in_size - 1)
  upper = np.minimum(lower + 1, in_size - 1)
  fraction = position - lower
  matrix = np.zeros((out_size, in_size), np.float64)
  np.add.at(matrix, (np.arange(out_size), lower), 1.0 - fraction)
  np.add.at(matrix, (np.arange(out_size), upper), fraction)
  return matrix.astype(np.float32)


def _resize_tf_fid(pixels: jax.Array) -> jax.Array:
  """[B, H, W, 3] in [0, 255] -> [B, 299, 299, 3] in [-1, 127/128] (the "tf_fid" protocol)."""
  rows = _legacy_tf_bilinear_matrix(pixels.shape[1], INCEPTION_SIZE)
  columns = _legacy_tf_bilinear_matrix(pixels.shape[2], INCEPTION_SIZE)
  resized = jnp.einsum(
    "oh,bhwc,pw->bopc", rows, pixels, columns, precision=jax.lax.Precision.HIGHEST
  )
  return (resized - 128.0) / 128.0


def _resize_pytorch_fid(pixels: jax.Array) -> jax.Array:
  """[B, H, W, 3] in [0, 255] -> [B, 299, 299, 3] in [-1, 1] (the "pytorch_fid" protocol)."""
  size = (pixels.shape[0], INCEPTION_SIZE, INCEPTION_SIZE, 3)
  resized = jax.image.resize(pixels, size, method="bilinear", antialias=False)
  return resized * (2.0 / 255.0) - 1.0


INPUT_PROTOCOLS = {"tf_fid": _resize_tf_fid, "pytorch_fid": _resize_pytorch_fid}


def prepare_inception_input(unit_images: jax.Array, protocol: str = "tf_fid") -> jax.Array:
  """images [B, H, W, 1 or 3] in [0, 1] -> the network input [B, 299, 299, 3] of `protocol`
  (see the module doc): quantised to 8 bits, grey repeated to RGB, resized, range-mapped."""
  if protocol not in INPUT_PROTOCOLS:
    raise ValueError(
      f"Unknown Inception input protocol {protocol!r}: choose one of {sorted(INPUT_PROTOCOLS)} "
      "(eval.inception_protocol)."
    )
  pixels = jnp.round(jnp.clip(unit_images.astype(jnp.float32), 0.0, 1.0) * 255.0)
  if pixels.shape[-1] == 1:
    pixels = jnp.repeat(pixels, 3, axis=-1)
  return INPUT_PROTOCOLS[protocol](pixels)


def inception_variable_shapes(num_classes: int = INCEPTION_NUM_CLASSES) -> dict[str, Any]:
  """{"params": ..., "batch_stats": ...} as ShapeDtypeStructs (no compilation, no memory)."""
  images = jax.ShapeDtypeStruct((1, INCEPTION_SIZE, INCEPTION_SIZE, 3), jnp.float32)
  return jax.eval_shape(FIDInceptionV3(num_classes).init, jax.random.key(0), images)


def init_inception_variables(seed: int) -> dict[str, Any]:
  """Random variables of FIDInceptionV3, for tests and throughput measurements only: kernels
  N(0, 1 / fan_in), batch-norm scale 1, offsets 0, running mean 0 and variance 1. Built from the
  shapes alone, without compiling the network's init."""
  rng = np.random.default_rng(seed)

  def leaf(path, shape) -> np.ndarray:
    name = path[-1].key
    if name == "kernel":
      return (rng.standard_normal(shape.shape) / np.sqrt(np.prod(shape.shape[:-1]))).astype(
        np.float32
      )
    return np.full(shape.shape, 1.0 if name in ("scale", "var") else 0.0, np.float32)

  return jax.tree_util.tree_map_with_path(leaf, inception_variable_shapes())

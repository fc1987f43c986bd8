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

Input conversion (`prepare_inception_input`, what pytorch-fid does): images [B, H, W, C] in
value_range are mapped to [0, 1]; one channel is repeated to three; they are resized to 299 x 299 by
bilinear interpolation with half-pixel centres and no antialiasing (torch's
F.interpolate(mode="bilinear", align_corners=False)); then mapped to [-1, 1].

Weights: nothing is downloaded. Convert pytorch-fid's pt_inception-2015-12-05-6726825d.pth once on a
machine with torch,
  np.savez("pt_inception-2015-12-05.npz", **{k: v.numpy() for k, v in torch.load(PTH).items()}),
then pin the .npz's SHA-256 with eval.inception_sha256 and its path with eval.inception_weights. The
names are pytorch-fid's state-dict keys ("Mixed_5b.branch1x1.conv.weight", OIHW kernels);
`inception_variables_from_state_dict` maps them onto this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from genjax.evaluation.params_io import WeightsError, verify_sha256

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
  """images [B, 299, 299, 3] in [-1, 1] -> (pool3 features [B, 2048], logits [B, 1008])."""

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
    return pool3, nn.Dense(INCEPTION_NUM_CLASSES, name="fc")(pool3)


def prepare_inception_input(unit_images: jax.Array) -> jax.Array:
  """images [B, H, W, 1 or 3] in [0, 1] -> [B, 299, 299, 3] in [-1, 1] (see the module doc)."""
  if unit_images.shape[-1] == 1:
    unit_images = jnp.repeat(unit_images, 3, axis=-1)
  size = (unit_images.shape[0], INCEPTION_SIZE, INCEPTION_SIZE, 3)
  resized = jax.image.resize(
    unit_images.astype(jnp.float32), size, method="bilinear", antialias=False
  )
  return resized * 2.0 - 1.0


def inception_variable_shapes() -> dict[str, Any]:
  """{"params": ..., "batch_stats": ...} as ShapeDtypeStructs (no compilation, no memory)."""
  images = jax.ShapeDtypeStruct((1, INCEPTION_SIZE, INCEPTION_SIZE, 3), jnp.float32)
  return jax.eval_shape(FIDInceptionV3().init, jax.random.key(0), images)


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


_BN_NAMES = {
  "weight": ("params", "scale"),
  "bias": ("params", "bias"),
  "running_mean": ("batch_stats", "mean"),
  "running_var": ("batch_stats", "var"),
}


def inception_variables_from_state_dict(state_dict: dict[str, np.ndarray]) -> dict[str, Any]:
  """pytorch-fid state-dict arrays (OIHW kernels, fc [1008, 2048]) -> FIDInceptionV3 variables.

  `num_batches_tracked` entries are ignored; any other unknown key is an error.
  """
  flat: dict[tuple[str, ...], np.ndarray] = {}
  for key, value in state_dict.items():
    parts = key.split(".")
    if parts[-1] == "num_batches_tracked":
      continue
    if parts[0] == "fc":
      flat[("params", "fc", "kernel" if parts[1] == "weight" else "bias")] = (
        value.T if parts[1] == "weight" else value
      )
    elif parts[-2] == "conv" and parts[-1] == "weight":
      flat[("params", *parts[:-1], "kernel")] = np.transpose(value, (2, 3, 1, 0))
    elif parts[-2] == "bn" and parts[-1] in _BN_NAMES:
      collection, name = _BN_NAMES[parts[-1]]
      flat[(collection, *parts[:-1], name)] = value
    else:
      raise WeightsError(
        f"Unexpected key {key!r} in the Inception weights: not a pytorch-fid FID "
        "Inception state dict."
      )
  return traverse_util.unflatten_dict({k: np.asarray(v, np.float32) for k, v in flat.items()})


def load_inception_variables(path: str | Path, expected_sha256: str) -> dict[str, Any]:
  """Checks the .npz's SHA-256, converts its pytorch-fid arrays and checks every shape."""
  verify_sha256(path, expected_sha256, "FID Inception")
  with np.load(path) as archive:
    variables = inception_variables_from_state_dict({key: archive[key] for key in archive.files})
  expected = traverse_util.flatten_dict(inception_variable_shapes(), sep="/")
  loaded = traverse_util.flatten_dict(variables, sep="/")
  problems = sorted(set(expected) ^ set(loaded)) + [
    f"{key}: {loaded[key].shape} != {expected[key].shape}"
    for key in sorted(set(expected) & set(loaded))
    if tuple(loaded[key].shape) != tuple(expected[key].shape)
  ]
  if problems:
    raise WeightsError(
      f"The Inception weights {str(path)!r} do not fit FIDInceptionV3: {problems[:6]}."
    )
  return variables

"""DiffAugment (Zhao et al. 2020): differentiable augmentations applied to every image D sees.

The same random transform family is applied to real and generated images, in both the
discriminator and the generator update, so D cannot tell them apart by the augmentation and G gets
gradients through it. Images x [B, H, W, C], ideally in [-1, 1]. With model.augment =
"diffaugment", the policy is `model.diffaugment` (comma separated, applied in the order given; ""
means DEFAULT_DIFFAUGMENT_POLICY):

  color        brightness x + (u - 1/2), saturation (x - mean_c) * 2u + mean_c,
               contrast (x - mean) * (u + 1/2) + mean; a fresh u ~ U[0, 1) per example each
  translation  shift by up to 1/8 of the image size in each direction (integers), zeros fill in
  cutout       zero one square of half the image size at a uniformly random centre
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from genjax.registry import Registry

Augmentation = Callable[[jax.Array, jax.Array], jax.Array]
AUGMENTATIONS: Registry[Augmentation] = Registry("DiffAugment policy")

DEFAULT_DIFFAUGMENT_POLICY = "color,translation,cutout"  # the paper's choice for small data
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def _uniform(rng: jax.Array, x: jax.Array) -> jax.Array:
  return jax.random.uniform(rng, (x.shape[0], 1, 1, 1), x.dtype)


@AUGMENTATIONS.register("color")
def color(x: jax.Array, rng: jax.Array) -> jax.Array:
  brightness_rng, saturation_rng, contrast_rng = jax.random.split(rng, 3)
  x = x + (_uniform(brightness_rng, x) - 0.5)
  mean = x.mean(axis=3, keepdims=True)
  x = (x - mean) * (_uniform(saturation_rng, x) * 2.0) + mean
  mean = x.mean(axis=(1, 2, 3), keepdims=True)
  return (x - mean) * (_uniform(contrast_rng, x) + 0.5) + mean


@AUGMENTATIONS.register("translation")
def translation(x: jax.Array, rng: jax.Array) -> jax.Array:
  batch, height, width, channels = x.shape
  pad_h, pad_w = int(height * TRANSLATION_RATIO + 0.5), int(width * TRANSLATION_RATIO + 0.5)
  rng_h, rng_w = jax.random.split(rng)
  start_h = jax.random.randint(rng_h, (batch,), 0, 2 * pad_h + 1)  # = pad_h - shift
  start_w = jax.random.randint(rng_w, (batch,), 0, 2 * pad_w + 1)
  padded = jnp.pad(x, ((0, 0), (pad_h, pad_h), (pad_w, pad_w), (0, 0)))

  def crop(image, top, left):
    return jax.lax.dynamic_slice(image, (top, left, 0), (height, width, channels))

  return jax.vmap(crop)(padded, start_h, start_w)


@AUGMENTATIONS.register("cutout")
def cutout(x: jax.Array, rng: jax.Array) -> jax.Array:
  batch, height, width, _ = x.shape
  size_h, size_w = int(height * CUTOUT_RATIO + 0.5), int(width * CUTOUT_RATIO + 0.5)
  rng_h, rng_w = jax.random.split(rng)
  top = jax.random.randint(rng_h, (batch, 1, 1), 0, height) - size_h // 2
  left = jax.random.randint(rng_w, (batch, 1, 1), 0, width) - size_w // 2
  rows = jnp.arange(height)[None, :, None]
  cols = jnp.arange(width)[None, None, :]
  inside = (rows >= top) & (rows < top + size_h) & (cols >= left) & (cols < left + size_w)
  return x * (~inside)[..., None].astype(x.dtype)


def parse_policy(policy: str) -> tuple[str, ...]:
  """ "color,translation" -> ("color", "translation"); unknown names list the valid ones."""
  names = tuple(name.strip() for name in policy.split(",") if name.strip())
  for name in names:
    AUGMENTATIONS.get(name)
  return names


def diff_augment(x: jax.Array, rng: jax.Array, policy: tuple[str, ...]) -> jax.Array:
  """Applies the augmentations of `policy` in order, each with its own key; [B, H, W, C] -> same."""
  for name, key in zip(policy, jax.random.split(rng, max(len(policy), 1)), strict=False):
    x = AUGMENTATIONS.get(name)(x, key)
  return x

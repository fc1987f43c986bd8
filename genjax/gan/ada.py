"""Adaptive Discriminator Augmentation (Karras et al. 2020, StyleGAN2-ADA): the augmentation
pipeline and the controller of its probability p.

Every image D sees (reals and fakes, in the D and in the G update) goes through
`ada_augment(x, rng, p, pipeline)`, x: [B, H, W, C] in [-1, 1] with C in {1, 3}. Each augmentation
of the pipeline is applied to each example independently with probability p, a traced scalar, so
the controller moves p without recompiling. For p < 0.8 every augmentation is invertible in
distribution (the unaugmented image stays the most likely output), so augmentations do not leak
into G's samples. The stages run in this fixed order whatever the order of the pipeline tuple
(paper Appendix B, parameters of the official defaults):

  blit   xflip       flip with i ~ U{0, 1}: an applied xflip flips half the time (rate p / 2)
         rotate90    rotation by k * 90 degrees, k ~ U{0, 1, 2, 3} (square images only)
         xint        integer shift round(U[-1/8, 1/8) * size) pixels per axis, mirror padding
  geom   scale       isotropic scaling by 2^N(0, 0.2^2)
         rotate      rotation by U[-pi, pi) twice, before and after aniso as in the paper, each
                     with p_rot = 1 - sqrt(1 - p), so that some rotation happens with probability p
         aniso       scaling by 2^N(0, 0.2^2) along x and by its inverse along y
         xfrac       translation by N(0, (size / 8)^2) pixels per axis
  color  brightness  x + b, b ~ N(0, 0.2^2)
         contrast    x * 2^N(0, 0.5^2) (about 0, the middle of [-1, 1])
         lumaflip    Householder reflection I - 2 i v v^T, i ~ U{0, 1}, v = (1, 1, 1) / sqrt(3)
         hue         rotation about v by U[-pi, pi)
         saturation  v v^T + (I - v v^T) * 2^N(0, 1)

The geometric stages compose one inverse affine matrix per example (output pixel -> input pixel,
about the image centre) and resample once: bilinear interpolation (jax.scipy.ndimage
.map_coordinates, order 1) with whole-sample symmetric extension ("mirror": pixel -1 reads pixel 1,
like PyTorch's "reflect" padding in the official code, unbounded here). Simplification: the
official code upsamples 2x with a sym6 wavelet filter, samples bilinearly and downsamples back;
plain bilinear blurs a little more and can alias under downscaling.

The colour stages compose one 4x4 matrix C on homogeneous RGB, applied once. A grayscale image
takes the mean m of C's three colour rows: gray * (m_0 + m_1 + m_2) + m_3, so lumaflip negates,
hue and saturation are the identity (up to rounding), brightness and contrast act as on RGB.
The official imgfilter, noise and cutout stages (not in "bgc") are omitted.

An example that no stage of a group changes is selected unchanged with jnp.where, so p = 0 returns
x bitwise.

The controller (`ada_update`) estimates r_t = E[sign(D(augmented reals))] over `interval`
D updates, then steps p <- clip(p + sign(r_t - target) * images_per_update * interval /
(speed_kimg * 1000), 0, 1). Paper defaults: target 0.6, interval 4, speed_kimg 500 (p can go from
0 to 1 in 500k real images).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.ndimage import map_coordinates

from genjax.registry import Registry

Pipeline = tuple[str, ...]
AdaState = dict[str, jax.Array]

BLIT: Pipeline = ("xflip", "rotate90", "xint")
GEOMETRIC: Pipeline = ("scale", "rotate", "aniso", "xfrac")
COLOR: Pipeline = ("brightness", "contrast", "lumaflip", "hue", "saturation")
AUGMENTATIONS: Pipeline = BLIT + GEOMETRIC + COLOR  # the order in which they are applied

ADA_PIPELINES: Registry[Pipeline] = Registry("ADA pipeline")
ADA_PIPELINES.register("blit")(BLIT)
ADA_PIPELINES.register("geom")(GEOMETRIC)
ADA_PIPELINES.register("color")(COLOR)
ADA_PIPELINES.register("bg")(BLIT + GEOMETRIC)
ADA_PIPELINES.register("bgc")(AUGMENTATIONS)  # the paper's default

XINT_MAX = 0.125  # of the image size
SCALE_STD = 0.2  # log2
ANISO_STD = 0.2  # log2
XFRAC_STD = 0.125  # of the image size
BRIGHTNESS_STD = 0.2
CONTRAST_STD = 0.5  # log2
SATURATION_STD = 1.0  # log2

LUMA_AXIS = np.array([1, 1, 1, 0], np.float32) / np.float32(math.sqrt(3.0))  # v, homogeneous RGB
RGB_PART = np.diag(np.array([1.0, 1.0, 1.0, 0.0], np.float32))
HIGHEST = jax.lax.Precision.HIGHEST


def _check_augmentations(names: Sequence[str]) -> None:
  for name in names:
    if name not in AUGMENTATIONS:
      close = difflib.get_close_matches(name, AUGMENTATIONS + tuple(ADA_PIPELINES.names()), n=3)
      hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
      raise ValueError(
        f"Unknown ADA augmentation {name!r}.{hint} Valid augmentations: {', '.join(AUGMENTATIONS)};"
        f" registered pipelines: {', '.join(ADA_PIPELINES.names())}."
      )


def parse_pipeline(name_or_names: str) -> Pipeline:
  """A registered pipeline ("bgc") or comma-separated augmentations ("xflip,rotate90") -> their
  names, each once, in the order ada_augment applies them; unknown names list the valid ones."""
  name_or_names = name_or_names.strip()
  if name_or_names in ADA_PIPELINES:
    return ADA_PIPELINES.get(name_or_names)
  names = [name.strip() for name in name_or_names.split(",") if name.strip()]
  _check_augmentations(names)
  return tuple(name for name in AUGMENTATIONS if name in names)


class Draws(NamedTuple):
  """One augmentation's random numbers per example, from its own key; the stage maps them to its
  parameters, which are exactly the identity value where the stage is not applied."""

  uniform: jax.Array  # [UNIFORM_DRAWS, B] ~ U(0, 1); row 0 decides whether the stage applies
  normal: jax.Array  # [NORMAL_DRAWS, B] ~ N(0, 1)


UNIFORM_DRAWS = 4  # rotate: apply and angle, before and after aniso
NORMAL_DRAWS = 2  # xfrac: x and y


def _draws(rng: jax.Array, batch: int) -> dict[str, Draws]:
  """Each augmentation's Draws from its own key (split from rng), independent of which others are
  active: uniforms in (0, 1) from one vmapped generator (XLA:CPU compiles one generator far faster
  than a dozen), normals by the inverse normal CDF of some of them."""
  count, per_example = len(AUGMENTATIONS), UNIFORM_DRAWS + NORMAL_DRAWS
  tiny = np.finfo(np.float32).tiny  # ndtri(0) = -inf

  def draw(key: jax.Array) -> jax.Array:
    return jax.random.uniform(key, (per_example * batch,), minval=tiny)

  uniform = jax.vmap(draw)(jax.random.split(rng, count)).reshape(count, per_example, batch)
  normal = jax.scipy.special.ndtri(uniform[:, UNIFORM_DRAWS:])
  return {
    name: Draws(uniform[index, :UNIFORM_DRAWS], normal[index])
    for index, name in enumerate(AUGMENTATIONS)
  }


def _lognormal(draws: Draws, p: jax.Array, log2_std: float) -> jax.Array:
  """2^N(0, log2_std^2) [B] where applied, else exactly 1."""
  return jnp.exp2(jnp.where(draws.uniform[0] < p, draws.normal[0] * log2_std, 0.0))


def _angle(applies: jax.Array, uniform: jax.Array) -> jax.Array:
  """U[-pi, pi) [B] where applies, else 0."""
  return jnp.where(applies, (2.0 * uniform - 1.0) * jnp.pi, 0.0)


def _coin(draws: Draws, p: jax.Array) -> jax.Array:
  """i ~ U{0, 1} (bool [B]) where applied, else 0."""
  return (draws.uniform[0] < p) & (draws.uniform[1] < 0.5)


def _select(changed: jax.Array, augmented: jax.Array, x: jax.Array) -> jax.Array:
  """Per example: `augmented` where changed [B], else x itself."""
  return jnp.where(changed[:, None, None, None], augmented.astype(x.dtype), x)


# Pixel blitting.


def _xflip(x: jax.Array, draws: Draws, p: jax.Array) -> jax.Array:
  return _select(_coin(draws, p), x[:, :, ::-1], x)


def _rotate90(x: jax.Array, draws: Draws, p: jax.Array) -> jax.Array:
  turns = jnp.minimum(jnp.floor(draws.uniform[1] * 4.0), 3.0).astype(jnp.int32)  # U{0, 1, 2, 3}
  turns = jnp.where(draws.uniform[0] < p, turns, 0)
  rotations = [jnp.rot90(x, quarter_turns, axes=(1, 2)) for quarter_turns in range(4)]
  return jnp.select([(turns == t)[:, None, None, None] for t in range(4)], rotations)


def _mirror_index(index: jax.Array, size: int) -> jax.Array:
  """Whole-sample symmetric extension of [0, size): ... 2, 1 | 0, 1, ... size - 1 | size - 2, ..."""
  period = 2 * (size - 1)
  return jnp.abs((index + size - 1) % period - (size - 1))


def _integer_translate(x: jax.Array, shift_rows: jax.Array, shift_cols: jax.Array) -> jax.Array:
  """out[b, i, j] = x[b, i - shift_rows[b], j - shift_cols[b]], mirrored at the borders.

  x [B, H, W, C] (H, W >= 2); shifts int [B]."""
  batch, height, width, _ = x.shape
  rows = _mirror_index(jnp.arange(height)[None, :] - shift_rows[:, None], height)
  cols = _mirror_index(jnp.arange(width)[None, :] - shift_cols[:, None], width)
  return x[jnp.arange(batch)[:, None, None], rows[:, :, None], cols[:, None, :]]


def _xint(x: jax.Array, draws: Draws, p: jax.Array) -> jax.Array:
  _, height, width, _ = x.shape
  fraction = (2.0 * draws.uniform[1:3] - 1.0) * XINT_MAX  # [2, B] ~ U[-1/8, 1/8)
  shift = jnp.round(fraction * jnp.array([[height], [width]], jnp.float32)).astype(jnp.int32)
  shift = jnp.where(draws.uniform[0] < p, shift, 0)
  translated = _integer_translate(x, shift[0], shift[1])
  return _select(jnp.any(shift != 0, axis=0), translated, x)


BLIT_STAGES: dict[str, Callable[[jax.Array, Draws, jax.Array], jax.Array]] = {
  "xflip": _xflip,
  "rotate90": _rotate90,
  "xint": _xint,
}


# General geometric transforms: one inverse affine matrix per example, one resampling.


def _affine(
  a: jax.Array, b: jax.Array, c: jax.Array, d: jax.Array, e: jax.Array, f: jax.Array
) -> jax.Array:
  """[B] entries -> [B, 3, 3] matrices [[a, b, c], [d, e, f], [0, 0, 1]]."""
  zero, one = jnp.zeros_like(a), jnp.ones_like(a)
  return jnp.stack([a, b, c, d, e, f, zero, zero, one], axis=-1).reshape(-1, 3, 3)


def _rotation(angle: jax.Array) -> jax.Array:
  cos, sin, zero = jnp.cos(angle), jnp.sin(angle), jnp.zeros_like(angle)
  return _affine(cos, -sin, zero, sin, cos, zero)


def _scaling(scale_x: jax.Array, scale_y: jax.Array) -> jax.Array:
  zero = jnp.zeros_like(scale_x)
  return _affine(scale_x, zero, zero, zero, scale_y, zero)


def _translation(shift_x: jax.Array, shift_y: jax.Array) -> jax.Array:
  zero, one = jnp.zeros_like(shift_x), jnp.ones_like(shift_x)
  return _affine(one, zero, shift_x, zero, one, shift_y)


def _geometric_inverse(
  draws: dict[str, Draws], p: jax.Array, height: int, width: int, active: Pipeline
) -> jax.Array:
  """The inverse [B, 3, 3] of the composed transform T R_post A R_pre S (scale first): it maps an
  output pixel's (column, row, 1), offset from the image centre, to the input position it reads.
  Stages not in `active`, or not applied to an example, are exactly the identity."""
  batch = draws["scale"].uniform.shape[1]
  inverse = jnp.broadcast_to(jnp.eye(3), (batch, 3, 3))

  def then(factor: jax.Array) -> None:
    nonlocal inverse
    inverse = jnp.matmul(inverse, factor, precision=HIGHEST)

  if "scale" in active:
    scale = _lognormal(draws["scale"], p, SCALE_STD)
    then(_scaling(1.0 / scale, 1.0 / scale))
  rotate_p = 1.0 - jnp.sqrt(jnp.maximum(1.0 - p, 0.0))  # so P(pre or post rotation) = p
  rotate = draws["rotate"].uniform
  if "rotate" in active:
    then(_rotation(-_angle(rotate[0] < rotate_p, rotate[1])))
  if "aniso" in active:
    aniso = _lognormal(draws["aniso"], p, ANISO_STD)
    then(_scaling(1.0 / aniso, aniso))
  if "rotate" in active:
    then(_rotation(-_angle(rotate[2] < rotate_p, rotate[3])))
  if "xfrac" in active:
    xfrac = draws["xfrac"]
    shift = xfrac.normal * XFRAC_STD * jnp.array([[width], [height]], jnp.float32)  # [2, B]
    shift = jnp.where(xfrac.uniform[0] < p, shift, 0.0)
    then(_translation(-shift[0], -shift[1]))
  return inverse


def _warp(x: jax.Array, inverse: jax.Array) -> jax.Array:
  """Bilinear resampling of x [B, H, W, C] at inverse [B, 3, 3] @ (column, row, 1) (offsets from
  the centre (W - 1, H - 1) / 2), mirror-extended beyond the borders; the identity is exact."""
  _, height, width, _ = x.shape
  centre_row, centre_col = (height - 1) / 2, (width - 1) / 2
  rows, cols = jnp.meshgrid(
    jnp.arange(height) - centre_row, jnp.arange(width) - centre_col, indexing="ij"
  )

  def warp_one(image: jax.Array, matrix: jax.Array) -> jax.Array:
    source_cols = matrix[0, 0] * cols + matrix[0, 1] * rows + matrix[0, 2] + centre_col
    source_rows = matrix[1, 0] * cols + matrix[1, 1] * rows + matrix[1, 2] + centre_row

    def sample(plane: jax.Array) -> jax.Array:
      return map_coordinates(plane, [source_rows, source_cols], order=1, mode="mirror")

    return jax.vmap(sample, in_axes=2, out_axes=2)(image)

  return jax.vmap(warp_one)(x, inverse)


# Colour transforms: one 4x4 matrix per example on homogeneous RGB.


def _color_matrix(draws: dict[str, Draws], p: jax.Array, active: Pipeline) -> jax.Array:
  """The product [B, 4, 4] saturation @ hue @ lumaflip @ contrast @ brightness of the active
  stages; stages not in `active`, or not applied to an example, are exactly the identity."""
  batch = draws["brightness"].uniform.shape[1]
  identity = np.eye(4, dtype=np.float32)
  luma_projector = np.outer(LUMA_AXIS, LUMA_AXIS)  # v v^T
  matrix = jnp.broadcast_to(identity, (batch, 4, 4))

  def then(factor: jax.Array) -> None:
    nonlocal matrix
    matrix = jnp.matmul(factor, matrix, precision=HIGHEST)

  def per_example(value: jax.Array) -> jax.Array:
    return value[:, None, None]

  if "brightness" in active:
    brightness = draws["brightness"]
    offset = jnp.where(brightness.uniform[0] < p, brightness.normal[0] * BRIGHTNESS_STD, 0.0)
    adds_offset = np.zeros((4, 4), np.float32)
    adds_offset[:3, 3] = 1.0
    then(identity + per_example(offset) * adds_offset)
  if "contrast" in active:
    contrast = _lognormal(draws["contrast"], p, CONTRAST_STD)
    then(identity + per_example(contrast - 1.0) * RGB_PART)
  if "lumaflip" in active:
    flip = _coin(draws["lumaflip"], p).astype(jnp.float32)
    then(identity - per_example(2.0 * flip) * luma_projector)
  if "hue" in active:
    hue = draws["hue"].uniform
    angle = _angle(hue[0] < p, hue[1])
    v0, v1, v2, _ = LUMA_AXIS
    cross = np.array([[0, -v2, v1, 0], [v2, 0, -v0, 0], [-v1, v0, 0, 0], [0, 0, 0, 0]], np.float32)
    cross_squared = luma_projector - RGB_PART  # [v]x^2 = v v^T - I on RGB
    then(
      identity
      + per_example(jnp.sin(angle)) * cross
      + per_example(1.0 - jnp.cos(angle)) * cross_squared
    )  # Rodrigues' rotation about v
  if "saturation" in active:
    saturation = _lognormal(draws["saturation"], p, SATURATION_STD)
    then(identity + per_example(saturation - 1.0) * (RGB_PART - luma_projector))
  return matrix


def _apply_color(x: jax.Array, matrix: jax.Array) -> jax.Array:
  """x [B, H, W, C] -> C[:3, :3] x + C[:3, 3] for RGB; gray * sum(m[:3]) + m[3] with m the mean of
  C's colour rows for grayscale. Elementwise products, so no reduced-precision matmul."""
  if x.shape[-1] == 3:
    linear = matrix[:, None, None, :3, :3]
    return (linear * x[..., None, :]).sum(axis=-1) + matrix[:, None, None, :3, 3]
  mean_row = matrix[:, :3, :].mean(axis=1)
  gain, offset = mean_row[:, :3].sum(axis=-1), mean_row[:, 3]
  return x * gain[:, None, None, None] + offset[:, None, None, None]


def ada_augment(
  x: jax.Array, rng: jax.Array, p: jax.Array | float, pipeline: Pipeline
) -> jax.Array:
  """Applies each augmentation of `pipeline` to each example with probability p; [B, H, W, C] ->
  same, C in {1, 3}, differentiable in x. Order: blit stages, one geometric warp, one colour
  matrix. Each augmentation has its own key, independent of which others are active."""
  if isinstance(pipeline, str):
    raise ValueError(f"ADA pipeline must be a tuple of names; use parse_pipeline({pipeline!r}).")
  _check_augmentations(pipeline)
  if x.ndim != 4 or x.shape[-1] not in (1, 3):
    raise ValueError(f"ADA needs images [B, H, W, C] with C = 1 or 3, got shape {x.shape}.")
  batch, height, width, _ = x.shape
  if "rotate90" in pipeline and height != width:
    raise ValueError(f"ADA rotate90 needs square images, got {height}x{width}.")
  p = jnp.asarray(p, jnp.float32)
  draws = _draws(rng, batch)

  for name in BLIT:
    if name in pipeline:
      x = BLIT_STAGES[name](x, draws[name], p)

  geometric = tuple(name for name in GEOMETRIC if name in pipeline)
  if geometric:
    inverse = _geometric_inverse(draws, p, height, width, geometric)
    moved = jnp.any(inverse != jnp.eye(3), axis=(1, 2))
    x = _select(moved, _warp(x, inverse), x)

  color = tuple(name for name in COLOR if name in pipeline)
  if color:
    matrix = _color_matrix(draws, p, color)
    recoloured = jnp.any(matrix != jnp.eye(4), axis=(1, 2))
    x = _select(recoloured, _apply_color(x, matrix), x)
  return x


def ada_init_state() -> AdaState:
  """p = 0 and empty accumulators of sign(D(real))."""
  return {
    "p": jnp.zeros((), jnp.float32),
    "sign_sum": jnp.zeros((), jnp.float32),
    "count": jnp.zeros((), jnp.int32),
  }


def ada_update(
  state: AdaState,
  real_sign_mean: jax.Array,
  *,
  target: float,
  interval: int,
  images_per_update: int,
  speed_kimg: float,
) -> tuple[AdaState, jax.Array]:
  """Accumulates one D update's batch mean of sign(D(augmented reals)); every `interval` updates
  steps p by sign(r_t - target) * images_per_update * interval / (speed_kimg * 1000), clipped to
  [0, 1], and resets the accumulators. Returns (new state, r_t = sign_sum / count after this
  update, before any reset). Paper defaults: target 0.6, interval 4, speed_kimg 500."""
  sign_sum = state["sign_sum"] + jnp.asarray(real_sign_mean, jnp.float32)
  count = state["count"] + 1
  rt = sign_sum / count
  adjust = count >= interval
  step = jnp.sign(rt - target) * (images_per_update * interval / (speed_kimg * 1000.0))
  new_state = {
    "p": jnp.where(adjust, jnp.clip(state["p"] + step, 0.0, 1.0), state["p"]),
    "sign_sum": jnp.where(adjust, 0.0, sign_sum),
    "count": jnp.where(adjust, 0, count),
  }
  return new_state, rt

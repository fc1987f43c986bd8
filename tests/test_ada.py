"""ADA augmentations (genjax/gan/ada.py) against exact expectations: p = 0 is the identity bitwise,
blits are exact permutations of the pixels (checked against numpy's reflect padding), the warp
reproduces exact shifts and rotations, colour matrices act as their definitions say, and the
controller steps p by the paper's rule. Post-processing is numpy, so each test compiles once."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.gan import ada
from genjax.gan.ada import Pipeline, ada_augment, ada_init_state, ada_update, parse_pipeline


@functools.partial(jax.jit, static_argnums=3)
def _augment(x: jax.Array, seed: jax.Array, p: jax.Array, pipeline: Pipeline) -> jax.Array:
  return ada_augment(x, jax.random.key(seed), p, pipeline)


def augment(x: np.ndarray, seed: int, p: float, pipeline: Pipeline) -> np.ndarray:
  """ada_augment under jit with the seed and p traced (one compile per shape and pipeline)."""
  return np.asarray(_augment(x, np.uint32(seed), np.float32(p), pipeline))


def images(seed: int, shape: tuple[int, ...]) -> np.ndarray:
  return np.random.default_rng(seed).uniform(-1.0, 1.0, shape).astype(np.float32)


def numpy_shift(image: np.ndarray, shift_rows: int, shift_cols: int, pad: int) -> np.ndarray:
  """out[i, j] = image[i - shift_rows, j - shift_cols], numpy "reflect" (edge not repeated)."""
  height, width = image.shape[:2]
  padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
  top, left = pad - shift_rows, pad - shift_cols
  return padded[top : top + height, left : left + width]


def changed_examples(y: np.ndarray, x: np.ndarray) -> int:
  return int((y != x).any(axis=(1, 2, 3)).sum())


def test_zero_probability_returns_the_input_and_its_gradient_bitwise():
  pipeline = parse_pipeline("bgc")
  gray = images(0, (8, 16, 16, 1))
  assert np.array_equal(augment(gray, 1, 0.0, pipeline), gray)
  assert changed_examples(augment(gray, 1, 0.5, pipeline), gray) >= 4  # same compiled function

  @jax.jit
  def augment_and_pull_back(x, weights, p):  # y and the gradient of sum(y * weights) w.r.t. x
    y, pull_back = jax.vjp(lambda x: ada_augment(x, jax.random.key(1), p, pipeline), x)
    return y, pull_back(weights)[0]

  rgb, weights = images(1, (8, 16, 16, 3)), images(2, (8, 16, 16, 3))
  y, grad = map(np.asarray, augment_and_pull_back(rgb, weights, np.float32(0.0)))
  assert np.array_equal(y, rgb) and np.array_equal(grad, weights)
  y, grad = map(np.asarray, augment_and_pull_back(rgb, weights, np.float32(0.5)))
  assert changed_examples(y, rgb) >= 4
  assert np.all(np.isfinite(grad)) and np.abs(grad - weights).max() > 0.1


def test_xflip_flips_each_image_exactly_or_not_at_all():
  x = images(0, (64, 8, 8, 3))
  y = augment(x, 2, 1.0, ("xflip",))
  flipped = [np.array_equal(y[b], x[b, :, ::-1]) for b in range(64)]
  kept = [np.array_equal(y[b], x[b]) for b in range(64)]
  assert all(f != k for f, k in zip(flipped, kept, strict=True))
  # i ~ U{0, 1} when applied, as in the paper: the flip rate is p / 2, never above 1/2 (no leak).
  assert 16 <= sum(flipped) <= 48


def test_rotate90_gives_an_exact_quarter_turn_and_all_four_occur():
  x = images(0, (64, 8, 8, 1))
  y = augment(x, 3, 1.0, ("rotate90",))
  turns = []
  for b in range(64):
    matches = [k for k in range(4) if np.array_equal(y[b], np.rot90(x[b], k, axes=(0, 1)))]
    assert len(matches) == 1
    turns += matches
  assert set(turns) == {0, 1, 2, 3}
  with pytest.raises(ValueError, match="square"):
    ada_augment(np.zeros((1, 8, 6, 1), np.float32), jax.random.key(0), 1.0, ("rotate90",))


def test_xint_is_a_reflect_padded_integer_shift_within_an_eighth_of_the_size():
  x = images(0, (32, 16, 16, 3))
  y = augment(x, 4, 1.0, ("xint",))
  bound = 2  # round(0.125 * 16)
  shifts = set()
  for b in range(32):
    matches = [
      (rows, cols)
      for rows in range(-bound - 1, bound + 2)
      for cols in range(-bound - 1, bound + 2)
      if np.array_equal(y[b], numpy_shift(x[b], rows, cols, pad=bound + 1))
    ]
    assert len(matches) == 1 and max(map(abs, matches[0])) <= bound, matches
    shifts.add(matches[0])
  assert len(shifts) >= 8


def test_warp_is_exact_for_identity_shift_and_quarter_turn():
  x = images(0, (2, 8, 8, 3))
  identity = np.eye(3, dtype=np.float32)
  shift = identity.copy()
  shift[0, 2] = -1.0  # output pixel (column j, row i) reads input column j - 1
  quarter_turn = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]], np.float32)  # reads (-row, column)
  matrices = np.stack([np.broadcast_to(m, (2, 3, 3)) for m in (identity, shift, quarter_turn)])
  kept, shifted, turned = np.asarray(jax.jit(jax.vmap(ada._warp, in_axes=(None, 0)))(x, matrices))
  np.testing.assert_allclose(kept, x, atol=1e-6)
  np.testing.assert_allclose(shifted[:, :, 1:], x[:, :, :-1], atol=1e-6)
  expected = np.stack([numpy_shift(image, 0, 1, pad=1) for image in x])
  np.testing.assert_allclose(shifted, expected, atol=1e-6)  # the mirror border of xint
  np.testing.assert_allclose(turned, np.rot90(x, 1, axes=(1, 2)), atol=1e-6)


def test_geometric_pipeline_interpolates_within_the_input_range():
  x = images(0, (16, 16, 16, 3))
  y = augment(x, 5, 1.0, parse_pipeline("geom"))
  assert np.abs(y - x).max() > 0.5
  assert y.min() >= x.min() - 1e-6 and y.max() <= x.max() + 1e-6


def test_brightness_adds_one_scalar_per_image():
  x = images(0, (64, 8, 8, 3))
  offsets = augment(x, 6, 1.0, ("brightness",)) - x
  per_image = offsets.mean(axis=(1, 2, 3), keepdims=True)
  np.testing.assert_allclose(offsets, np.broadcast_to(per_image, x.shape), atol=1e-6)
  assert 0.13 < per_image.std() < 0.27  # N(0, 0.2^2)


def test_grayscale_lumaflip_negates_or_keeps_each_image():
  x = images(0, (64, 8, 8, 1))
  y = augment(x, 7, 1.0, ("lumaflip",))
  kept = np.array([np.array_equal(y[b], x[b]) for b in range(64)])
  negated = np.array([np.allclose(y[b], -x[b], rtol=0, atol=1e-6) for b in range(64)])
  assert np.all(kept != negated) and 16 <= kept.sum() <= 48


def test_hue_and_saturation_leave_grayscale_alone():
  gray = images(0, (16, 8, 8, 1))
  np.testing.assert_allclose(augment(gray, 8, 1.0, ("hue", "saturation")), gray, atol=1e-5)


def test_hue_rotates_and_saturation_scales_the_chroma_keeping_the_luma():
  rgb = images(1, (16, 8, 8, 3))
  chroma = rgb - rgb.mean(axis=-1, keepdims=True)  # the component orthogonal to (1, 1, 1)
  rotated, scaled = augment(rgb, 8, 1.0, ("hue",)), augment(rgb, 8, 1.0, ("saturation",))
  for y in (rotated, scaled):
    np.testing.assert_allclose(y.mean(axis=-1), rgb.mean(axis=-1), atol=1e-5)
  rotated_chroma = rotated - rotated.mean(axis=-1, keepdims=True)
  np.testing.assert_allclose(np.linalg.norm(rotated_chroma, axis=-1),
                             np.linalg.norm(chroma, axis=-1), atol=1e-5)
  assert np.abs(rotated - rgb).max() > 0.1
  scaled_chroma = scaled - scaled.mean(axis=-1, keepdims=True)
  factor = (scaled_chroma * chroma).sum(axis=(1, 2, 3)) / (chroma * chroma).sum(axis=(1, 2, 3))
  np.testing.assert_allclose(scaled_chroma, factor[:, None, None, None] * chroma, atol=1e-5)
  assert np.all(factor > 0) and np.log2(factor).std() > 0.5  # 2^N(0, 1)


def test_grayscale_colour_is_the_channel_mean_of_the_rgb_result_on_gray_pixels():
  gray, pipeline = images(0, (16, 8, 8, 1)), parse_pipeline("color")
  rgb = augment(np.repeat(gray, 3, axis=-1), 9, 1.0, pipeline)
  np.testing.assert_allclose(augment(gray, 9, 1.0, pipeline), rgb.mean(axis=-1, keepdims=True),
                             atol=1e-5)


def test_blit_at_small_p_keeps_the_clean_image_most_frequent():
  image = images(0, (8, 8, 1))
  y = augment(np.broadcast_to(image, (4096, 8, 8, 1)), 11, 0.2, parse_pipeline("blit"))
  outputs, counts = np.unique(y.reshape(4096, -1), axis=0, return_counts=True)
  assert np.array_equal(outputs[np.argmax(counts)], image.reshape(-1))
  # P(clean) = (1 - p/2) (1 - 3p/4) (1 - 3p/4) = 0.65: flip half the time, k = 0 and a zero
  # shift (|U[-1, 1)| < 1/2 on both axes) a quarter of the time.
  assert 0.6 < counts.max() / 4096 < 0.7


def test_parameters_follow_the_official_defaults_at_p_one_half():
  @jax.jit
  def parameters(seed: jax.Array) -> dict[str, jax.Array]:
    draws, p = ada._draws(jax.random.key(seed), 8192), jnp.float32(0.5)

    def geometric(name: str) -> jax.Array:
      return ada._geometric_inverse(draws, p, 32, 32, (name,))

    def color(name: str) -> jax.Array:
      return ada._color_matrix(draws, p, (name,))

    return {  # each augmentation's parameter, read back from its matrix; identity = not applied
      "scale": 1.0 / geometric("scale")[:, 0, 0],
      "aniso": 1.0 / geometric("aniso")[:, 0, 0],
      "xfrac": -geometric("xfrac")[:, 0, 2] / 32,
      "rotate": 1.0 + jnp.abs(geometric("rotate")[:, 0, 1]),  # 1 + |sin| of the total angle
      "brightness": color("brightness")[:, 0, 3],
      "contrast": color("contrast")[:, 0, 0],
      "saturation": 1.0 - 3.0 * color("saturation")[:, 0, 1],  # (s - 1)(0 - 1/3) off-diagonal
    }

  values = jax.tree.map(np.asarray, parameters(np.uint32(12)))
  for name, identity, spread, expected in [
    ("scale", 1.0, np.log2, 0.2),
    ("aniso", 1.0, np.log2, 0.2),
    ("xfrac", 0.0, None, 0.125),
    ("brightness", 0.0, None, 0.2),
    ("contrast", 1.0, np.log2, 0.5),
    ("saturation", 1.0, np.log2, 1.0),
    ("rotate", 1.0, None, None),
  ]:
    applied = values[name] != identity
    assert 0.47 < applied.mean() < 0.53, name  # P(applied) = p; for rotate, P(pre or post) = p
    if expected is not None:
      samples = values[name][applied]
      std = (spread(samples) if spread else samples).std()
      assert expected * 0.95 < std < expected * 1.05, (name, std)


def run_controller(signs: list[float], **settings) -> list[tuple[float, float, int, float]]:
  update = jax.jit(functools.partial(ada_update, **settings))
  state, trace = ada_init_state(), []
  for sign in signs:
    state, rt = update(state, jnp.float32(sign))
    trace.append((float(state["p"]), float(state["sign_sum"]), int(state["count"]), float(rt)))
  return trace


def test_controller_raises_p_while_discriminator_is_certain_and_clips_at_one():
  settings = {"target": 0.6, "interval": 4, "images_per_update": 32, "speed_kimg": 0.512}  # step 0.25
  trace = run_controller([1.0] * 24, **settings)
  for update, (p, sign_sum, count, rt) in enumerate(trace, start=1):
    assert p == pytest.approx(min(update // 4 * 0.25, 1.0), abs=1e-6)
    assert count == update % 4 and sign_sum == pytest.approx(update % 4) and rt == 1.0
  paper = run_controller([1.0] * 4, target=0.6, interval=4, images_per_update=64, speed_kimg=500)
  assert paper[-1][0] == pytest.approx(64 * 4 / 500_000, rel=1e-6)


def test_controller_keeps_p_at_zero_and_lowers_it_when_discriminator_is_uncertain():
  settings = {"target": 0.6, "interval": 4, "images_per_update": 32, "speed_kimg": 0.512}
  assert all(p == 0.0 and rt == 0.0 for p, _, _, rt in run_controller([0.0] * 12, **settings))
  trace = run_controller([1.0] * 8 + [0.5] * 4, **settings)
  assert [p for p, *_ in trace[3::4]] == pytest.approx([0.25, 0.5, 0.25])
  assert trace[-1][3] == pytest.approx(0.5)


def test_parse_pipeline_accepts_registered_and_listed_names():
  assert parse_pipeline("bgc") == ada.BLIT + ada.GEOMETRIC + ada.COLOR
  assert parse_pipeline("bg") == ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")
  assert parse_pipeline("rotate90, xflip") == ("xflip", "rotate90")  # canonical order
  with pytest.raises(ValueError, match="Did you mean 'xflip'.*augmentations: xflip, rotate90"):
    parse_pipeline("xflp")
  with pytest.raises(ValueError, match="C = 1 or 3"):
    ada_augment(np.zeros((1, 8, 8, 2), np.float32), jax.random.key(0), 0.5, ("xflip",))


# --- ADA in the GAN family ----------------------------------------------------------------------


@pytest.mark.slow
def test_p_rises_on_a_memorised_set_until_r_t_reaches_its_target_and_stays_0_on_fresh_data():
  """A discriminator that has memorised 64 images (+1 on exactly those, -1 on anything else) sees
  them augmented with the current p: r_t = 2 P(unchanged) - 1 starts at 1 > 0.6, so p rises until
  about 80% of reals pass unchanged (p near 0.1 for "blit" on 16x16), then hovers there. On fresh
  images the same discriminator says -1 (r_t = -1): p never leaves 0."""
  memorised = jnp.asarray(images(0, (64, 16, 16, 1)))
  fresh = jnp.asarray(images(1, (64, 16, 16, 1)))
  blit = parse_pipeline("blit")

  @jax.jit
  def update(state, reals, key):
    augmented = ada_augment(reals, key, state["p"], blit)
    distance = jnp.abs(augmented[:, None] - memorised[None]).max(axis=(2, 3, 4)).min(axis=1)
    sign_mean = jnp.where(distance < 1e-6, 1.0, -1.0).mean()
    return ada_update(state, sign_mean, target=0.6, interval=4, images_per_update=64,
                      speed_kimg=12.8)  # p moves 0.02 per adjustment

  for reals, expect_rise in ((memorised, True), (fresh, False)):
    state, ps, rts = ada_init_state(), [], []
    for index in range(400):
      state, rt = update(state, reals, jax.random.key(index))
      ps.append(float(state["p"]))
      rts.append(float(rt))
    if expect_rise:
      assert max(ps[:40]) >= 0.04  # rose from the start
      assert 0.04 < np.mean(ps[200:]) < 0.25  # and hovers near the equilibrium
      assert abs(np.mean(rts[200:]) - 0.6) < 0.15
    else:
      assert max(ps) == 0.0 and np.mean(rts) == -1.0


GAN_ON_16_IMAGES = {
  "data.name": "synthetic_images", "data.synthetic_shape": (16, 16, 1), "data.num_examples": 16,
  "data.image_size": 0, "model.g_features": (32, 16), "model.d_features": (16, 32),
  "model.d_downsample": (True, True), "training.batch_size": 16, "sampling.standing_stats_samples": 16,
}


def _gan_family(load, **overrides):
  from genjax import parallel
  from genjax.datasets import dataset_info
  from genjax.families import get_family

  config = load("dcgan_mnist.py:tiny", **GAN_ON_16_IMAGES, **overrides)
  return get_family("gan")(config, dataset_info(config.data), parallel.make_mesh())


def test_with_p_zero_no_augmentation_reaches_the_losses(load):
  plain, adaptive = _gan_family(load), _gan_family(load, **{"model.augment": "ada"})
  batch = {"x": jnp.asarray(images(2, (16, 16, 16, 1))), "label": jnp.zeros((16,), jnp.int32)}
  params, model_state = adaptive.init(jax.random.key(0), batch)
  assert float(model_state["ada"]["p"]) == 0.0
  plain_state = {k: v for k, v in model_state.items() if k != "ada"}
  rng = jax.random.key(3)
  for family, state in ((plain, plain_state), (adaptive, model_state)):
    g_loss, _ = family.generator_loss(params["generator"], params["discriminator"], state, rng, 16)
    d_loss, _ = family.discriminator_loss(params["discriminator"], params["generator"], state, batch,
                                          rng)
    if family is plain:
      expected = (g_loss, d_loss)
  assert (float(g_loss), float(d_loss)) == (float(expected[0]), float(expected[1]))
  half = {**model_state, "ada": {**model_state["ada"], "p": jnp.float32(0.5)}}
  g_half, _ = adaptive.generator_loss(params["generator"], params["discriminator"], half, rng, 16)
  assert float(g_half) != float(expected[0])


@pytest.mark.slow
def test_ada_trains_logs_p_and_r_t_and_checkpoints_p(load, tmp_path):
  from conftest import train_on_synthetic_data

  config = load("dcgan_mnist.py:tiny", **GAN_ON_16_IMAGES,
                **{"model.augment": "ada", "model.ada_kimg": 0.256})  # 0.25 per adjustment
  experiment, _, state, metrics = train_on_synthetic_data(config, tmp_path, steps=8)
  experiment.checkpointer.close()
  assert {"ada_p", "ada_rt", "d_real_sign"} <= set(metrics)
  p = float(state.model_state["ada"]["p"])
  assert p in (0.0, 0.25, 0.5) and int(state.model_state["ada"]["count"]) == 0  # 2 adjustments
  assert float(metrics["ada_p"]) == p


def test_augment_choices_and_their_errors(load):
  with pytest.raises(ValueError, match="Unknown model.augment 'adaa'"):
    _gan_family(load, **{"model.augment": "adaa"})
  with pytest.raises(ValueError, match="applies only with model.augment='diffaugment'"):
    _gan_family(load, **{"model.diffaugment": "color"})
  with pytest.raises(ValueError, match="Unknown ADA pipeline|xflp"):
    _gan_family(load, **{"model.augment": "ada", "model.ada_pipeline": "xflp"})
  assert _gan_family(load, **{"model.augment": "diffaugment"}).diffaugment_policy == (
    "color", "translation", "cutout")

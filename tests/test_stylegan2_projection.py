"""Projection into StyleGAN2's W+ (genjax.gan.projection) and --mode=project (genjax.trainer.project)."""

import json
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from genjax.datasets import DataError, load_images
from genjax.gan.projection import (
  ProjectionSettings,
  learning_rate,
  noise_regularization,
  normalize_noise,
  project,
  w_noise_scale,
  w_statistics,
)
from genjax.gan.stylegan2 import mix_styles
from genjax.models import stylegan2 as networks


def test_noise_regularization_sums_the_shifted_autocorrelations_over_scales():
  """A constant map correlates fully with its shifts at every scale (32, 16, 8: 3 x 2 terms of 1);
  a checkerboard anticorrelates at 32 (2 terms of (-1)^2) and averages to 0 below."""
  ones = jnp.ones((32, 32))
  checkerboard = (-1.0) ** (jnp.arange(32)[:, None] + jnp.arange(32)[None, :])
  assert float(noise_regularization([ones])) == pytest.approx(6.0)
  assert float(noise_regularization([checkerboard])) == pytest.approx(2.0)
  assert float(noise_regularization([ones, checkerboard, jnp.ones((4, 4))])) == pytest.approx(10.0)
  white = jax.random.normal(jax.random.key(0), (256, 256))
  assert float(noise_regularization([white])) < 1e-3
  normalized = normalize_noise(3.0 + 2.0 * white)
  assert float(normalized.mean()) == pytest.approx(0.0, abs=1e-5)
  assert float(jnp.mean(normalized**2)) == pytest.approx(1.0, rel=1e-5)


def test_schedules_follow_the_official_projector():
  """lr: 0 at the start, linear ramp-up over 5%, flat, then a half-cosine ramp-down over the last
  25%; exploration noise on w: w_std 0.05 (1 - t / 0.75)^2, 0 after 75%."""
  settings = ProjectionSettings()
  lr = lambda step: float(learning_rate(jnp.float32(step), settings))
  assert lr(0) == 0.0
  assert lr(25) == pytest.approx(0.05)  # t = 0.025: half the ramp-up
  assert lr(500) == pytest.approx(0.1)
  assert lr(875) == pytest.approx(0.05)  # (1 - t) / 0.25 = 0.5: cos(pi / 2)
  scale = lambda step: float(w_noise_scale(jnp.float32(step), settings, jnp.float32(2.0)))
  assert scale(0) == pytest.approx(0.1)
  assert scale(375) == pytest.approx(0.1 * 0.25)
  assert scale(800) == 0.0
  with pytest.raises(ValueError, match="multiple of projection.num_snapshots"):
    ProjectionSettings(num_steps=1000, num_snapshots=3)
  with pytest.raises(ValueError, match="projection.space"):
    ProjectionSettings(space="z")


def test_w_plus_projection_recovers_a_style_mixed_image():
  """A tiny random generator's image of a style-mixed ws (two latents, crossover at entry 5) with
  its constant noise: projecting into W+ from w_avg brings the pixel MSE below 1% of w_avg's, and
  W+ fits it at least 4x better than W (one w for every entry cannot mix two styles)."""
  generator = networks.StyleGAN2Generator(
    32, 1, w_dim=16, mapping_layers=2, channel_base=128, channel_max=16
  )
  variables = generator.init(jax.random.key(0), jnp.zeros((2, 16)), None, noise_mode="const")
  ws = generator.apply(variables, jax.random.normal(jax.random.key(1), (2000, 16)), method="map")
  w_avg, w_std = w_statistics(ws[:, 0])
  assert w_avg.shape == (16,) and float(w_std) == pytest.approx(
    float(jnp.sqrt(jnp.mean(jnp.sum((ws[:, 0] - ws[:, 0].mean(0)) ** 2, axis=1))))
  )
  noise = {name: layer["noise_const"] for name, layer in variables["buffers"]["synthesis"].items()}

  def synthesize(ws, noise):
    buffers = {
      **variables["buffers"],
      "synthesis": {k: {"noise_const": v} for k, v in noise.items()},
    }
    return generator.apply(
      {"params": variables["params"], "buffers": buffers}, ws[None], "const", method="synthesize"
    )[0]

  target = synthesize(mix_styles(ws[:1], ws[1:2], 5)[0], noise)
  start = jnp.mean(jnp.square(synthesize(jnp.broadcast_to(w_avg, ws.shape[1:]), noise) - target))
  errors = {}
  for space in ("w_plus", "w"):
    settings = ProjectionSettings(space=space, num_steps=200, num_snapshots=4, optimize_noise=False)
    result = jax.jit(
      lambda target, s=settings: project(
        synthesize, target, w_avg, w_std, noise, generator.num_ws, jax.random.key(2), s
      )
    )(target)
    assert result.ws.shape == ws.shape[1:] and result.snapshots.shape == (4, 32, 32, 1)
    assert result.distances.shape == (200,)
    np.testing.assert_allclose(result.image, synthesize(result.ws, noise), atol=1e-5)
    errors[space] = float(jnp.mean(jnp.square(result.image - target)))
    if space == "w":
      assert float(jnp.ptp(result.ws, axis=0).max()) == 0.0  # one w for every entry
  assert errors["w_plus"] < 0.01 * float(start)
  assert errors["w_plus"] < 0.25 * errors["w"]


def test_load_images_pads_small_images_and_resizes_others(tmp_path):
  digit = np.zeros((28, 28), np.uint8)
  digit[4:24, 12:16] = 255
  Image.fromarray(digit).save(tmp_path / "digit.png")
  photo = np.zeros((64, 64, 3), np.uint8)
  photo[:, 32:] = (200, 100, 0)
  Image.fromarray(photo).save(tmp_path / "photo.jpg")
  names, pixels = load_images(tmp_path, (32, 32, 1))
  assert names == ["digit.png", "photo.jpg"] and pixels.shape == (2, 32, 32, 1)
  np.testing.assert_array_equal(pixels[0, 2:30, 2:30, 0], digit)
  assert pixels[0].sum() == digit.sum()
  assert pixels[1, :, :15].max() <= 2 and pixels[1, :, 17:].min() > 100  # halved, grayscale
  assert load_images(tmp_path / "digit.png", (32, 32, 1))[0] == ["digit.png"]
  (tmp_path / "broken.png").write_bytes(b"not a png")
  with pytest.raises(DataError, match="broken.png"):
    load_images(tmp_path, (32, 32, 1))
  with pytest.raises(DataError, match="neither an image file nor a folder"):
    load_images(tmp_path / "missing.png", (32, 32, 1))


def test_project_mode_writes_the_projections_of_a_folder(load, tmp_path):
  """--mode=project on a checkpoint of the tiny config (its initial state), three targets in
  batches of two: the progress grid, and projections that G reproduces from the saved ws and noise
  maps, with the pixel error falling along the way and reported per target."""
  from genjax import trainer
  from genjax.datasets import dataset_info

  config = load(
    "stylegan2_mnist.py:tiny",
    **{
      "projection.num_steps": 40,
      "projection.num_snapshots": 4,
      "projection.w_samples": 256,
      "projection.batch_size": 2,
    },
  )
  experiment = trainer.Experiment(config, tmp_path / "run", dataset_info(config.data))
  try:
    state = experiment.init_state()
    experiment.checkpointer.save(0, state, types.SimpleNamespace(get_state=dict), config)
    experiment.checkpointer.wait()
  finally:
    experiment.checkpointer.close()
  targets = tmp_path / "targets"
  targets.mkdir()
  for index in range(3):
    digit = np.zeros((28, 28), np.uint8)
    digit[4:24, 6 + 6 * index : 10 + 6 * index] = 255
    Image.fromarray(digit).save(targets / f"digit{index}.png")

  with pytest.raises(ValueError, match="projection.target"):
    trainer.project(config, tmp_path / "run")
  config.projection.target = str(targets)
  paths = trainer.project(config, tmp_path / "run")
  folder = tmp_path / "run" / "projections" / "0000000"
  assert {p.name for p in paths} == {"progress.png", "projections.npz", "projections.json"}
  progress = np.asarray(Image.open(folder / "progress.png"))
  assert progress.shape[:2] == (3 * 34 + 2, 5 * 34 + 2)  # rows: target + 4 snapshots

  saved = np.load(folder / "projections.npz")
  assert list(saved["names"]) == ["digit0.png", "digit1.png", "digit2.png"]
  assert saved["ws"].shape == (3, experiment.family.num_ws, 16)
  assert saved["distances"].shape == (3, 40)
  assert np.all(saved["distances"][:, -1] < 0.5 * saved["distances"][:, 0])
  np.testing.assert_allclose(saved["targets"][0, 6:26, 8:12], 1.0)  # padded like the pipeline
  family, buffers = experiment.family, state.model_state["g_buffers"]
  noise = {name: {"noise_const": saved[f"noise/{name}"][1]} for name in buffers["synthesis"]}
  again = family._synthesize(
    state.ema_params["generator"], {**buffers, "synthesis": noise}, saved["ws"][1:2], "const"
  )
  np.testing.assert_allclose(family._to_value_range(again)[0], saved["images"][1], atol=1e-5)

  report = json.loads((folder / "projections.json").read_text())
  assert report["space"] == "w_plus" and set(report["targets"]) == set(saved["names"])
  for name, values in report["targets"].items():
    index = list(saved["names"]).index(name)
    unit = lambda x: np.clip((x + 1) / 2, 0, 1)
    mse = np.mean((unit(saved["images"][index]) - unit(saved["targets"][index])) ** 2)
    assert values["mse"] == pytest.approx(mse, rel=1e-5)
    assert values["psnr_db"] == pytest.approx(10 * np.log10(1 / mse), rel=1e-5)

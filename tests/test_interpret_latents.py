"""Latent-space tools (genjax.interpret.latents): traversals on a decoder with known columns, the
per-dimension KL in closed form, PCA recovering a planted subspace, slerp's geometry, and the
vae_traversal / latent_interpolation tools on an untrained tiny VAE run."""

from __future__ import annotations

import math
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import MNIST_DIR

from genjax import interpret, trainer
from genjax.interpret import latents
from genjax.vae.likelihoods import gaussian_kl_to_standard


def test_traversing_a_latent_of_a_linear_decoder_moves_along_its_column():
  latent_dim, pixels = 5, 12
  weights = jax.random.normal(jax.random.key(0), (pixels, latent_dim))  # W [P, D]
  bias = jax.random.normal(jax.random.key(1), (pixels,))

  def decode(z):  # [B, D] -> images [B, 3, 4, 1]: x = W z + b
    return (z @ weights.T + bias).reshape(-1, 3, 4, 1)

  center = jax.random.normal(jax.random.key(2), (latent_dim,))
  dims = jnp.array([3, 0])
  offsets = jnp.array([-2.0, 0.0, 0.5, 3.0])
  strip = latents.traverse(decode, center, jnp.eye(latent_dim)[dims], offsets)

  assert strip.shape == (2, 4, 3, 4, 1)
  moved = strip.reshape(2, 4, pixels) - decode(center[None]).reshape(pixels)
  expected = offsets[None, :, None] * weights.T[dims][:, None, :]  # offset * W[:, d]
  np.testing.assert_allclose(moved, expected, atol=1e-5)


def test_kl_per_dimension_is_the_closed_form_and_ranks_the_planted_dimension_first():
  mean = jnp.array([[0.0, 1.0, 2.0], [0.0, -1.0, 0.0]])
  log_std = jnp.array([[0.0, math.log(0.5), 0.0], [0.0, math.log(0.5), math.log(2.0)]])
  kl = latents.vae_kl_per_dimension(mean, log_std)
  by_hand = lambda m, s: 0.5 * (m**2 + s**2 - 1) - math.log(s)
  expected = [
    0.0,
    by_hand(1.0, 0.5),
    0.5 * (by_hand(2.0, 1.0) + by_hand(0.0, 2.0)),
  ]
  np.testing.assert_allclose(kl, expected, rtol=1e-6)
  np.testing.assert_allclose(kl.sum(), gaussian_kl_to_standard(mean, log_std).mean(), rtol=1e-6)

  rng = np.random.default_rng(0)
  mean = 0.05 * rng.normal(size=(64, 10))
  log_std = -0.01 * np.abs(rng.normal(size=(64, 10)))
  mean[:, 7] = 3.0 * rng.normal(size=64)  # the only informative dimension
  log_std[:, 7] = -2.0
  kl = latents.vae_kl_per_dimension(jnp.asarray(mean), jnp.asarray(log_std))
  order = latents.ranked_dimensions(kl)
  assert order[0] == 7 and kl[7] > 3.0
  assert np.all(np.diff(np.asarray(kl)[order]) <= 0)


def test_principal_directions_recover_a_planted_rank_two_subspace():
  rng = np.random.default_rng(0)
  basis, _ = np.linalg.qr(rng.normal(size=(8, 2)))  # orthonormal true directions [8, 2]
  scales = np.array([3.0, 1.5])
  u = rng.normal(size=(2000, 2)) * scales
  codes = u @ basis.T + 0.05 * rng.normal(size=(2000, 8)) + 4.0  # A u + noise, off-centre

  directions, ratio, mean = latents.principal_directions(jnp.asarray(codes), 3)

  assert directions.shape == (3, 8) and ratio.shape == (3,)
  np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1.0, rtol=1e-5)
  cosines = np.abs(np.asarray(directions[:2]) @ basis)  # [found, true]
  assert cosines[0, 0] > 0.99 and cosines[1, 1] > 0.99, cosines
  assert float(ratio[:2].sum()) > 0.95 and ratio[0] > ratio[1] > ratio[2]
  np.testing.assert_allclose(mean, codes.mean(axis=0), rtol=1e-5)


def test_regression_to_latents_finds_the_latent_direction_of_each_component():
  """A first layer y = M z with M's right singular vectors known: GANSpace's regression of the
  activations' principal components maps back to them."""
  rng = np.random.default_rng(1)
  left, _ = np.linalg.qr(rng.normal(size=(20, 4)))
  right, _ = np.linalg.qr(rng.normal(size=(4, 4)))
  layer = left @ np.diag([5.0, 3.0, 2.0, 1.0]) @ right.T  # [A=20, Dz=4]
  z = rng.normal(size=(2000, 4))
  activations = z @ layer.T
  components, _, mean = latents.principal_directions(jnp.asarray(activations), 2)
  rows = latents.regress_to_latents(jnp.asarray(z), jnp.asarray(activations), components, mean)
  cosines = np.abs(np.sum(np.asarray(rows) * right[:, :2].T, axis=1))
  assert np.all(cosines > 0.99), cosines


def test_slerp_has_exact_endpoints_and_keeps_equal_norms():
  z0 = jax.random.normal(jax.random.key(0), (3, 16))
  z1 = jax.random.normal(jax.random.key(1), (3, 16))
  z1 = z1 / jnp.linalg.norm(z1, axis=1, keepdims=True) * jnp.linalg.norm(z0, axis=1, keepdims=True)
  ts = jnp.linspace(0.0, 1.0, 9)
  path = latents.slerp(z0, z1, ts)

  assert path.shape == (3, 9, 16)
  np.testing.assert_allclose(path[:, 0], z0, atol=1e-5)
  np.testing.assert_allclose(path[:, -1], z1, atol=1e-5)
  norms = jnp.linalg.norm(path, axis=-1)
  np.testing.assert_allclose(norms, jnp.broadcast_to(norms[:, :1], norms.shape), rtol=1e-5)
  straight = latents.lerp(z0, z1, ts)
  assert np.all(jnp.linalg.norm(straight[:, 4], axis=-1) < norms[:, 4])  # lerp cuts inside
  np.testing.assert_allclose(
    latents.slerp(z0, 2.0 * z0, ts), latents.lerp(z0, 2.0 * z0, ts), rtol=1e-5
  )  # parallel endpoints: the straight line


def test_interpolate_decodes_rows_of_paths():
  decode = lambda z: jnp.tile(z[:, :1, None, None], (1, 2, 2, 1))  # [B, 2] -> [B, 2, 2, 1]
  z0, z1 = jnp.array([[0.0, 1.0], [1.0, 0.0]]), jnp.array([[1.0, 0.0], [0.0, 1.0]])
  images = latents.interpolate(decode, z0, z1, 5, spherical=False)
  assert images.shape == (2, 5, 2, 2, 1)
  np.testing.assert_allclose(images[0, :, 0, 0, 0], [0.0, 0.25, 0.5, 0.75, 1.0], atol=1e-6)
  spherical = latents.interpolate(decode, z0, z1, 5, spherical=True)
  np.testing.assert_allclose(
    spherical[0, :, 0, 0, 0], np.sin(np.linspace(0, np.pi / 2, 5)), atol=1e-6
  )


@pytest.fixture(scope="module")
def tiny_vae(tmp_path_factory, tfds_dir):
  """(experiment, state) of an untrained vae_mnist:tiny run: its step-0 state, which is what its
  first checkpoint restores."""
  from genjax.config import apply_overrides, load_config
  from genjax.datasets import dataset_info

  config = load_config("configs/vae_mnist.py:tiny")
  apply_overrides(config, {"data.manual_dir": str(MNIST_DIR), "data.data_dir": str(tfds_dir)})
  experiment = trainer.Experiment(config, tmp_path_factory.mktemp("vae"), dataset_info(config.data))
  yield experiment, experiment.init_state()
  experiment.checkpointer.close()


def test_vae_tools_run_on_an_untrained_vae(tiny_vae):
  experiment, state = tiny_vae
  latent_dim = experiment.config.model.latent_dim

  traversal = interpret.run_tool("vae_traversal", experiment, state, jax.random.key(0))
  assert list(traversal.figures) == ["traversal"]
  summary = traversal.summary
  assert {"kl_nats_ranked", "active_dims", "total_kl_nats", "num_images"} <= set(summary)
  ranked = list(summary["kl_nats_ranked"].values())
  assert len(ranked) == latent_dim and ranked == sorted(ranked, reverse=True)
  assert summary["active_dims"] == sum(value > latents.ACTIVE_KL_NATS for value in ranked)
  assert summary["num_images"] == latents.NUM_KL_IMAGES
  axis = traversal.figures["traversal"].axes[0]
  assert len(axis.get_yticklabels()) == latents.NUM_TRAVERSED
  assert axis.get_yticklabels()[0].get_text().startswith("dim ")

  interpolation = interpret.run_tool("latent_interpolation", experiment, state, jax.random.key(1))
  assert list(interpolation.figures) == ["interpolation"]
  assert interpolation.summary["space"] == "z" and interpolation.summary["path"] == "slerp"
  assert interpolation.summary["pixel_step_max"] >= interpolation.summary["pixel_step_mean"] > 0


@pytest.mark.parametrize("family", ["gan", "diffusion"])
def test_vae_traversal_refuses_other_families(family):
  experiment = SimpleNamespace(config=SimpleNamespace(family=family))
  with pytest.raises(ValueError, match=f"does not apply to the '{family}' family"):
    interpret.run_tool("vae_traversal", experiment, None, jax.random.key(0))

"""Latent diffusion's stage-1 autoencoder (configs/autoencoder_mnist.py): the conv_spatial VAE's
latent and output shapes, the KL summed over every latent dimension, the z scale factor, and a
tiny run through the generic trainer whose eval JSON reports reconstruction error and the scale,
restored from its workdir the way a second stage would load it."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import MNIST_DIR

from genjax import interpret, parallel, trainer
from genjax.datasets import dataset_info
from genjax.families import get_family
from genjax.input_pipeline import eval_batches
from genjax.vae.latent_scale import latent_scale, latent_scale_factor

EVAL_EXAMPLES = 150  # two eval batches of 100, the second half padding


def _family(config):
  return get_family("vae")(config, dataset_info(config.data), parallel.make_mesh())


@pytest.mark.parametrize("image_size,latent_shape", [(0, (7, 7, 4)), (32, (8, 8, 4))])
def test_images_map_to_spatial_latents_and_back(load, image_size, latent_shape):
  family = _family(load("autoencoder_mnist.py:tiny", **{"data.image_size": image_size}))
  side = image_size or 28
  x = jax.ShapeDtypeStruct((3, side, side, 1), jnp.float32)
  params, _ = jax.eval_shape(family.init, jax.random.key(0), {"x": x})
  mean, log_std = jax.eval_shape(family._encode, params, x)
  assert family.latent_shape == latent_shape
  assert mean.shape == log_std.shape == (3, *latent_shape)
  decoded = jax.eval_shape(family._decode, params, mean)
  assert decoded.shape == (3, side, side, 2)  # the discretized Gaussian's mean and log-std
  samples = jax.eval_shape(lambda p, rng: family.sample(p, {}, rng, 5), params, jax.random.key(1))
  assert samples.shape == (5, side, side, 1)


def test_sides_must_be_multiples_of_the_downsampling_factor(load):
  with pytest.raises(ValueError, match="multiples of it"):
    _family(load("autoencoder_mnist.py:tiny", **{"model.conv_channels": (8, 8, 8)}))  # 28 % 8


def test_scale_factor_whitens_its_batch_and_ignores_padding_rows():
  z = 3.0 + 0.2 * jax.random.normal(jax.random.key(0), (6, 7, 7, 4))
  scale = latent_scale(z)
  np.testing.assert_allclose(jnp.std(scale * z), 1.0, rtol=1e-5)
  padded = jnp.concatenate([z, 100.0 * jnp.ones((2, 7, 7, 4))])
  np.testing.assert_allclose(latent_scale(padded, jnp.array([1.0] * 6 + [0.0] * 2)), scale, rtol=1e-5)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tfds_dir):
  """(config, workdir, experiment, state): autoencoder_mnist:tiny trained and evaluated by the
  generic trainer, then restored from its workdir as a second stage would load it."""
  from genjax.config import apply_overrides, load_config

  config = load_config("configs/autoencoder_mnist.py:tiny")
  apply_overrides(config, {"data.manual_dir": str(MNIST_DIR), "data.data_dir": str(tfds_dir),
                           "eval.num_examples": EVAL_EXAMPLES})
  workdir = tmp_path_factory.mktemp("autoencoder")
  trainer.train_and_evaluate(config, workdir)
  experiment, state, _ = trainer.restore_for_inference(config, workdir, None)
  yield config, workdir, experiment, state
  experiment.checkpointer.close()


def test_kl_of_spatial_latents_sums_the_closed_form_over_every_dimension(trained_run):
  _, _, experiment, state = trained_run
  family, params = experiment.family, experiment.eval_params(state)
  x = jax.random.uniform(jax.random.key(0), (4, 28, 28, 1))
  mean, log_std = (np.asarray(v, np.float64) for v in jax.jit(family._encode)(params, x))
  _, kl = jax.jit(family._elbo_terms)(params, x, jax.random.key(1))
  closed_form = 0.5 * (mean**2 + np.exp(2 * log_std) - 1.0) - log_std
  assert kl.shape == (4,)
  np.testing.assert_allclose(kl, closed_form.sum(axis=(1, 2, 3)), rtol=1e-5)


def test_a_tiny_run_reports_reconstruction_error_and_the_scale_factor(trained_run):
  config, workdir, experiment, state = trained_run
  record = json.loads((workdir / f"eval_{config.training.num_train_steps}.json").read_text())
  metrics, conventions = record["metrics"], record["protocol"]["likelihood_conventions"]
  assert {"eval/recon_mse", "eval/recon_psnr", "eval/latent_scale"} <= set(metrics)
  assert "eval/nll_iwae" not in metrics
  assert {"recon_mse", "recon_psnr", "latent_scale"} <= set(conventions)

  # The numbers, recomputed from the restored checkpoint on the same eval batches: latent_scale is
  # the scale factor of each batch's real rows, averaged over the images.
  family, params = experiment.family, experiment.eval_params(state)
  batches = eval_batches(config.data, config.eval.batch_size, num_examples=EVAL_EXAMPLES,
                         data_seed=config.seed, noise_seed=config.eval.seed)
  images = [batch["x"][batch["mask"] > 0] for batch in batches]
  scales = [latent_scale_factor(family, params, x) for x in images]
  sizes = [len(x) for x in images]
  assert sizes == [100, 50]
  np.testing.assert_allclose(metrics["eval/latent_scale"], np.average(scales, weights=sizes), rtol=1e-4)

  x = np.concatenate(images)
  mean, _ = jax.jit(family._encode)(params, x)
  np.testing.assert_allclose(jnp.std(scales[0] * mean[:100]), 1.0, rtol=1e-4)
  reconstruction = np.clip(family.likelihood.mean(jax.jit(family._decode)(params, mean)), 0.0, 1.0)
  mse = ((reconstruction - x) ** 2).mean(axis=(1, 2, 3))
  np.testing.assert_allclose(metrics["eval/recon_mse"], mse.mean(), rtol=1e-4)
  np.testing.assert_allclose(metrics["eval/recon_psnr"], np.mean(-10 * np.log10(mse)), rtol=1e-4)


def test_the_latent_tools_flatten_spatial_latents(trained_run):
  _, _, experiment, state = trained_run
  traversal = interpret.run_tool("vae_traversal", experiment, state, jax.random.key(0))
  assert traversal.summary["latent_dim"] == 7 * 7 * 4 == len(traversal.summary["kl_nats_ranked"])
  interpolation = interpret.run_tool("latent_interpolation", experiment, state, jax.random.key(1))
  assert interpolation.summary["pixel_step_max"] >= interpolation.summary["pixel_step_mean"] > 0

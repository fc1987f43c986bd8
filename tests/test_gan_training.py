"""The GAN family through the runner: mode coverage on the 8-Gaussian ring, exact resumption on
MNIST, divergence stops, CIFAR-10 paper architectures (parameter counts) and bad input."""

import json
import shutil

import jax
import numpy as np
import pytest
from conftest import train_on_synthetic_data, unmoved_kernels

from genjax import parallel, trainer
from genjax.datasets import dataset_info
from genjax.families import get_family


def _final_state(config, workdir):
  experiment = trainer.Experiment(config, workdir, dataset_info(config.data))
  try:
    return experiment.restore()[0]
  finally:
    experiment.checkpointer.close()


@pytest.mark.slow
def test_ring_of_8_gaussians_all_modes_covered(load, tmp_path):
  """VEEGAN/unrolled-GAN protocol: 2,500 samples of the EMA generator after the tiny run."""
  results = trainer.train_and_evaluate(load("gan_8gaussians.py:tiny"), tmp_path)
  assert results["step"] == 4000
  assert results["eval/raw_modes_covered"] == 8.0  # each mode gets >= 1/5 of its good samples
  assert results["eval/raw_high_quality"] > 0.5  # most samples lie within 3 std of a mode
  assert (tmp_path / "samples" / "samples_0004000.png").is_file()


@pytest.mark.slow
def test_tiny_mnist_dcgan_trains_and_resumes_bitwise(load, tmp_path):
  """4 straight steps == a fresh run restarted from the step-2 checkpoint (the straight run's own,
  copied alone into a new workdir) for 2 more steps: params, EMA, optimizer state, rng bitwise."""
  config = load(
    "dcgan_mnist.py:tiny",
    **{
      "training.num_train_steps": 4,
      "training.batch_size": 16,
      "training.checkpoint_every": 2,
      "training.log_every": 2,
      "eval.batch_size": 50,
      "eval.num_examples": 50,
      "sampling.grid_size": 16,
      "model.g_features": (16, 8, 4),
      "model.d_features": (4, 8, 16),
    },
  )
  results = trainer.train_and_evaluate(config, tmp_path / "straight")
  assert results["step"] == 4 and np.isfinite(results["eval/d_real"])
  assert {p.name for p in (tmp_path / "straight" / "samples").iterdir()} == {
    "samples_0000004.png",
    "interpolations_0000004.png",
  }
  shutil.copytree(
    tmp_path / "straight" / "checkpoints" / "2", tmp_path / "resumed" / "checkpoints" / "2"
  )
  assert trainer.train_and_evaluate(config, tmp_path / "resumed")["step"] == 4
  logged = [
    json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
  ]
  assert {r["step"] for r in logged if "train/d_loss" in r} == {4}  # it trained steps 3-4 only
  expected = _final_state(config, tmp_path / "straight")
  resumed = _final_state(config, tmp_path / "resumed")
  assert int(resumed.step) == 4
  for name in ("params", "ema_params", "opt_state", "model_state"):
    jax.tree.map(np.testing.assert_array_equal, getattr(expected, name), getattr(resumed, name))
  np.testing.assert_array_equal(jax.random.key_data(expected.rng), jax.random.key_data(resumed.rng))


def test_divergence_stops_with_the_step_and_keeps_the_last_good_checkpoint(load, tmp_path):
  base = {
    "training.num_train_steps": 10,
    "training.checkpoint_every": 5,
    "training.log_every": 5,
    "training.batch_size": 64,
    "eval.batch_size": 100,
    "eval.num_examples": 100,
    "sampling.grid_size": 100,
  }
  trainer.train_and_evaluate(load("gan_8gaussians.py:tiny", **base), tmp_path)
  diverging = load(
    "gan_8gaussians.py:tiny",
    **{**base, "training.num_train_steps": 20, "training.max_d_loss": 1e-3},
  )
  with pytest.raises(
    trainer.DivergedError,
    match=r"step 15: the discriminator loss reached .* above training.max_d_loss=0.001.*step 10",
  ):
    trainer.train_and_evaluate(diverging, tmp_path)
  assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == [
    5,
    10,
  ]


def test_bad_input_is_refused_with_clear_messages(load):
  with pytest.raises(
    ValueError, match="model.conditional=True needs class labels.*'swissroll' has none"
  ):
    trainer.summary(
      load("gan_8gaussians.py:tiny", **{"model.conditional": True, "data.name": "swissroll"})
    )
  with pytest.raises(
    ValueError, match="Unknown GAN loss 'wgan'.*Valid GAN loss names: hinge, least_squares"
  ):
    trainer.summary(load("gan_8gaussians.py:tiny", **{"model.loss": "wgan"}))
  with pytest.raises(
    ValueError, match="Unknown GAN network 'dcgan2'.*Valid GAN network names: dcgan, mlp, resnet"
  ):
    trainer.summary(load("gan_8gaussians.py:tiny", **{"model.network": "dcgan2"}))
  with pytest.raises(ValueError, match="training.batch_size=100 .* multiple of model.n_critic=3"):
    trainer.summary(
      load("gan_8gaussians.py:tiny", **{"model.n_critic": 3, "training.batch_size": 100})
    )
  with pytest.raises(ValueError, match="needs H and W divisible by 8, got 28x28"):
    trainer.summary(load("dcgan_mnist.py:tiny", **{"data.image_size": 0}))
  with pytest.raises(
    ValueError, match="gradient penalty needs a critic whose examples do not interact"
  ):
    trainer.summary(load("wgan_gp_mnist.py:tiny", **{"model.d_norm": "batch"}))
  with pytest.raises(ValueError, match="Unknown config argument 'small'"):
    load("sngan_cifar10.py:small")


@pytest.mark.parametrize(
  "name, generator, discriminator",
  [
    ("sngan_cifar10.py", 4_276_739, 1_053_825),  # Miyato et al.: G 4.3M, D 1.0M
    ("wgan_gp_cifar10.py", 1_204_483, 1_053_825),
    ("dcgan_mnist.py", 1_066_881, 661_313),  # the issue's ~1.07M + 0.66M
    ("wgan_gp_mnist.py", 1_066_881, 660_929),
    # conditional BN: G's 3 norms trade 2 x (256 + 128 + 64) affine parameters for 10x as many class
    # embeddings; the projection adds a 10 x 4096 embedding to the critic
    ("cgan_mnist.py", 1_066_881 - 896 + 10 * 896, 660_929 + 10 * 4096),
  ],
)
def test_paper_architectures_have_the_hand_counted_parameters(load, name, generator, discriminator):
  """Counts derived by hand from the layer shapes (see each config's docstring)."""
  lines = trainer.summary(load(name)).splitlines()
  assert f"generator: {generator:,} parameters" in lines
  assert f"discriminator: {discriminator:,} parameters" in lines
  assert lines[-1] == f"total_params={generator + discriminator}"


def test_class_conditional_sngan_adds_conditional_bn_and_projection(load):
  # Conditional BN swaps each of G's 6 block norms' 2 x 256 affine parameters for 2 x 10 x 256 class
  # embeddings (+4,608 each); the projection adds a 10 x 128 embedding to D.
  lines = trainer.summary(load("sngan_cifar10.py", **{"model.conditional": True})).splitlines()
  assert f"generator: {4_276_739 + 6 * 4_608:,} parameters" in lines
  assert f"discriminator: {1_053_825 + 1_280:,} parameters" in lines


@pytest.mark.slow
@pytest.mark.parametrize(
  "name, overrides",
  [
    ("sngan_cifar10.py:tiny", {"model.conditional": True}),
    ("wgan_gp_cifar10.py:tiny", {"model.augment": "diffaugment"}),
  ],
)
def test_cifar_configs_train_on_synthetic_images(load, tmp_path, name, overrides):
  """Two compiled train steps (2 critic updates each) of the tiny ResNets; samples and grids."""
  assert load(name).model.n_critic == 5  # the papers' n_dis; 2 here keeps compilation short
  config = load(name, **{"model.n_critic": 2, "training.batch_size": 2 * 16, **overrides})
  assert config.data.name == "synthetic_images"
  experiment, before, state, metrics = train_on_synthetic_data(config, tmp_path, steps=2)
  assert {"d_loss", "g_loss", "d_real", "d_fake", "lr", "d_lr"} <= set(metrics)
  assert all(np.isfinite(value) for value in metrics.values())
  assert ("gradient_penalty" in metrics) == (config.model.gradient_penalty > 0)
  # Every weight matrix of both networks moved (biases may not: the Wasserstein loss has no
  # gradient for D's output bias).
  assert not unmoved_kernels(before, jax.device_get(state.params))
  grids = jax.device_get(
    experiment.image_grids(
      state.ema_params,
      state.model_state,
      {"x": np.zeros((1, 32, 32, 3), np.float32)},
      jax.random.key(0),
    )
  )
  assert grids["samples"].shape == (config.sampling.grid_size, 32, 32, 3)
  assert grids["interpolations"].shape == (100, 32, 32, 3)  # 10 rows x 10 columns
  if config.model.conditional:
    assert grids["class_conditional"].shape == (10 * 10, 32, 32, 3)  # a row per class
  assert np.all(np.abs(grids["samples"]) <= 1.0)
  experiment.checkpointer.close()


def test_samples_use_fixed_latents_and_truncation_bounds_them(load):
  config = load("gan_8gaussians.py:tiny", **{"sampling.truncation": 0.5})
  info = dataset_info(config.data)
  family = get_family("gan")(config, info, parallel.make_mesh())
  latents = np.asarray(family._latents(jax.random.key(0), 4000, config.sampling.truncation))
  assert latents.shape == (4000, 16) and np.abs(latents).max() <= 0.5
  assert latents.std() > 0.2  # a truncated normal, not a constant (N(0,1) on [-.5,.5]: std 0.28)
  batch = {"x": np.zeros((1, 2), np.float32), "label": np.zeros((1,), np.int32)}
  params, model_state = family.init(jax.random.key(1), batch)
  first = family.sample(params, model_state, jax.random.key(config.sampling.seed), 8)
  again = family.sample(params, model_state, jax.random.key(config.sampling.seed), 8)
  np.testing.assert_array_equal(first, again)  # the grid seed fixes the latents across calls
  untruncated = get_family("gan")(load("gan_8gaussians.py:tiny"), info, parallel.make_mesh())
  wider = untruncated.sample(params, model_state, jax.random.key(config.sampling.seed), 8)
  assert not np.allclose(first, wider)

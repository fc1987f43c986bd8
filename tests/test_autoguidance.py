"""Autoguidance (genjax.diffusion.autoguidance): the extrapolated denoiser for every objective, and
the runner's guide step (saved, kept, restored beside the sampled step, refused when unusable)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import parallel, trainer
from genjax.datasets import dataset_info
from genjax.diffusion.autoguidance import Autoguided
from genjax.families import get_family

EDM = {"diffusion.process": "edm", "diffusion.objective": "edm", "diffusion.sigma_min": 0.002,
       "diffusion.sigma_max": 80.0, "sampling.sampler": "heun"}


@pytest.mark.parametrize("overrides", [{}, {"diffusion.objective": "v"}, EDM],
                         ids=["eps", "v", "edm"])
def test_the_guided_eps_is_the_extrapolation_of_the_two_networks(load, overrides):
  """eps_w = (1 + w) eps(x, t) - w eps_guide(x, t) for eps, v and EDM-preconditioned networks
  (their eps is affine in the network output), and w = 0 is the model alone, bit for bit."""
  config = load("diffusion_8gaussians.py:tiny", **overrides)
  family = get_family(config.family)(config, dataset_info(config.data), parallel.make_mesh())
  initial = family.init(jax.random.key(0), {"x": jnp.zeros((1, 2))})[0]

  def perturbed(seed):  # the output layer starts at zero: give both networks non-zero weights
    leaves, tree = jax.tree.flatten(initial)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return tree.unflatten([v + 0.3 * jax.random.normal(k, v.shape) for v, k in zip(leaves, keys)])

  params, guide = perturbed(0), perturbed(1)
  x = jax.random.normal(jax.random.key(2), (16, 2))
  t = jnp.linspace(0.05, 0.95, 16) * family.process.t_max
  model_eps, guide_eps = family.eps_fn(params)(x, t), family.eps_fn(guide)(x, t)
  assert float(jnp.abs(model_eps - guide_eps).mean()) > 0.01  # two different networks
  for weight in (0.5, 2.0):
    guided = family.eps_fn(Autoguided(params, guide, jnp.float32(weight)))(x, t)
    np.testing.assert_allclose(guided, (1 + weight) * model_eps - weight * guide_eps,
                               rtol=1e-5, atol=1e-5)
  unguided = family.eps_fn(Autoguided(params, guide, jnp.float32(0.0)))(x, t)
  np.testing.assert_array_equal(unguided, model_eps)


def toy_config(load, **overrides):
  """The 8-Gaussians VP model, 4 steps, checkpoints every 4 and only the latest kept, DDIM."""
  return load("diffusion_8gaussians.py:tiny", **{
    "training.num_train_steps": 4, "training.checkpoint_every": 4, "training.log_every": 2,
    "training.keep_checkpoints": 1, "training.async_checkpoints": False,
    "training.eval_every": 4, "eval.likelihood": "none", "eval.num_examples": 100,
    "eval.num_samples": 200, "eval.sample_batch_size": 100, "sampling.sampler": "ddim",
    "sampling.num_steps": 5, "sampling.grid_size": 16, "sampling.num_samples": 30,
    "sampling.batch_size": 20, "sampling.seed": 5, **overrides,
  })


@pytest.mark.slow
def test_the_runner_keeps_the_guide_step_and_samples_with_it(load, tmp_path):
  guided = {"sampling.autoguidance": 1.5, "sampling.autoguidance_step": 2}
  config = toy_config(load, **guided)
  trainer.train_and_evaluate(config, tmp_path)
  # Step 2 is no multiple of checkpoint_every and outside keep_checkpoints=1: saved and kept.
  assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == [2, 4]
  protocol = json.loads((tmp_path / "eval_4.json").read_text())["protocol"]["sample_metrics"]
  assert protocol["autoguided"].startswith("yes") and protocol["sampling"]["autoguidance"] == 1.5

  trainer.sample(config, tmp_path)
  drawn = np.load(tmp_path / "samples" / "samples_0000004_seed5_autoguidance1.5by2.npz")["samples"]
  assert (tmp_path / "samples" / "samples_0000004_seed5_autoguidance1.5by2.png").is_file()
  plain = toy_config(load)  # the same run read without autoguidance
  experiment, state, _ = trainer.restore_for_inference(plain, tmp_path, 4)
  _, guide_state, _ = trainer.restore_for_inference(plain, tmp_path, 2)
  experiment.checkpointer.close()
  key = jax.random.key(5)
  by_hand = Autoguided(state.ema_params, guide_state.ema_params, jnp.float32(1.5))
  for index in range(2):  # batches of 20: samples 0-19, then 20-29
    expected = np.asarray(experiment.sample_fn(by_hand, {}, jax.random.fold_in(key, index), 20))
    np.testing.assert_array_equal(drawn[20 * index : 20 * index + 20], expected[: 30 - 20 * index])
  unguided = experiment.sample_fn(state.ema_params, {}, jax.random.fold_in(key, 0), 20)
  assert float(np.abs(drawn[:20] - np.asarray(unguided)).mean()) > 1e-3

  with pytest.raises(ValueError, match="must be an earlier step than the sampled checkpoint"):
    trainer.sample(config, tmp_path, step=2)
  missing = toy_config(load, **{**guided, "sampling.autoguidance_step": 3})
  with pytest.raises(FileNotFoundError, match=r"steps there: \[2, 4\]"):
    trainer.evaluate(missing, tmp_path)


@pytest.mark.slow
def test_training_samples_unguided_until_the_guide_step_is_passed(load, tmp_path, caplog):
  """An evaluation at the guide step itself is unguided and says so; a resumed workdir whose guide
  step was never saved trains on and samples unguided rather than failing."""
  config = toy_config(load, **{"sampling.autoguidance": 1.0, "sampling.autoguidance_step": 4})
  trainer.train_and_evaluate(config, tmp_path)
  protocol = json.loads((tmp_path / "eval_4.json").read_text())["protocol"]["sample_metrics"]
  assert protocol["autoguided"].startswith("no")
  later = toy_config(load, **{"sampling.autoguidance": 1.0, "sampling.autoguidance_step": 3,
                              "training.num_train_steps": 8, "training.checkpoint_every": 8,
                              "training.eval_every": 8})
  caplog.clear()
  results = trainer.train_and_evaluate(later, tmp_path)
  assert results["step"] == 8 and any(name.startswith("eval/raw_modes") for name in results)
  assert sum("has no checkpoint" in record.getMessage() for record in caplog.records) == 1
  protocol = json.loads((tmp_path / "eval_8.json").read_text())["protocol"]["sample_metrics"]
  assert protocol["autoguided"].startswith("no")


def test_the_restore_tool_loads_the_guide_beside_the_prior(load, tmp_path):
  """load_restorer reads the guide step before it lets the checkpoints go; its restorations then
  run on the extrapolated network."""
  from genjax import restore
  from genjax.input_pipeline import TrainData

  config = load("ddpm_mnist28.py:tiny", **{"training.async_checkpoints": False,
                                           "restore.num_steps": 3})
  experiment = trainer.Experiment(config, tmp_path, dataset_info(config.data))
  data = TrainData(config, config.training.batch_size)
  early = experiment.init_state()
  later = early.replace(step=jnp.int32(2), ema_params=jax.tree.map(lambda v: v + 0.01, early.ema_params))
  experiment.checkpointer.save(1, early.replace(step=jnp.int32(1)), data.iterator, config)
  experiment.checkpointer.save(2, later, data.iterator, config)
  experiment.checkpointer.wait()
  experiment.checkpointer.close()
  guided = load("ddpm_mnist28.py:tiny", **{"restore.num_steps": 3, "sampling.autoguidance": 1.0,
                                           "sampling.autoguidance_step": 1})
  restorer = restore.load_restorer(guided, tmp_path)
  assert restorer.step == 2 and isinstance(restorer.params, Autoguided)
  for got, want in zip(jax.tree.leaves(restorer.params.guide), jax.tree.leaves(early.ema_params)):
    np.testing.assert_array_equal(got, want)
  plain = restore.load_restorer(load("ddpm_mnist28.py:tiny", **{"restore.num_steps": 3}), tmp_path)
  noisy = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (1, *restorer.shape)), jnp.float32)
  outputs = [r.restore(noisy, "denoise", "sdedit", jax.random.key(0), noise_sigma=0.2)
             for r in (restorer, plain)]
  assert outputs[0].shape == (1, 1, *restorer.shape)
  assert float(np.abs(outputs[0] - outputs[1]).mean()) > 1e-4

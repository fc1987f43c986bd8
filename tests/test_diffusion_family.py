"""The diffusion family through its hooks and the runner: bad input, the CIFAR-10 paper model's
size, 2-D toy training, and a tiny MNIST run that resumes exactly."""

from __future__ import annotations

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import train_on_synthetic_data, unmoved_kernels

from genjax import parallel, trainer
from genjax.config import apply_overrides
from genjax.datasets import dataset_info, load_source
from genjax.evaluation.mode_coverage import mode_statistics
from genjax.families import get_family
from genjax.train_state import create_train_state


def make_family(config):
  info = dataset_info(config.data)
  return get_family(config.family)(config, info, parallel.make_mesh())


@pytest.mark.parametrize(
  "overrides, message",
  [
    (
      {"sampling.sampler": "dddim"},
      "Valid sampler names: ancestral, ddim, dpm_solver, heun, ode, pc",
    ),
    ({"diffusion.process": "vpp"}, "Valid diffusion process names: ddpm, edm, subvp, ve, vp"),
    ({"diffusion.objective": "score"}, "Valid objectives: eps, v, dsm, edm"),
    ({"model.network": "resnet"}, "Valid diffusion network names: dit, score_mlp, unet"),
    ({"diffusion.process": "ddpm", "sampling.sampler": "ode"}, "needs a continuous-time process"),
    ({"diffusion.process": "ddpm", "sampling.sampler": "heun"}, "needs a continuous-time process"),
    ({"diffusion.process": "ve", "diffusion.objective": "v"}, "variance-preserving process"),
    ({"diffusion.objective": "edm"}, "needs diffusion.process='edm'"),
    ({"diffusion.process": "ddpm", "diffusion.objective": "dsm"}, "continuous-time SDE"),
    ({"diffusion.importance_sampling": True}, "apply to objective 'dsm' only"),
    ({"sampling.guidance": 2.0}, "class-conditional model"),
    ({"sampling.autoguidance": -1.0}, "sampling.autoguidance must be >= 0"),
    ({"sampling.autoguidance": 1.0}, "needs sampling.autoguidance_step"),
    ({"eval.likelihood": "vlb"}, "continuous processes use 'ode'"),
    ({"sampling.ode_solver": "euler"}, "set sampling.adaptive=False"),
    ({"sampling.sampler": "ddim", "sampling.eta": 2.0}, "sampling.eta must lie in"),
  ],
)
def test_bad_settings_are_refused_with_a_clear_message(load, overrides, message):
  config = load("diffusion_8gaussians.py:tiny", **overrides)
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
    family = make_family(config)
    family.sample(
      family.init(jax.random.key(0), {"x": jnp.zeros((1, 2))})[0], {}, jax.random.key(0), 4
    )


def test_ddpm_vlb_needs_discrete_images_in_minus_one_one(load):
  with pytest.raises(ValueError, match=r"value_range=\(-1., 1.\)"):
    make_family(load("ddpm_mnist.py:tiny", **{"data.value_range": (0.0, 1.0)}))


def test_ddpm_cifar10_has_the_papers_35_7m_parameters(load):
  config = load("ddpm_cifar10.py")
  assert trainer.summary(config).splitlines()[-1] == "total_params=35746307"


@pytest.mark.parametrize(
  "name, total", [("ddpmpp_vp_cifar10.py", 62_859_139), ("ncsnpp_ve_cifar10.py", 62_859_203)]
)
def test_score_sde_cifar10_parameter_counts(load, name, total):
  """The counts in the configs' docstrings (NCSN++ has 64 more: its Fourier embedding's frequencies)."""
  assert trainer.summary(load(name)).splitlines()[-1] == f"total_params={total}"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ddpm_cifar10.py", "ddpmpp_vp_cifar10.py", "ncsnpp_ve_cifar10.py"])
def test_cifar10_configs_train_and_sample_on_synthetic_images(load, tmp_path, name):
  """The tiny variants of the TPU/GPU configs (synthetic 32x32x3 images, small UNets): three train
  steps move every kernel with a finite loss, and the configured sampler returns finite images.
  (Three, without warmup: the zero-initialized final convolution moves in step 1, the attention's
  zero-initialized output projection behind it in step 2, and q, k, v behind both in step 3.)"""
  config = load(f"{name}:tiny", **{"sampling.num_steps": 3, "optim.warmup_steps": 0})
  assert config.data.name == "synthetic_images"
  experiment, before, state, metrics = train_on_synthetic_data(config, tmp_path, steps=3)
  assert np.isfinite(float(metrics["loss"]))
  assert not unmoved_kernels(before, jax.device_get(state.params))
  samples = np.asarray(experiment.sample_fn(state.ema_params, state.model_state, jax.random.key(0), 4))
  assert samples.shape == (4, 32, 32, 3) and np.all(np.isfinite(samples))


def test_mnist_config_is_the_issue_architecture(load):
  config = load("ddpm_mnist.py")
  assert tuple(config.model.channel_mult) == (1, 2, 2) and config.model.channels == 64
  assert config.training.batch_size == 64 and config.optim.lr == 2e-4
  assert config.diffusion.num_timesteps == 1000 and config.diffusion.beta_schedule == "linear"
  last = trainer.summary(config).splitlines()[-1]
  assert 6_000_000 < int(last.split("=")[1]) < 7_000_000


@pytest.mark.slow
def test_two_d_toy_training_hits_every_mode(load):
  """1000 steps on 8 Gaussians (std 0.02): the loss falls, and 2000 DDIM samples from the EMA
  weights cover all 8 modes by the mode-coverage metric (genjax.evaluation.mode_coverage), with
  more than 40% of them within 3 std of a mode and a mean distance to the nearest mode below 0.2
  (measured: 56%, 0.10; 91% lie within 0.25 of a mode)."""
  config = load(
    "diffusion_8gaussians.py:tiny", **{"sampling.sampler": "ddim", "sampling.num_steps": 50}
  )
  family = make_family(config)
  source = load_source(config.data, config.data.train_split, config.seed)
  batch = {"x": jnp.asarray(source.arrays["x"][:256])}
  params, model_state = family.init(jax.random.key(0), batch)
  state = create_train_state(params, model_state, family.optimizer, jax.random.key(1))
  step = jax.jit(family.train_step)
  rng = np.random.default_rng(0)
  losses = []
  for _ in range(config.training.num_train_steps):
    indices = rng.integers(0, len(source), config.training.batch_size)
    state, metrics = step(state, {"x": jnp.asarray(source.arrays["x"][indices])})
    losses.append(float(metrics["loss"]))
  assert np.mean(losses[-30:]) < 0.7 * np.mean(losses[:30])
  samples = jax.jit(family.sample, static_argnums=3)(state.ema_params, {}, jax.random.key(2), 2000)
  mixture = dataset_info(config.data).mixture
  stats = mode_statistics(samples, mixture.modes, mixture.std)
  assert float(stats["modes_covered"]) == 8.0
  assert float(jnp.mean(stats["high_quality"])) > 0.4
  assert float(jnp.mean(stats["mode_distance"])) < 0.2


@pytest.mark.slow
def test_tiny_mnist_trains_samples_evaluates_and_resumes_exactly(load, tmp_path):
  """Through the runner (the tiny ddpm_mnist config, UNet cut to one resolution so less compiles):
  4 steps straight (checkpoints at 2 and 4) vs resuming a copy of the step-2
  checkpoint to step 4 give identical EMA parameters and eval metrics; the run writes sample,
  inpainting and SDEdit grids and reports the DDPM bound in bits/dim."""
  small = {
    "training.num_train_steps": 4,
    "training.checkpoint_every": 2,
    "training.log_every": 2,
    "training.async_checkpoints": False,
    "eval.num_examples": 16,
    "eval.batch_size": 16,
    "eval.vlb_timesteps": 2,
    "sampling.num_steps": 3,
    "sampling.grid_size": 8,
    "sampling.edit_num_steps": 3,
    "data.in_memory": False,
    "model.channel_mult": (1,),  # one resolution: the runner path, with less to compile
  }
  config = load("ddpm_mnist.py:tiny", **small)
  straight = trainer.train_and_evaluate(config, tmp_path / "straight")
  assert straight["step"] == 4 and 0.0 < straight["eval/bpd_vlb"] < 16.0
  names = [p.name for p in (tmp_path / "straight" / "samples").iterdir()]
  for grid in ("samples_", "inpainting_", "sdedit_"):
    assert any(name.startswith(grid) for name in names), names
  protocol = json.loads((tmp_path / "straight" / "eval_4.json").read_text())
  assert protocol["metrics"]["eval/bpd_vlb"] == straight["eval/bpd_vlb"]

  resumed_dir = tmp_path / "resumed"
  shutil.copytree(tmp_path / "straight" / "checkpoints" / "2", resumed_dir / "checkpoints" / "2")
  resumed = trainer.train_and_evaluate(config, resumed_dir)
  assert resumed == straight
  states = [
    trainer.restore_for_inference(config, folder, None)
    for folder in (tmp_path / "straight", resumed_dir)
  ]
  for experiment, _, step in states:
    experiment.checkpointer.close()
    assert step == 4
  for leaf_a, leaf_b in zip(
    jax.tree.leaves(states[0][1].ema_params), jax.tree.leaves(states[1][1].ema_params), strict=True
  ):
    np.testing.assert_array_equal(leaf_a, leaf_b)


def test_benchmark_functions_cover_every_sampler_of_the_process(load):
  config = load(
    "diffusion_8gaussians.py:tiny", **{"sampling.num_steps": 3, "sampling.adaptive": False}
  )
  family = make_family(config)
  batch = {"x": jnp.zeros((4, 2))}
  params, model_state = family.init(jax.random.key(0), batch)
  functions = family.benchmark_functions(params, model_state, batch, jax.random.key(1))
  names = sorted(name.split("_nfe")[0] for name in functions)
  assert names == [
    "sample_ancestral",
    "sample_ddim",
    "sample_dpm_solver",
    "sample_heun",
    "sample_ode",
    "sample_pc",
  ]
  for name, (fn, args, count) in functions.items():
    out = jax.jit(fn)(*args)
    assert count == 4 and out.shape == (4, 2) and np.all(np.isfinite(out)), name


def test_class_conditional_guided_sampling_and_objectives_run(load):
  """Class-conditional MLP with label dropout: loss, guided sampling, and each objective's loss is
  finite; the v and edm objectives train on their processes."""
  for overrides in (
    {
      "model.num_classes": 8,
      "diffusion.label_dropout": 0.2,
      "sampling.guidance": 1.5,
      "sampling.sampler": "dpm_solver",
      "sampling.num_steps": 5,
    },
    {"diffusion.objective": "v", "sampling.sampler": "ddim", "sampling.num_steps": 5},
    {
      "diffusion.objective": "dsm",
      "diffusion.likelihood_weighting": True,
      "diffusion.importance_sampling": True,
      "sampling.sampler": "pc",
      "sampling.num_steps": 5,
    },
    {
      "diffusion.process": "edm",
      "diffusion.objective": "edm",
      "diffusion.sigma_min": 0.002,
      "diffusion.sigma_max": 80.0,
      "sampling.sampler": "heun",
      "sampling.num_steps": 5,
    },
  ):
    config = load("diffusion_8gaussians.py:tiny", **overrides)
    family = make_family(config)
    batch = {
      "x": jnp.asarray(np.random.default_rng(0).normal(size=(64, 2)), jnp.float32),
      "label": jnp.arange(64, dtype=jnp.int32) % 8,
      "mask": jnp.ones(64),
    }
    params, model_state = family.init(jax.random.key(0), batch)
    loss, _ = family.loss(params, model_state, batch, jax.random.key(1))
    assert np.isfinite(loss) and loss > 0, overrides
    samples = jax.jit(family.sample, static_argnums=3)(params, model_state, jax.random.key(2), 16)
    assert samples.shape == (16, 2) and np.all(np.isfinite(samples)), overrides


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(load, tmp_path):
  config = load(
    "diffusion_8gaussians.py:tiny",
    **{
      "training.num_train_steps": 6,
      "training.checkpoint_every": 2,
      "training.log_every": 2,
      "training.async_checkpoints": False,
      "eval.likelihood": "none",
    },
  )
  trainer.train_and_evaluate(
    load(
      "diffusion_8gaussians.py:tiny",
      **{
        "training.num_train_steps": 2,
        "training.checkpoint_every": 2,
        "training.log_every": 2,
        "training.async_checkpoints": False,
        "eval.likelihood": "none",
        "eval.num_examples": 16,
        "sampling.sampler": "ddim",
        "sampling.num_steps": 2,
        "sampling.grid_size": 8,
      },
    ),
    tmp_path,
  )
  apply_overrides(config, {"optim.lr": float("nan")})
  with pytest.raises(trainer.NonFiniteError, match="step 4.*step 2"):
    trainer.train_and_evaluate(config, tmp_path)


def test_the_family_states_units_and_protocol_of_its_likelihoods(load):
  bound = make_family(load("ddpm_mnist.py:tiny")).metric_conventions()
  assert set(bound) == {"bpd_vlb", "bpd_vlb_prior", "bpd_vlb_decoder"}
  assert "a 4-term Monte Carlo estimate" in bound["bpd_vlb"]
  assert "32x32 (padding counted)" in bound["bpd_vlb"] and "bits per dim" in bound["bpd_vlb"]
  points = make_family(load("diffusion_8gaussians.py:tiny")).metric_conventions()
  assert set(points) == {"nll_ode"} and "trace estimator exact" in points["nll_ode"]

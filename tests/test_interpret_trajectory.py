"""The diffusion trajectory tools (genjax.interpret.trajectory): the recorded sampler against the
ddim sampler, DDIM inversion against the closed-form flow of Gaussian data, the class-decision
step on hand-made classes, and both tools on an untrained tiny MNIST diffusion run."""

from __future__ import annotations

import functools
import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import MNIST_DIR
from matplotlib.figure import Figure

from genjax import trainer
from genjax.diffusion.gaussian import gaussian_eps
from genjax.diffusion.processes import make_process
from genjax.diffusion.samplers import make_sampler
from genjax.families import family_config
from genjax.interpret import TOOLS
from genjax.interpret import trajectory as T

MU = np.array([1.0, -0.5], np.float32)
COV = np.array([[1.0, 0.6], [0.6, 0.5]], np.float32)


def gaussian_setup(process_name: str, num_steps: int = 20, eta: float = 0.5):
  config = family_config("diffusion")
  config.diffusion.process = process_name
  config.sampling.num_steps, config.sampling.eta = num_steps, eta
  process = make_process(config.diffusion)
  return config, process, gaussian_eps(process, MU, COV)


def gaussian_data(count: int, seed: int = 0) -> np.ndarray:
  normal = np.random.default_rng(seed).normal(size=(count, 2)).astype(np.float32)
  return MU + normal @ np.linalg.cholesky(COV).T


def sym_sqrt(matrix: np.ndarray, power: float) -> np.ndarray:
  values, vectors = np.linalg.eigh(matrix.astype(np.float64))
  return (vectors * values**power) @ vectors.T


@pytest.mark.parametrize("process_name", ["ddpm", "vp"])
def test_trajectory_ends_on_the_ddim_samplers_output(process_name):
  config, process, eps = gaussian_setup(process_name)
  rng = jax.random.key(3)
  sampler = make_sampler("ddim", process, config.sampling)
  expected = jax.jit(lambda key: sampler(eps, key, (64, 2)))(rng)
  walk = jax.jit(lambda key: T.trajectory(process, eps, key, (64, 2), 20, 0.5))
  times, x_t, x0_hat, x0 = jax.device_get(walk(rng))
  np.testing.assert_allclose(x0, expected, atol=1e-6)
  np.testing.assert_array_equal(x0_hat[-1], x0)
  np.testing.assert_array_equal(times, process.sampling_times(20))
  assert x_t.shape == x0_hat.shape == (20, 64, 2)
  assert 0.8 < np.std(x_t[0]) / process.prior_std() < 1.2  # the walk starts from the prior


def test_recorded_steps_pair_x_t_with_its_own_x0_hat():
  _, process, eps = gaussian_setup("vp")
  rng = jax.random.key(5)
  chosen = [0, 7, -1]
  walk = jax.jit(
    lambda key, record: T.trajectory(process, eps, key, (64, 2), 20, 0.5, record), static_argnums=1
  )
  times, x_t, x0_hat, x0 = jax.device_get(walk(rng, None))
  times_some, x_t_some, x0_hat_some, x0_some = jax.device_get(walk(rng, tuple(chosen)))
  np.testing.assert_array_equal(times_some, times[[0, 7, 19]])
  np.testing.assert_allclose(x_t_some, x_t[[0, 7, 19]], atol=1e-6)
  np.testing.assert_allclose(x0_hat_some, x0_hat[[0, 7, 19]], atol=1e-6)
  np.testing.assert_allclose(x0_some, x0, atol=1e-6)
  # x_0_hat = (x_t - sigma eps(x_t, t)) / alpha, at the same step as x_t.
  step_times = jnp.repeat(jnp.asarray(times_some), 64)
  eps_some = np.asarray(eps(jnp.asarray(x_t_some).reshape(-1, 2), step_times)).reshape(3, 64, 2)
  alpha, sigma = (np.asarray(v)[:, None, None] for v in process.marginal(jnp.asarray(times_some)))
  np.testing.assert_allclose(x0_hat_some, (x_t_some - sigma * eps_some) / alpha, atol=1e-4)
  with pytest.raises(ValueError, match="names a step twice"):
    T.trajectory(process, eps, rng, (4, 2), 20, 0.5, record=[3, 3])
  with pytest.raises(ValueError, match="outside 0..19"):
    T.trajectory(process, eps, rng, (4, 2), 20, 0.5, record=[20])


def test_ddim_inversion_follows_the_gaussian_flow_and_decodes_back():
  """For data N(mu, Sigma) the probability-flow ODE is linear: x_t = alpha_t mu +
  C_t^(1/2) Sigma^(-1/2) (x_0 - mu), C_t = alpha_t^2 Sigma + sigma_t^2 I. DDIM inversion must land
  near it at t_max, and decode(invert(x_0)) must return x_0: to first order in the step for plain
  inversion, to ~1e-5 with fixed-point corrections."""
  _, process, eps = gaussian_setup("vp")
  x0 = gaussian_data(256)
  alpha, sigma = (float(v) for v in process.marginal(jnp.asarray(process.t_max)))
  cov_t = alpha**2 * COV + sigma**2 * np.eye(2)
  flow = alpha * MU + (x0 - MU) @ (sym_sqrt(cov_t, 0.5) @ sym_sqrt(COV, -0.5)).T

  @functools.partial(jax.jit, static_argnums=(0, 1))
  def round_trip(num_steps, iterations):
    noise = T.ddim_invert(process, eps, x0, num_steps, iterations)
    return noise, T.ddim_decode(process, eps, noise, num_steps)

  errors = {}
  for num_steps, iterations in ((200, 0), (1000, 0), (1000, 2)):
    noise, back = round_trip(num_steps, iterations)
    if num_steps == 1000:  # DDIM's own error against the ODE: 0.06 at 200 steps, 0.015 at 1000
      np.testing.assert_allclose(noise, flow, atol=0.03)
    errors[num_steps, iterations] = np.abs(np.asarray(back) - x0).max()
  assert errors[1000, 0] < 0.03 and errors[1000, 0] < errors[200, 0] / 3  # first order
  assert errors[1000, 2] < 1e-3
  assert np.std(noise) > 0.5 and np.abs(noise - x0).max() > 0.5  # x_T is not x_0


def test_inverted_interpolation_decodes_points_on_the_noises_great_circle():
  _, process, eps = gaussian_setup("vp")
  x0_a, x0_b = gaussian_data(2, seed=1)
  interpolate = jax.jit(lambda a, b: T.inverted_interpolation(process, eps, a, b, 5, 200, 2))
  path = np.asarray(interpolate(x0_a, x0_b))
  assert path.shape == (5, 2)
  np.testing.assert_allclose(path[[0, -1]], np.stack([x0_a, x0_b]), atol=1e-3)
  z_a, z_b = np.asarray(T.ddim_invert(process, eps, np.stack([x0_a, x0_b]), 200, 2), np.float64)
  theta = np.arccos(z_a @ z_b / (np.linalg.norm(z_a) * np.linalg.norm(z_b)))
  ts = np.linspace(0, 1, 5)[:, None]
  circle = (np.sin((1 - ts) * theta) * z_a + np.sin(ts * theta) * z_b) / np.sin(theta)
  np.testing.assert_allclose(T.ddim_invert(process, eps, path, 200, 2), circle, atol=2e-3)
  with pytest.raises(ValueError, match="num >= 2"):
    T.inverted_interpolation(process, eps, x0_a, x0_b, 1, 10)


def classes_settling_at(steps: list[int], num_steps: int, final: int = 3) -> np.ndarray:
  """[K, B] classes: sample b shows `final` from steps[b] on and another class before."""
  classes = np.full((num_steps, len(steps)), final)
  for sample, step in enumerate(steps):
    classes[:step, sample] = (final + 1 + sample % 9) % 10
  return classes


def test_decision_step_is_the_90th_percentile_of_the_settling_steps():
  classes = classes_settling_at([0, 0, 1, 2, 2, 3, 3, 3, 4, 5], num_steps=6)
  fraction, step_90 = T.decision_step(classes)
  np.testing.assert_allclose(fraction, [0.2, 0.3, 0.5, 0.8, 0.9, 1.0])
  assert step_90 == 4  # 9 of the 10 have settled by step 4, only 8 by step 3

  # Sample 0 shows its final class early, leaves it at step 3 and returns at step 4: it counts
  # as settled from step 4, while fraction_final counts it at steps 0..2.
  classes = classes_settling_at([0] * 9 + [1], num_steps=6)
  classes[3, 0] = 7
  fraction, step_90 = T.decision_step(classes)
  np.testing.assert_allclose(fraction, [0.9, 1.0, 1.0, 0.9, 1.0, 1.0])
  assert step_90 == 1  # settled: 8 at steps 0..3 (samples 1-8), +sample 9 from 1: 9 of 10 at 1

  assert T.decision_step(np.zeros((4, 5), int))[1] == 0
  assert T.decision_step(classes_settling_at([3], num_steps=4))[1] == 3
  with pytest.raises(ValueError, match=r"\[K, B\]"):
    T.decision_step(np.zeros(4, int))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tfds_dir):
  """ddpm_mnist28:tiny (10 sampling steps) with a one-level UNet, at its initial weights: the
  tools' plumbing holds for any network, so none is trained (nor checkpointed)."""
  from genjax.config import apply_overrides, load_config
  from genjax.datasets import dataset_info

  config = load_config("configs/ddpm_mnist28.py:tiny")
  apply_overrides(
    config,
    {
      "data.manual_dir": str(MNIST_DIR),
      "data.data_dir": str(tfds_dir),
      "model.channels": 8,
      "model.channel_mult": (1,),
      "model.attention_resolutions": (),
    },
  )
  workdir = tmp_path_factory.mktemp("trajectory_run")
  experiment = trainer.Experiment(config, workdir, dataset_info(config.data))
  yield experiment, experiment.init_state()
  experiment.checkpointer.close()


def renders(figure: Figure) -> bool:
  figure.savefig(io.BytesIO(), format="png")
  return True


def test_trajectory_tool_on_an_untrained_mnist_run(tiny_run):
  experiment, state = tiny_run
  result = TOOLS.get("diffusion_trajectory").run(experiment, state, jax.random.key(0))
  assert sorted(result.figures) == ["class_decision", "trajectory"]
  assert all(renders(figure) for figure in result.figures.values())
  summary = result.summary
  num_steps = experiment.config.sampling.num_steps
  assert summary["num_steps"] == num_steps and summary["eta"] == 1.0
  assert 0 <= summary["step_90"] < num_steps
  times = experiment.family.process.sampling_times(num_steps)
  assert summary["t_90"] == float(times[summary["step_90"]])
  assert sum(summary["final_class_counts"]) == summary["num_samples"] == T.TRAJECTORY_SAMPLES
  assert 0.0 <= summary["fraction_final_at_half"] <= 1.0


@pytest.mark.slow  # the first test of a session to read MNIST prepares it (~40 s)
def test_interpolation_tool_on_an_untrained_mnist_run(tiny_run):
  experiment, state = tiny_run
  result = TOOLS.get("diffusion_interpolation").run(experiment, state, jax.random.key(0))
  assert list(result.figures) == ["interpolation"] and renders(result.figures["interpolation"])
  summary = result.summary
  assert summary["num_steps"] == 10 and summary["fixed_point_iterations"] == 2
  assert 0 <= summary["reconstruction_rmse"] <= summary["reconstruction_max_abs"] < 1e3
  a, b = summary["test_indices"]
  assert a == 0 and b > 0

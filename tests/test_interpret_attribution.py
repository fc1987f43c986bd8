"""Pixel attribution (genjax.interpret.attribution): plain gradients against closed forms, the
completeness of integrated gradients (and its failure with one step), per-example scores of
batch-coupled networks, and the "attribution" tool on an untrained tiny DCGAN run."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import MNIST_DIR

from genjax import interpret, trainer
from genjax.interpret import attribution


def tanh_mlp(scale: float, seed: int = 0):
  """A random 2-layer tanh MLP f: [B, 6, 6, 1] -> [B]; larger `scale` bends it more."""
  k1, k2 = jax.random.split(jax.random.key(seed))
  w1 = scale * jax.random.normal(k1, (36, 16)) / 6.0
  w2 = jax.random.normal(k2, (16,))
  return lambda x: jnp.tanh(x.reshape(x.shape[0], -1) @ w1) @ w2


def images(seed: int = 1) -> jax.Array:
  return jax.random.uniform(jax.random.key(seed), (4, 6, 6, 1))


def test_gradients_equal_the_analytic_gradient_of_a_quadratic():
  weights = jax.random.normal(jax.random.key(2), (6, 6, 1))
  f = lambda x: jnp.sum(weights * x, axis=(1, 2, 3)) + 0.5 * jnp.sum(x**2, axis=(1, 2, 3))
  x = images()
  np.testing.assert_allclose(attribution.gradients(f, x), weights + x, rtol=1e-6)


def test_integrated_gradients_are_complete_on_a_nonlinear_function():
  f, x = tanh_mlp(scale=3.0), images()
  baseline = jnp.zeros_like(x)
  attributions = attribution.integrated_gradients(f, x, baseline, steps=128)
  assert attributions.shape == x.shape
  change = f(x) - f(baseline)
  assert float(jnp.abs(change).min()) > 0.1  # a real change to account for
  np.testing.assert_allclose(attributions.sum(axis=(1, 2, 3)), change, rtol=1e-3)
  assert attribution.completeness_error(attributions, change) < 1e-3
  # A linear f: its integrated gradients are (x - baseline) * gradient, exactly.
  weights = jax.random.normal(jax.random.key(3), (6, 6, 1))
  linear = lambda x: jnp.sum(weights * x, axis=(1, 2, 3))
  np.testing.assert_allclose(
    attribution.integrated_gradients(linear, x, 0.5, steps=3),
    (x - 0.5) * weights,
    rtol=1e-5,
    atol=1e-6,
  )


def test_one_step_integrated_gradients_are_far_from_complete_on_a_strongly_bent_function():
  f, x = tanh_mlp(scale=12.0), images()
  coarse = attribution.integrated_gradients(f, x, 0.0, steps=1)
  fine = attribution.integrated_gradients(f, x, 0.0, steps=128)
  change = f(x) - f(jnp.zeros_like(x))
  assert attribution.completeness_error(coarse, change) > 0.2
  assert attribution.completeness_error(fine, change) < 1e-2


def test_one_at_a_time_scores_each_example_among_the_others():
  """A score coupled through the batch mean: f_b sees x_b only, the others held at the context."""
  score = lambda x: jnp.sum((x - x.mean(axis=0)) ** 2, axis=(1, 2, 3))
  context = images()
  f = attribution.one_at_a_time(score, context)
  np.testing.assert_allclose(f(context), score(context), rtol=1e-6)
  moved = context + 1.0
  expected = [score(context.at[b].set(moved[b]))[b] for b in range(4)]
  np.testing.assert_allclose(f(moved), expected, rtol=1e-6)
  grads = attribution.gradients(f, context)
  by_example = jax.grad(lambda x0: score(context.at[0].set(x0))[0])(context[0])
  np.testing.assert_allclose(grads[0], by_example, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def tiny_dcgan(tmp_path_factory, tfds_dir):
  """(experiment, state) of an untrained dcgan_mnist:tiny run: its step-0 state, which is what its
  first checkpoint restores (the tool reads no data, so none is prepared)."""
  from genjax.config import apply_overrides, load_config
  from genjax.datasets import dataset_info

  config = load_config("configs/dcgan_mnist.py:tiny")
  apply_overrides(config, {"data.manual_dir": str(MNIST_DIR), "data.data_dir": str(tfds_dir)})
  experiment = trainer.Experiment(
    config, tmp_path_factory.mktemp("dcgan"), dataset_info(config.data)
  )
  yield experiment, experiment.init_state()
  experiment.checkpointer.close()


def test_attribution_tool_explains_the_classifier_and_the_discriminator(tiny_dcgan):
  experiment, state = tiny_dcgan
  result = interpret.run_tool("attribution", experiment, state, jax.random.key(0))
  assert set(result.figures) == {"classifier", "discriminator"}
  for figure in result.figures.values():
    titles = [axis.get_title() for axis in figure.axes]
    assert {"sample", "gradient", "integrated gradients"} <= set(titles)
  summary = result.summary
  assert len(summary["predicted_classes"]) == attribution.NUM_SAMPLES
  assert len(summary["discriminator_scores"]) == attribution.NUM_SAMPLES
  # ReLU networks are piecewise linear: 64 midpoint steps leave a gap of a few percent (measured:
  # 0.008 for the classifier, 0.05 for this critic, 0.008 at 256 steps), never one of order 1.
  assert summary["classifier_completeness_error"] < 0.1
  assert summary["discriminator_completeness_error"] < 0.1


def test_attribution_tool_refuses_images_the_classifier_cannot_read():
  from types import SimpleNamespace

  experiment = SimpleNamespace(
    config=SimpleNamespace(family="diffusion", data=SimpleNamespace(name="cifar10")),
    family=SimpleNamespace(example_shape=(32, 32, 3)),
  )
  with pytest.raises(ValueError, match="MNIST classifier.*'cifar10' examples are 32x32x3"):
    interpret.run_tool("attribution", experiment, None, jax.random.key(0))

"""GAN samples are independent of each other: generators sample with batch norm on fixed standing
statistics (genjax.families.gan), so a sample is a function of its own latent and label, whatever
else shares its batch. Tiny networks on synthetic images."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import parallel
from genjax.datasets import dataset_info
from genjax.evaluation.sample_metrics import SampleMetricsEvaluator
from genjax.families import get_family

TINY_DCGAN = {
  "data.name": "synthetic_images",
  "data.synthetic_shape": (8, 8, 1),
  "data.image_size": 0,
  "model.latent_dim": 8,
  "model.g_features": (8, 4),  # 2x2x8 -> 4x4x4 -> 8x8x1, batch norm on the first two
  "model.d_features": (4, 8),
  "training.batch_size": 16,
  "sampling.standing_stats_samples": 40,  # 3 batches of 16
}
TINY_RESNET = {**TINY_DCGAN, "model.network": "resnet", "model.d_downsample": (True, True)}
# Absolute, on tanh outputs in [-1, 1]: the same latents in batches of different sizes differ by
# float32 reassociation only.
BATCH_TOLERANCE = 1e-5


def _family(load, **overrides):
  config = load("dcgan_mnist.py", **{**TINY_DCGAN, **overrides})
  info = dataset_info(config.data)
  return get_family("gan")(config, info, parallel.make_mesh())


@jax.jit
def _perturbed(params):
  """params moved by N(0, 0.1^2) noise, so that, e.g., the class embeddings of conditional batch
  norm (gain 1, bias 0 at init) differ between classes."""
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  moved = [leaf + 0.1 * jax.random.normal(key, leaf.shape) for leaf, key in zip(leaves, keys)]
  return jax.tree.unflatten(treedef, moved)


def _generator_params(family):
  """G's initial parameters, perturbed."""
  z = jnp.zeros((1, family.config.model.latent_dim))
  labels = jnp.zeros((1,), jnp.int32) if family.num_classes else None
  return _perturbed(jax.jit(family.generator.init)(jax.random.key(0), z, labels)["params"])


def _sample_with_batch_statistics(family):
  """family.sample as it was: G's batch norm on each batch's own statistics (the training path)."""

  def sample(params, model_state, rng, num):
    return family._sample(functools.partial(family._generate, params["generator"]), rng, num)

  return sample


def _in_batches(generate, z, labels, size: int):
  """generate(z, labels) run on consecutive batches of `size` (one at a time), concatenated."""
  batches = jax.tree.map(lambda values: values.reshape(-1, size, *values.shape[1:]), (z, labels))
  out = jax.lax.map(lambda batch: generate(*batch), batches)
  return out.reshape(-1, *out.shape[2:])


@pytest.mark.parametrize(
  "overrides",
  [{}, {**TINY_RESNET, "model.conditional": True}],
  ids=["dcgan", "conditional_resnet"],
)
def test_samples_do_not_depend_on_their_batch(load, overrides):
  """64 fixed latents give the same samples in one batch, in 8 batches of 8 and one at a time.
  The old sampling, batch norm on each batch's own statistics (the training path `_generate`),
  fails this: between 1 x 64 and 8 x 8 it moved them by up to 0.28 (dcgan) and 0.84 (conditional
  resnet), against at most 6e-7 here (maximum absolute differences, measured)."""
  family = _family(load, **overrides)
  assert family.generator_batch_norm
  g_params = _generator_params(family)
  z_rng, label_rng = jax.random.split(jax.random.key(2))
  z = jax.random.normal(z_rng, (64, family.config.model.latent_dim))
  labels = jax.random.randint(label_rng, (64,), 0, 10) if family.num_classes else None

  @jax.jit
  def samples(g_params, z, labels):
    generate = family.sampling_generator(g_params, None)
    with_batch_statistics = functools.partial(family._generate, g_params)
    return {
      "whole": generate(z, labels),
      "eights": _in_batches(generate, z, labels, 8),
      "singles": _in_batches(generate, z, labels, 1),
      "old_whole": with_batch_statistics(z, labels),
      "old_eights": _in_batches(with_batch_statistics, z, labels, 8),
    }

  out = samples(g_params, z, labels)
  assert out["whole"].shape == (64, 8, 8, 1) and float(out["whole"].std()) > 0.1
  np.testing.assert_allclose(out["eights"], out["whole"], atol=BATCH_TOLERANCE)
  np.testing.assert_allclose(out["singles"], out["whole"], atol=BATCH_TOLERANCE)
  assert np.abs(out["old_eights"] - out["old_whole"]).max() > 0.05


def test_sample_metrics_do_not_depend_on_the_sample_batch_size(load):
  """The Inception Score (MNIST classifier) of 48 samples is the same for eval.sample_batch_size
  48 and 128. The metrics draw batch i with key fold_in(key, i), so batch sizes that split the 48
  samples differently draw different latents, where only equality in distribution can hold; with
  the 48 samples in one batch the latents are the same (the first 48 of the batch's draw, the
  rest masked out) and the metric must agree to float precision.

  The tiny random generator's samples are mostly classified as one digit (IS about 1.02), but the
  score is a smooth function of all 48 samples' class probabilities: the batch sizes agree to
  2e-8 (relative), while with the old sampling on batch statistics, run here too, they differed by
  2e-4 (measured)."""
  family = _family(
    load,
    **{
      "data.synthetic_shape": (32, 32, 1),
      "model.g_features": (8, 4),  # 8x8x8 -> 16x16x4 -> 32x32x1
      "eval.sample_metrics": ("mnist_is",),
      "eval.num_samples": 48,
      "eval.is_splits": 4,
    },
  )
  evaluator = SampleMetricsEvaluator(family.config, family.info, parallel.make_mesh())
  params = {"generator": _generator_params(family)}

  def inception_scores(sample_fn):
    scores = []
    for batch_size in (48, 128):
      family.config.eval.sample_batch_size = batch_size
      scores.append(evaluator.run(sample_fn, params, {})["mnist_is"])
    return np.array(scores)

  scores = inception_scores(family.sample)
  np.testing.assert_allclose(scores, scores[0], rtol=1e-6)
  old_scores = inception_scores(_sample_with_batch_statistics(family))
  assert np.abs(old_scores - old_scores[0]).max() > 1e-5 * old_scores[0]


def test_standing_statistics_average_each_batch_statistics(load):
  """Standing statistics == the mean over the fixed batches of each batch's mean and biased
  variance of the pre-batch-norm activations (captured from G in training mode, numpy float64)."""
  family = _family(load)
  g_params = _generator_params(family)
  z, labels = family.standing_latents()
  assert z.shape == (3, 16, 8) and labels is None  # ceil(40 / 16) batches of training.batch_size
  assert np.abs(z).max() > 2.0 and abs(float(z.std()) - 1.0) < 0.1
  truncated = _family(load, **{"sampling.truncation": 0.5})
  np.testing.assert_array_equal(truncated.standing_latents()[0], z)  # always N(0, I), as trained

  @jax.jit
  def batch_norm_inputs(latents):
    """The inputs of G's two batch norms in training mode: the projection reshaped to
    [b, 2, 2, 8] and the first transposed convolution's output [b, 4, 4, 4]."""
    _, variables = family.generator.apply(
      {"params": g_params},
      latents,
      capture_intermediates=True,
      mutable=["batch_stats", "intermediates"],
    )
    captured = variables["intermediates"]
    return (
      captured["Dense_0"]["__call__"][0].reshape(-1, 2, 2, 8),
      captured["TransposedConv4x4_0"]["__call__"][0],
    )

  inputs = [[np.asarray(x, np.float64) for x in batch_norm_inputs(latents)] for latents in z]
  statistics = jax.jit(family.standing_statistics)(g_params)
  assert set(statistics) == {"BatchNorm_0", "BatchNorm_1"}
  for layer in (0, 1):
    computed = statistics[f"BatchNorm_{layer}"]["BatchNorm_0"]
    per_batch = [batch[layer] for batch in inputs]
    expected_mean = np.mean([x.mean(axis=(0, 1, 2)) for x in per_batch], axis=0)
    expected_var = np.mean([x.var(axis=(0, 1, 2)) for x in per_batch], axis=0)
    np.testing.assert_allclose(computed["mean"], expected_mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(computed["var"], expected_var, rtol=1e-4)


@pytest.mark.parametrize(
  "name, overrides",
  [("gan_8gaussians.py:tiny", {}), ("dcgan_mnist.py", {**TINY_DCGAN, "model.g_norm": "none"})],
  ids=["mlp", "dcgan_without_batch_norm"],
)
def test_generators_without_batch_norm_sample_as_before(load, name, overrides, monkeypatch):
  """No batch norm in G: sampling is plain G(z, labels) and no standing statistics are computed."""
  config = load(name, **overrides)
  info = dataset_info(config.data)
  family = get_family("gan")(config, info, parallel.make_mesh())
  assert not family.generator_batch_norm

  def refuse(g_params):
    raise AssertionError("standing statistics computed for a generator without batch norm")

  monkeypatch.setattr(family, "standing_statistics", refuse)
  params = {"generator": _generator_params(family)}

  samples = jax.jit(family.sample, static_argnums=3)(params, {}, jax.random.key(3), 16)
  before = jax.jit(_sample_with_batch_statistics(family), static_argnums=3)(
    params, {}, jax.random.key(3), 16
  )
  assert samples.shape == (16, *family.example_shape)
  np.testing.assert_array_equal(samples, before)

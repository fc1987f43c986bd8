"""The sample-metric registry, mode coverage as a sample metric, and the "raw" extractor."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import parallel
from genjax.config import base_config
from genjax.datasets import EIGHT_GAUSSIANS, DatasetInfo, dataset_info, load_source
from genjax.evaluation.extractors import RawExtractor
from genjax.evaluation.mode_coverage import mode_statistics
from genjax.evaluation.reference import reference_protocol
from genjax.evaluation.sample_metrics import (
  SAMPLE_METRICS,
  SampleMetric,
  SampleMetricsEvaluator,
)


def test_mode_statistics_counts_high_quality_points_and_covered_modes():
  modes, std = EIGHT_GAUSSIANS.modes, EIGHT_GAUSSIANS.std
  assert modes.shape == (8, 2) and std == 0.02
  near = np.repeat(modes[:4], 100, axis=0) + 0.01  # 400 points on 4 modes, within 3 std
  far = np.zeros((100, 2))  # the centre: 2 away from every mode
  stats = mode_statistics(jnp.asarray(np.concatenate([near, far]), jnp.float32), modes, std)
  np.testing.assert_allclose(np.mean(stats["high_quality"]), 400 / 500)
  assert float(stats["modes_covered"]) == 4.0
  np.testing.assert_allclose(stats["mode_distance"][-1], 2.0, rtol=1e-6)


def test_the_generated_mixtures_state_their_modes():
  config = base_config()
  for name, num_modes, std in (("8gaussians", 8, 0.02), ("25gaussians", 25, 0.05)):
    config.data.name = name
    mixture = dataset_info(config.data).mixture
    assert mixture.modes.shape == (num_modes, 2) and mixture.std == std
    assert not mixture.modes.flags.writeable
  config.data.name = "swissroll"
  assert dataset_info(config.data).mixture is None


def mixture_config(metrics, num_samples=500):
  config = base_config()
  config.data.name = "8gaussians"
  config.eval.sample_metrics = metrics
  config.eval.num_samples, config.eval.sample_batch_size = num_samples, 200
  return config


def points_on_four_modes(params, model_state, rng, num):
  """Points 0.01 from the first 4 modes in turn, whatever the rng (the 8 Gaussians' samples)."""
  modes = jnp.asarray(EIGHT_GAUSSIANS.modes[:4], jnp.float32)
  return modes[jnp.arange(num) % 4] + 0.01


def test_mode_coverage_is_a_sample_metric_of_mixture_data():
  config = mixture_config(("raw_modes",))
  evaluator = SampleMetricsEvaluator(config, dataset_info(config.data), parallel.make_mesh())
  results = evaluator.run(points_on_four_modes, {}, {})
  assert results["raw_modes_covered"] == 4.0 and results["raw_high_quality"] == 1.0
  np.testing.assert_allclose(results["raw_mode_distance"], 0.01 * np.sqrt(2), rtol=1e-3)
  protocol = evaluator.protocol()
  assert "over the first N = 500 samples" in protocol["metric_definitions"]["modes"]
  assert protocol["value_range"] is None  # points are compared as they are
  assert protocol["extractors"]["raw"]["extractor"]["feature_dim"] == 2


def test_mode_coverage_of_data_without_a_mixture_is_refused_at_construction():
  config = mixture_config(("raw_modes",))
  config.data.name = "mnist"
  info = DatasetInfo((28, 28, 1), 10, is_image=True)
  with pytest.raises(ValueError, match="'modes' .*needs data drawn from a known Gaussian mixture"):
    SampleMetricsEvaluator(config, info, parallel.make_mesh())
  with pytest.raises(ValueError, match="raw_is needs class logits"):
    SampleMetricsEvaluator(mixture_config(("raw_is",)), info, parallel.make_mesh())


def test_one_registry_entry_is_a_new_sample_metric(monkeypatch):
  """A metric registered in SAMPLE_METRICS alone is parsed, computed and described."""
  monkeypatch.setattr(SAMPLE_METRICS, "_entries", dict(SAMPLE_METRICS._entries))  # restored after
  SAMPLE_METRICS.register("meannorm")(
    SampleMetric(
      lambda fake, reference, context: {"meannorm": np.linalg.norm(fake.mean)},
      lambda context: "norm of the feature mean",
      needs_reference=False,
    )
  )
  config = mixture_config(("raw_meannorm", "raw_modes"), num_samples=400)
  evaluator = SampleMetricsEvaluator(config, dataset_info(config.data), parallel.make_mesh())
  results = evaluator.run(points_on_four_modes, {}, {})
  mean = EIGHT_GAUSSIANS.modes[:4].mean(axis=0) + 0.01
  np.testing.assert_allclose(results["raw_meannorm"], np.linalg.norm(mean), rtol=1e-5)
  assert results["raw_modes_covered"] == 4.0
  assert evaluator.protocol()["metric_definitions"]["meannorm"] == "norm of the feature mean"


def test_raw_extractor_flattens_examples_and_maps_images_to_unit_range():
  images = np.random.default_rng(0).random((3, 4, 4, 1)).astype(np.float32) * 2 - 1
  extractor = RawExtractor((4, 4, 1))
  features, logits = extractor.apply(extractor.variables, images, (-1.0, 1.0))
  np.testing.assert_allclose(features, (images.reshape(3, 16) + 1) / 2, rtol=1e-6)
  assert logits.shape == (3, 0) and extractor.describe()["feature_dim"] == 16
  points = jnp.asarray([[2.0, -3.0]])
  np.testing.assert_array_equal(RawExtractor((2,)).apply({}, points, None)[0], points)


def test_reference_protocol_hash_is_unchanged():
  """Reference files cached before the reference took config sections still load: the protocol
  of MNIST's training split with the committed classifier hashes as it did."""
  from genjax.evaluation.extractors import MnistExtractor
  from genjax.evaluation.reference import protocol_hash

  config = base_config()
  protocol = reference_protocol(config.data, config.eval, MnistExtractor.load())
  assert (
    protocol_hash(protocol) == "0f028e92322eb44c0f443f9bf381e2ef431ad19bf6f13d199956e37e1f8235ba"
  )


def test_accuracy_counts_samples_the_classifier_assigns_to_their_requested_label(load):
  """Real MNIST test digits as 'samples' requested with their true labels score the classifier's
  test accuracy; requested with shifted labels they score about nothing."""
  config = load(
    "ddpm_mnist.py:tiny",
    **{
      "eval.sample_metrics": ("mnist_accuracy",),
      "eval.num_samples": 1000,
      "eval.sample_batch_size": 500,
      "data.image_size": 0,
    },
  )
  info = dataset_info(config.data)
  test = load_source(config.data, "test", 0)
  images = jnp.asarray(test.arrays["x"][:1000], jnp.float32) / 127.5 - 1.0
  labels = jnp.asarray(test.arrays["label"][:1000])

  evaluator = SampleMetricsEvaluator(config, info, parallel.make_mesh())
  key = jax.random.key(config.eval.sample_seed)
  # Both batches are drawn with keys fold_in(key, 0) and fold_in(key, 1); the sample function
  # picks the matching half of the test images from the key's bits, as the label function does.
  first = jax.random.key_data(jax.random.fold_in(key, 0))

  def half(rng):
    return jnp.where(jnp.all(jax.random.key_data(rng) == first), 0, 500)

  sample = lambda params, model_state, rng, num: jax.lax.dynamic_slice_in_dim(
    images, half(rng), num
  )
  true_labels = lambda rng, num: jax.lax.dynamic_slice_in_dim(labels, half(rng), num)
  wrong_labels = lambda rng, num: (true_labels(rng, num) + 1) % 10
  right = evaluator.run(sample, {}, {}, true_labels)["mnist_accuracy"]
  wrong = evaluator.run(sample, {}, {}, wrong_labels)["mnist_accuracy"]
  assert right > 0.97 and wrong < 0.03
  with pytest.raises(ValueError, match="mnist_accuracy compare samples with the label"):
    evaluator.run(sample, {}, {}, lambda rng, num: None)


def test_padded_samples_are_compared_at_the_datasets_own_size(
  load, inception_weights_file, tmp_path
):
  """ddpm_mnist pads MNIST to 32x32; its samples are cropped back to 28x28, the size of the
  reference statistics, before Inception (which resizes any canvas to 299) sees them. Samples that
  are the padded reference digits themselves then have the Inception FID of the reference against
  itself (0), where the uncropped 32x32 canvas shows the same digits at another scale."""
  del inception_weights_file
  count = 64
  config = load(
    "ddpm_mnist.py:tiny",
    **{
      "eval.sample_metrics": ("inception_fid",),
      "eval.num_samples": count,
      "eval.sample_batch_size": count,
      "eval.reference_split": "test",
      "eval.reference_num_examples": count,
      "eval.batch_size": count,
      "eval.reference_dir": str(tmp_path),
    },
  )
  assert config.data.image_size == 32
  info = dataset_info(config.data)
  digits = load_source(config.data, "test", 0).arrays["x"][:count].astype(np.float32) / 127.5 - 1.0
  padded = jnp.pad(jnp.asarray(digits), ((0, 0), (2, 2), (2, 2), (0, 0)), constant_values=-1.0)
  evaluator = SampleMetricsEvaluator(config, info, parallel.make_mesh())
  assert evaluator.unpadded_shape == (28, 28, 1)
  assert evaluator.protocol()["compared_size"].startswith("the centre 28x28")
  same = evaluator.run(lambda params, state, rng, num: padded, {}, {})["inception_fid"]
  evaluator.unpadded_shape = None  # what the evaluator did before: the whole 32x32 canvas
  uncropped = evaluator.run(lambda params, state, rng, num: padded, {}, {})["inception_fid"]
  assert abs(same) < 1e-2 and uncropped > 1.0, (same, uncropped)

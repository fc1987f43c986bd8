"""Paper comparability of Inception metrics, and CIFAR-10 reference statistics on synthetic data."""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO

from genjax import datasets, parallel
from genjax.config import base_config
from genjax.evaluation import inception_weights
from genjax.evaluation.extractors import InceptionExtractor
from genjax.evaluation.paper_protocols import paper_comparison, use_paper_protocol
from genjax.evaluation.reference import load_reference
from genjax.evaluation.sample_metrics import SampleMetricsEvaluator

NUM_IMAGES = 24


def cifar10_config(reference_dir):
  config = base_config()
  config.data.name = "cifar10"
  use_paper_protocol(config)
  config.eval.reference_dir = str(reference_dir)
  return config


def test_only_the_full_protocol_is_comparable_with_papers(tmp_path):
  config = cifar10_config(tmp_path)
  real = inception_weights.FID_HELPER_WEIGHTS_SHA256
  full = paper_comparison(config.data, config.eval, real, 50_000)
  assert full["comparable_with_papers"]
  assert full["label"] == "comparable with papers (50k samples vs train statistics)"
  config.eval.num_samples = 10_000
  short = paper_comparison(config.data, config.eval, real, 50_000)
  assert not short["comparable_with_papers"]
  assert short["label"] == ("not comparable with papers: 10000 samples, the protocol needs 50000")
  config.eval.num_samples = 50_000
  config.eval.reference_split, config.eval.inception_protocol = "test", "pytorch_fid"
  reasons = paper_comparison(config.data, config.eval, "random-init-seed-0", 10_000)
  assert reasons["not_comparable_because"] == [
    "reference split 'test', the protocol uses 'train'",
    "reference statistics of 10000 examples, the protocol uses 50000",
    "input handling 'pytorch_fid', the protocol uses 'tf_fid'",
    "random Inception weights",
  ]
  config.data.name = "mnist"
  mnist = paper_comparison(config.data, config.eval, real, 60_000)
  assert not mnist["comparable_with_papers"] and mnist["paper_protocol"] is None
  assert "no published Inception-metric protocol for 'mnist'" in mnist["label"]


@pytest.fixture
def synthetic_cifar10(monkeypatch):
  """tfds' cifar10 train split replaced by NUM_IMAGES synthetic 32x32x3 uint8 images (CIFAR-10
  is not on these machines); everything after the tfds read is the real code path."""
  rng = np.random.default_rng(3)
  images = rng.integers(0, 256, (NUM_IMAGES, 32, 32, 3), dtype=np.uint8)
  images[: NUM_IMAGES // 2, :16] //= 4  # two looks, so the statistics are not of pure noise
  info = datasets.DatasetInfo((32, 32, 3), 10, is_image=True)
  source = datasets.ArraySource({"x": images, "label": np.arange(NUM_IMAGES) % 10}, info)

  def load(name, split, manual_dir, data_dir, in_memory, image_size):
    assert (name, split) == ("cifar10", "train"), (name, split)
    return source

  monkeypatch.setattr(datasets, "_load_tfds_cached", load)
  return images


@pytest.mark.slow
def test_cifar10_reference_statistics_and_a_short_run_labelled_not_comparable(
  tmp_path, synthetic_cifar10, inception_weights_file, capsys
):
  sys.path.insert(0, str(REPO / "scripts"))
  import compute_reference_stats

  compute_reference_stats.main(
    ["--paper_protocol=cifar10", f"--reference_dir={tmp_path}", "--batch_size=8"]
  )
  printed = capsys.readouterr().out
  assert (
    "not comparable with papers: reference statistics of 24 examples, the protocol uses 50000"
    in (printed)
  )
  [path] = list(tmp_path.glob("cifar10_train_inception*.npz"))
  stats = load_reference(path)
  assert stats.count == NUM_IMAGES and stats.protocol["split"] == "train"
  assert stats.protocol["extractor"]["input"].startswith("protocol tf_fid")
  extractor = InceptionExtractor.load()
  features, _ = jax.jit(extractor.apply, static_argnums=2)(
    extractor.variables, jnp.asarray(synthetic_cifar10 / 255.0, jnp.float32), (0.0, 1.0)
  )
  np.testing.assert_allclose(stats.mean, np.asarray(features).mean(0), rtol=1e-4, atol=1e-5)

  # A run of 16 samples against those statistics: the FID is computed and labelled.
  config = cifar10_config(tmp_path)
  config.eval.num_samples, config.eval.sample_batch_size, config.eval.batch_size = 16, 16, 8
  config.eval.sample_metrics = ("inception_fid",)
  evaluator = SampleMetricsEvaluator(
    config, datasets.dataset_info(config.data), parallel.make_mesh()
  )

  def sample(params, model_state, rng, num):
    del params, model_state
    return jax.random.uniform(rng, (num, 32, 32, 3))

  results = evaluator.run(sample, None, None)
  assert np.isfinite(results["inception_fid"]) and results["inception_fid"] > 0
  comparison = evaluator.protocol()["extractors"]["inception"]["paper_comparison"]
  assert comparison["label"] == (
    "not comparable with papers: 16 samples, the protocol needs 50000; reference statistics of 24 "
    "examples, the protocol uses 50000"
  )

"""The memorisation tool (genjax.interpret.memorisation): exact blocked nearest neighbours, the
test-calibrated copy check on real MNIST digits in pixels and classifier features, and the tool on
an untrained run."""

from __future__ import annotations

import gzip
import io

import jax
import numpy as np
import pytest
from conftest import MNIST_DIR

from genjax import trainer
from genjax.evaluation.extractors import MnistExtractor
from genjax.interpret import TOOLS, NotApplicable
from genjax.interpret import memorisation as M


def mnist_digits(split: str, start: int, count: int) -> np.ndarray:
  """Real MNIST digits [count, 28, 28, 1] on [0, 1], read straight from the official idx file."""
  name = "t10k" if split == "test" else "train"
  with gzip.open(MNIST_DIR / f"{name}-images-idx3-ubyte.gz") as handle:
    pixels = np.frombuffer(handle.read(), np.uint8, offset=16).reshape(-1, 28, 28, 1)
  return pixels[start : start + count].astype(np.float32) / 255.0


def test_nearest_neighbours_equals_brute_force_across_block_edges():
  rng = np.random.default_rng(0)
  references = rng.normal(size=(1000, 16)).astype(np.float32)
  queries = rng.normal(size=(700, 16)).astype(np.float32)
  queries[:5] = references[[3, 299, 300, 601, 999]]  # exact copies, on both sides of block edges
  # batch 300: the references split mid-array (300 x 3 + 100) and so do the queries (300 x 2 + 100)
  distances, indices = M.nearest_neighbours(queries, references, k=5, batch=300)
  exact = np.linalg.norm(queries[:, None, :].astype(np.float64) - references[None], axis=-1)
  expected = np.argsort(exact, axis=1, kind="stable")[:, :5]
  np.testing.assert_array_equal(indices, expected)
  np.testing.assert_allclose(distances, np.take_along_axis(exact, expected, 1), atol=1e-4)
  np.testing.assert_array_equal(indices[:5, 0], [3, 299, 300, 601, 999])
  assert np.all(distances[:5, 0] == 0.0)
  one_block, _ = M.nearest_neighbours(queries, references, k=5, batch=4096)
  np.testing.assert_allclose(one_block, distances, atol=1e-4)
  with pytest.raises(ValueError, match=r"k must lie in \[1, 1000\]"):
    M.nearest_neighbours(queries, references, k=1001)
  with pytest.raises(ValueError, match="must share F"):
    M.nearest_neighbours(queries[:, :8], references, k=1)


@pytest.fixture(scope="module")
def digits():
  """10,000 training digits, 1,000 test digits (the threshold's), 200 near copies of training
  digits (Gaussian pixel noise of std 0.02, clipped) and 200 other test digits."""
  train = mnist_digits("train", 0, 10_000)
  rng = np.random.default_rng(0)
  copies = train[rng.choice(len(train), 200, replace=False)]
  copies = np.clip(copies + rng.normal(0, 0.02, copies.shape).astype(np.float32), 0.0, 1.0)
  return {
    "train": train,
    "test": mnist_digits("test", 0, 1000),
    "copies": copies,
    "fresh": mnist_digits("test", 1000, 200),
  }


@pytest.mark.parametrize("space", ["pixels", "features"])
def test_memorisation_check_flags_copies_and_passes_test_images(digits, space):
  if space == "pixels":
    embed = lambda images: images.reshape(len(images), -1)
  else:
    extractor = MnistExtractor.load()
    embed = lambda images: M._features(extractor, images)
  train, test = embed(digits["train"]), embed(digits["test"])
  copied = M.memorisation_check(embed(digits["copies"]), train, test, quantile=0.01)
  fresh = M.memorisation_check(embed(digits["fresh"]), train, test, quantile=0.01)
  assert copied["threshold"] == fresh["threshold"] > 0
  assert copied["fraction_below"] > 0.9 and copied["median_ratio"] < 0.3
  assert fresh["fraction_below"] < 0.05 and 0.8 < fresh["median_ratio"] < 1.25
  assert copied["num_samples"] == 200 and copied["num_train"] == 10_000
  assert copied["num_test"] == 1000
  with pytest.raises(ValueError, match=r"quantile must lie in \(0, 1\)"):
    M.memorisation_check(test[:5], train, test, quantile=1.0)


def test_memorisation_tool_refuses_points(load, tmp_path):
  from genjax.datasets import dataset_info

  config = load("diffusion_8gaussians.py")
  experiment = trainer.Experiment(config, tmp_path, dataset_info(config.data))
  try:
    with pytest.raises(NotApplicable, match=r"MNIST-shaped images .* this run's examples are"):
      TOOLS.get("memorisation").run(experiment, None, jax.random.key(0))  # refused before use
  finally:
    experiment.checkpointer.close()


@pytest.mark.slow  # decodes and embeds all 60,000 training digits (~45 s; + ~40 s to prepare MNIST)
def test_memorisation_tool_on_an_untrained_vae(load, tmp_path, monkeypatch):
  """The tool's figure and numbers; a second run reads the training features the first stored
  (no feature of a training image computed again) and reports the same numbers."""
  from genjax.datasets import dataset_info

  config = load("vae_mnist.py:tiny", **{"eval.reference_dir": str(tmp_path / "reference")})
  experiment = trainer.Experiment(config, tmp_path / "run", dataset_info(config.data))
  try:
    result = TOOLS.get("memorisation").run(experiment, experiment.init_state(), jax.random.key(0))
    stored = list((tmp_path / "reference").glob("memorisation_mnist_train_*.npy"))
    assert len(stored) == 1 and np.load(stored[0]).shape == (60_000, 128)
    computed = M._features
    monkeypatch.setattr(M, "_features", lambda e, digits: (
      computed(e, digits) if len(digits) < 60_000 else pytest.fail("training features again")))
    again = TOOLS.get("memorisation").run(experiment, experiment.init_state(), jax.random.key(0))
  finally:
    experiment.checkpointer.close()
  assert again.summary == result.summary
  figure = result.figures["nearest_training_images"]
  figure.savefig(io.BytesIO(), format="png")
  assert len(figure.axes) == M.SHOWN * (1 + 2 * M.SHOWN_NEIGHBOURS)
  summary = result.summary
  assert (summary["num_samples"], summary["num_train"], summary["num_test"]) == (256, 60_000, 2000)
  for space in ("pixels", "features"):
    assert 0.0 <= summary[f"{space}_fraction_below"] <= 1.0
    assert summary[f"{space}_threshold"] > 0 and summary[f"{space}_median_ratio"] > 0

"""FID, KID, IS, precision/recall/density/coverage and streaming moments against references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from scipy.spatial.distance import cdist

from genjax.evaluation.frechet import frechet_distance
from genjax.evaluation.inception_score import ScoreSums, inception_score
from genjax.evaluation.kid import kernel_inception_distance, unbiased_mmd2
from genjax.evaluation.prdc import precision_recall_density_coverage
from genjax.evaluation.sample_metrics import parse_sample_metrics
from genjax.evaluation.statistics import Moments, moments_all_at_once


def random_spd(rng: np.random.Generator, dim: int) -> np.ndarray:
  factor = rng.normal(size=(dim, dim))
  return factor @ factor.T / dim + 0.1 * np.eye(dim)


def scipy_frechet(mean1, cov1, mean2, cov2) -> float:
  """The textbook formula with scipy's general matrix square root of S1 S2."""
  root = scipy.linalg.sqrtm(cov1 @ cov2).real
  return float(np.sum((mean1 - mean2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(root))


@pytest.mark.parametrize("dim", [1, 5, 64])
def test_frechet_matches_scipy_on_random_gaussians(dim):
  rng = np.random.default_rng(dim)
  mean1, mean2 = rng.normal(size=dim), rng.normal(size=dim)
  cov1, cov2 = random_spd(rng, dim), random_spd(rng, dim)
  expected = scipy_frechet(mean1, cov1, mean2, cov2)
  assert expected > 0.1
  assert frechet_distance(mean1, cov1, mean2, cov2) == pytest.approx(expected, rel=1e-8)


def test_frechet_closed_form_for_two_gaussians():
  # Diagonal covariances commute: d^2 = |m1 - m2|^2 + sum_i (sqrt(s1_i) - sqrt(s2_i))^2.
  mean1, mean2 = np.array([0.0, 1.0, -2.0]), np.array([3.0, 1.0, 2.0])
  var1, var2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
  expected = 9.0 + 16.0 + (1 - 2) ** 2 + (2 - 1) ** 2 + (3 - 0.5) ** 2
  assert frechet_distance(mean1, np.diag(var1), mean2, np.diag(var2)) == pytest.approx(
    expected, rel=1e-12
  )
  # Same covariance, rotated frame: only the means differ.
  rotation, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
  cov = rotation @ np.diag(var1) @ rotation.T
  assert frechet_distance(mean1, cov, mean2, cov) == pytest.approx(25.0, rel=1e-9)


def test_fid_of_a_set_with_itself_is_zero_even_with_singular_covariance():
  rng = np.random.default_rng(1)
  for count, dim in ((2000, 16), (20, 64)):  # the second covariance has rank 19 < 64
    mean, cov = moments_all_at_once(rng.normal(size=(count, dim)) * 3 + 1)
    assert frechet_distance(mean, cov, mean, cov) < 1e-8 * np.trace(cov)


def test_frechet_rejects_mismatched_shapes():
  with pytest.raises(ValueError, match="one feature space"):
    frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_streaming_moments_equal_all_at_once_with_masks_and_offsets():
  rng = np.random.default_rng(2)
  features = (rng.normal(size=(1000, 12)) * rng.uniform(0.1, 5, 12) + 300.0).astype(np.float32)
  moments = Moments.empty(12)
  start = 0
  for size in (1, 7, 300, 2, 450, 240):  # uneven batches; each padded to 512 rows of garbage
    batch = np.full((512, 12), 1e4, np.float32)
    batch[:size] = features[start : start + size]
    moments = moments.update(batch, (np.arange(512) < size).astype(np.float32))
    start += size
  moments = moments.update(np.zeros((4, 12), np.float32), np.zeros(4, np.float32))  # an empty batch
  count, mean, cov = moments.to_numpy()
  expected_mean, expected_cov = moments_all_at_once(features)
  assert count == 1000
  np.testing.assert_allclose(mean, expected_mean, rtol=1e-6)
  np.testing.assert_allclose(cov, expected_cov, rtol=2e-4, atol=2e-4 * np.abs(expected_cov).max())


def numpy_mmd2(x: np.ndarray, y: np.ndarray) -> float:
  x, y = x.astype(np.float64), y.astype(np.float64)
  kernel = lambda a, b: (a @ b.T / a.shape[1] + 1.0) ** 3
  m = len(x)
  k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
  return (
    (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    + (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    - 2 * k_xy.mean()
  )


def test_unbiased_mmd_matches_float64_reference():
  rng = np.random.default_rng(3)
  x, y = rng.normal(size=(50, 8)), rng.normal(size=(50, 8)) + 0.3
  assert float(unbiased_mmd2(x.astype(np.float32), y.astype(np.float32))) == pytest.approx(
    numpy_mmd2(x, y), rel=1e-4
  )


def test_kid_of_identical_distributions_is_zero_within_its_standard_error():
  rng = np.random.default_rng(4)
  real, fake = rng.normal(size=(4000, 32)), rng.normal(size=(4000, 32))
  kid, error, subsets = kernel_inception_distance(real, fake, subset_size=500)
  assert subsets == 8 and error > 0
  assert abs(kid) < 3 * error
  shifted, shifted_error, _ = kernel_inception_distance(real, fake + 0.5, subset_size=500)
  assert shifted > 20 * shifted_error  # a real difference is far outside the error


def test_kid_rejects_too_few_samples():
  with pytest.raises(ValueError, match="at least 2"):
    kernel_inception_distance(np.zeros((1, 3)), np.zeros((5, 3)))


def test_inception_score_uniform_is_one_and_confident_even_is_class_count():
  num_classes = 10
  assert inception_score(np.zeros((1000, num_classes)))[0] == pytest.approx(1.0, abs=1e-5)
  confident = 30.0 * np.eye(num_classes)[np.arange(1000) % num_classes]
  score, spread = inception_score(confident, num_splits=10)
  assert score == pytest.approx(num_classes, rel=1e-4) and spread < 1e-3
  # Confident but all one class: p(y) = p(y|x), no information: 1.
  assert inception_score(30.0 * np.eye(num_classes)[np.zeros(100, int)])[0] == pytest.approx(
    1.0, abs=1e-4
  )


def test_streamed_inception_score_equals_all_at_once():
  rng = np.random.default_rng(5)
  logits = rng.normal(size=(1000, 7)) * 3
  expected = inception_score(logits, num_splits=4)
  sums = ScoreSums.empty(4, 7)
  for start in range(0, 1000, 300):  # batches straddle split boundaries
    chunk = logits[start : start + 300]
    sums = sums.update(chunk, np.arange(start, start + len(chunk)), 1000, np.ones(len(chunk)))
  np.testing.assert_allclose(sums.score(), expected, rtol=1e-5)
  # Reference: the split-wise formula exp(E KL(p(y|x) || p(y))) in float64.
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  scores = [
    np.exp(np.mean(np.sum(part * (np.log(part) - np.log(part.mean(0))), 1)))
    for part in np.split(p, 4)
  ]
  np.testing.assert_allclose(expected, (np.mean(scores), np.std(scores)), rtol=1e-4)


def brute_force_prdc(real, fake, k_pr=3, k_dc=5):
  real_real, fake_fake, fake_real = cdist(real, real), cdist(fake, fake), cdist(fake, real)
  real_radius, fake_radius = np.sort(real_real, 1)[:, k_pr], np.sort(fake_fake, 1)[:, k_pr]
  real_radius_dc = np.sort(real_real, 1)[:, k_dc]
  return {
    "precision": (fake_real <= real_radius[None]).any(1).mean(),
    "recall": (fake_real.T <= fake_radius[None]).any(1).mean(),
    "density": (fake_real <= real_radius_dc[None]).sum() / (k_dc * len(fake)),
    "coverage": (fake_real.min(0) <= real_radius_dc).mean(),
  }


def test_precision_recall_density_coverage_match_brute_force():
  rng = np.random.default_rng(6)
  real = rng.normal(size=(300, 6))
  fake = rng.normal(size=(250, 6)) * 1.3 + 0.4
  result = precision_recall_density_coverage(real, fake, block_size=64)
  expected = brute_force_prdc(real, fake)
  for name, value in expected.items():
    assert result[name] == pytest.approx(value, abs=1e-2), name  # at most a boundary point or two
  assert 0.2 < result["precision"] < 0.9 < result["recall"]  # a wider fake set covers the real one


def test_precision_and_recall_of_a_set_against_itself_are_one():
  features = np.random.default_rng(7).normal(size=(400, 10))
  result = precision_recall_density_coverage(features, features, block_size=128)
  assert result["precision"] == 1.0 and result["recall"] == 1.0 and result["coverage"] == 1.0
  far = precision_recall_density_coverage(features, features + 100.0, block_size=128)
  assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_sample_metric_names_are_parsed_and_checked():
  groups = parse_sample_metrics(["mnist_fid", "mnist_is", "inception_kid", "mnist_fid"])
  assert groups == {"mnist": ["fid", "is"], "inception": ["kid"]}
  for bad in ("mnist_fld", "cifar_fid", "fid"):
    with pytest.raises(ValueError, match="Valid names: .*mnist_prd"):
      parse_sample_metrics([bad])


"""scripts/gan_collapse_sweep.py --samples: digit shares, classifier confidence and faint background
noise of a sample file, checked on real MNIST test digits (clean, known labels), on two digits of
different classes blended half and half (ambiguous) and on digits with faint noise added."""

import sys

import numpy as np
from conftest import MNIST_DIR, REPO

from genjax.datasets import read_mnist_idx

sys.path.insert(0, str(REPO / "scripts"))
import gan_collapse_sweep


def test_samples_report_gives_real_digits_their_classes_and_blended_digits_low_confidence(
  tmp_path,
):
  images, labels = read_mnist_idx(str(MNIST_DIR), "test")
  digits = images[:500, :, :, None].astype(np.float32) / 127.5 - 1.0  # [500, 28, 28, 1], [-1, 1]
  padded = np.pad(digits, ((0, 0), (2, 2), (2, 2), (0, 0)), constant_values=-1.0)  # 32x32
  other = np.roll(digits, 1, axis=0)  # the previous test digit, of another class for most
  different = labels[:500] != np.roll(labels[:500], 1)
  blended = ((digits + other) / 2)[different]  # half of each, on [-1, 1]
  speckle = np.random.default_rng(0).uniform(0.0, 0.1, digits.shape).astype(np.float32)
  noisy = np.minimum(digits + 2 * speckle, 1.0)  # up to 10% of full intensity added to each pixel
  rows = []
  cases = (("digits", digits), ("padded", padded), ("blended", blended), ("noisy", noisy))
  for name, samples in cases:
    np.savez(tmp_path / f"{name}.npz", samples=samples)
    rows.append(gan_collapse_sweep.samples_report(str(tmp_path / f"{name}.npz")))

  label_shares = np.bincount(labels[:500], minlength=10) / 500
  for row in rows[:2]:  # the classifier's test error is about 1%: the shares follow the labels
    np.testing.assert_allclose(row["classes"], label_shares, atol=0.02)
    assert row["max_share"] == max(row["classes"]) < 0.2
    assert row["confident_share"] > 0.95 and row["mean_top_probability"] > 0.95
  assert rows[2]["confident_share"] < 0.5 and rows[2]["mean_top_probability"] < 0.8
  # faint pixels: 1.6% of real test digits' (a little less with the padding's black border); the
  # speckle puts about 90% of the black background (82% of the pixels) in [0.01, 0.1)
  assert 0.01 < rows[0]["faint_pixel_share"] < 0.025
  assert rows[1]["faint_pixel_share"] < rows[0]["faint_pixel_share"]
  assert rows[3]["faint_pixel_share"] > 0.6

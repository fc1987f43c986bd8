"""genjax.evaluation.restoration (the restoration benchmark's degradations, classical baselines,
metrics and figure, and the calls of a restorer on its protocol)."""

import gzip
import json

import numpy as np
import pytest
from conftest import MNIST_DIR, run_script
from PIL import Image

from genjax.evaluation import restoration as R


def mnist_digits(split: str, start: int, count: int) -> np.ndarray:
  """Real MNIST digits [count, 28, 28, 1] on [0, 1], read straight from the official idx file."""
  name = "t10k" if split == "test" else "train"
  with gzip.open(MNIST_DIR / f"{name}-images-idx3-ubyte.gz") as handle:
    pixels = np.frombuffer(handle.read(), np.uint8, offset=16).reshape(-1, 28, 28, 1)
  return pixels[start : start + count].astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def digits():
  return mnist_digits("test", 0, 16)


def smooth_images(n: int, size: int) -> np.ndarray:
  """Low-frequency images [n, size, size, 1] on [0.2, 0.8]."""
  grid = np.linspace(0.0, 1.0, size)
  rows, cols = np.meshgrid(grid, grid, indexing="ij")
  phases = np.random.default_rng(0).uniform(0, 2 * np.pi, (n, 1, 1))
  return (0.5 + 0.3 * np.sin(2.0 * rows + 1.5 * cols + phases))[..., None].astype(np.float32)


# --------------------------------------------------------------------------------- degradations


def test_gaussian_noise_is_seeded_unclipped_and_has_the_stated_std(digits):
  noisy = R.gaussian_noise(digits, 0.5, seed=3)
  np.testing.assert_array_equal(noisy, R.gaussian_noise(digits, 0.5, seed=3))
  assert not np.array_equal(noisy, R.gaussian_noise(digits, 0.5, seed=4))
  noise = noisy - digits  # 16 * 784 = 12,544 draws: std within ~1.3% (2 standard errors)
  assert abs(noise.std() - 0.5) < 0.015 and abs(noise.mean()) < 0.015
  assert noisy.min() < -0.5 and noisy.max() > 1.5  # not clipped
  # the same standard-normal draw for every sigma
  np.testing.assert_allclose(R.gaussian_noise(digits, 0.2, 3) - digits, 0.4 * noise, atol=1e-5)


def test_centre_box_mask_hides_the_centred_square():
  mask = R.centre_box_mask((2, 28, 28, 1), 0.5)
  assert mask.shape == (2, 28, 28, 1) and set(np.unique(mask)) == {0.0, 1.0}
  unknown = mask[0, :, :, 0] == 0
  assert unknown.sum() == 14 * 14 and unknown[7:21, 7:21].all()
  np.testing.assert_array_equal(unknown, unknown[::-1, ::-1])  # centred


def test_stroke_mask_is_seeded_with_the_stated_unknown_fraction():
  mask = R.stroke_mask((40, 28, 28, 2), seed=5)
  np.testing.assert_array_equal(mask, R.stroke_mask((40, 28, 28, 2), seed=5))
  assert not np.array_equal(mask, R.stroke_mask((40, 28, 28, 2), seed=6))
  assert set(np.unique(mask)) == {0.0, 1.0}
  np.testing.assert_array_equal(mask[..., 0], mask[..., 1])  # one mask for all channels
  unknown = 1.0 - mask[..., 0].reshape(40, -1).mean(axis=1)
  assert unknown.min() >= 0.25 and unknown.max() <= 0.35
  assert len({m.tobytes() for m in mask}) == 40  # every image has its own strokes


def test_downsample_is_the_block_mean():
  x = np.random.default_rng(0).uniform(size=(3, 28, 28, 2)).astype(np.float32)
  for factor in (2, 4):
    blocks = sum(x[:, i::factor, j::factor] for i in range(factor) for j in range(factor))
    np.testing.assert_allclose(R.downsample(x, factor), blocks / factor**2, atol=1e-6)
  with pytest.raises(ValueError, match="divisible"):
    R.downsample(x, 3)


def test_protocol_degradations_give_the_measurements_the_models_take(digits):
  names = [d.name for d in R.PROTOCOL]
  assert len(set(names)) == len(names) == 6
  for degradation in R.PROTOCOL:
    measured, mask = degradation.apply(digits, seed=0)
    if degradation.task == "superres":
      assert measured.shape == (16, 28 // degradation.scale, 28 // degradation.scale, 1)
      assert mask is None
    elif degradation.task == "inpaint":
      np.testing.assert_array_equal(measured, digits * mask)  # unknown pixels are 0
    else:
      assert mask is None and measured.shape == digits.shape


# ------------------------------------------------------------------------------------ baselines


def test_every_task_has_its_baselines_in_the_registry():
  assert R.baselines_for("denoise") == ["gaussian", "median", "nl_means", "tv"]
  assert R.baselines_for("inpaint") == ["biharmonic", "mean_fill"]
  assert R.baselines_for("superres") == ["bicubic", "nearest"]
  with pytest.raises(ValueError, match="Did you mean 'bicubic'"):
    R.BASELINES.get("bicubc")


def test_mean_fill_keeps_known_pixels_and_fills_with_their_mean(digits):
  mask = R.centre_box_mask(digits.shape)
  filled = R.mean_fill(digits * mask, mask=mask)
  known = mask > 0
  np.testing.assert_allclose(filled[known], digits[known], atol=1e-6)
  for image, original, hole in zip(filled, digits, ~known, strict=True):
    np.testing.assert_allclose(image[hole], original[~hole].mean(), atol=1e-5)


def test_biharmonic_inpainting_restores_a_linear_ramp():
  ramp = np.linspace(0.1, 0.9, 28)[None, :, None, None] * np.ones((1, 28, 28, 1))
  mask = R.centre_box_mask(ramp.shape)
  restored = R.biharmonic_inpaint(ramp * mask, mask=mask)
  assert np.abs(restored - ramp).max() < 1e-3
  assert np.abs(R.mean_fill(ramp * mask, mask=mask) - ramp).max() > 0.1


def test_bicubic_keeps_constants_and_inverts_the_block_mean_on_smooth_images():
  constant = np.full((2, 7, 7, 1), 0.3, np.float32)
  np.testing.assert_allclose(R.bicubic_upsample(constant, scale=4), 0.3, atol=1e-6)
  low = smooth_images(4, 14)
  high = R.bicubic_upsample(low, scale=2)
  assert high.shape == (4, 28, 28, 1)
  assert np.abs(R.downsample(high, 2) - low).max() < 0.01
  np.testing.assert_allclose(R.downsample(R.nearest_upsample(low, scale=2), 2), low, atol=1e-6)


@pytest.mark.parametrize("sigma", [0.2, 0.5])
def test_every_denoiser_lowers_the_error_of_noisy_digits(digits, sigma):
  tuning = mnist_digits("train", 0, 8)  # tuned on training digits, scored on test digits
  noisy = R.gaussian_noise(digits, sigma, seed=0)
  noisy_mse = np.mean((noisy - digits) ** 2)
  for name in R.baselines_for("denoise"):
    baseline = R.BASELINES.get(name)
    parameter = R.tune_denoiser(name, tuning, sigma, seed=1)
    assert (parameter is None) == (not baseline.grid) and (
      parameter is None or parameter in baseline.grid
    )
    arguments = {} if parameter is None else {"parameter": parameter}
    restored = baseline.restore(noisy, sigma=sigma, **arguments)
    assert restored.shape == digits.shape and restored.min() >= 0.0 and restored.max() <= 1.0
    mse = np.mean((restored - digits) ** 2)
    assert mse < 0.7 * noisy_mse, (name, mse, noisy_mse)


# -------------------------------------------------------------------------------------- metrics


def test_psnr_of_identical_images_is_the_cap_and_of_a_known_mse_its_formula():
  clean = np.zeros((3, 28, 28, 1))
  np.testing.assert_array_equal(R.psnr(clean, clean), R.PSNR_CAP_DB)
  offsets = np.array([0.1, 0.01, 0.5])[:, None, None, None]
  np.testing.assert_allclose(
    R.psnr(clean + offsets, clean), 10 * np.log10(1 / offsets.ravel() ** 2)
  )
  with pytest.raises(ValueError, match="shapes differ"):
    R.psnr(clean[..., 0], clean)


def test_ssim_is_one_for_identical_images_and_lower_for_noisy_ones(digits):
  np.testing.assert_allclose(R.ssim(digits, digits), 1.0, atol=1e-9)
  noisy = np.clip(R.gaussian_noise(digits, 0.2, 0), 0, 1)
  assert (R.ssim(noisy, digits) < 0.9).all()


def test_mnist_fid_is_zero_for_a_set_against_itself_and_grows_with_noise():
  clean = mnist_digits("test", 0, 300)
  reference = R.mnist_feature_moments(clean)
  assert R.mnist_fid(clean, reference) < 1e-6
  light = R.mnist_fid(np.clip(R.gaussian_noise(clean, 0.2, 0), 0, 1), reference)
  heavy = R.mnist_fid(np.clip(R.gaussian_noise(clean, 0.5, 0), 0, 1), reference)
  # 300 other test digits: the small-N floor (about 20 here, not 0) that noise must clear
  other = R.mnist_fid(mnist_digits("test", 300, 300), reference)
  assert 5 < other < light < heavy and heavy > 10 * other
  with pytest.raises(ValueError, match="value_range"):
    R.mnist_feature_moments(clean * 2.0)


# --------------------------------------------------------------------------------------- figure


def test_comparison_figure_writes_a_png(tmp_path, digits):
  low = R.downsample(digits[:2], 4)
  rows = [[low[i], R.nearest_upsample(low, scale=4)[i], None, digits[i]] for i in range(2)]
  path = R.comparison_figure(
    rows, ["input", "nearest", "empty", "truth"], tmp_path / "f.png", ["#0", "#1"]
  )
  with Image.open(path) as image:
    image.load()
    assert image.format == "PNG" and image.width > image.height > 100
  with pytest.raises(ValueError, match="4 cells"):
    R.comparison_figure([rows[0][:3]], ["a", "b", "c", "d"], tmp_path / "g.png")


# ----------------------------------------------------------------------- the benchmark's calls


class IdentityRestorer:
  """Returns its measurement (nearest-upsampled for superres), in the value range (-1, 1)."""

  value_range = (-1.0, 1.0)

  def __init__(self, size):
    self.shape, self.calls = (size, size, 1), []

  def restore(self, measured, task, method, rng, *, noise_sigma=0.0, scale=2, mask=None, num=1):
    self.calls.append((measured.shape, noise_sigma, scale, None if mask is None else mask.shape))
    x = np.repeat(np.repeat(measured, scale, 1), scale, 2) if task == "superres" else measured
    return np.repeat(x[:, None], num, axis=1)


@pytest.mark.parametrize("size", [28, 32])
def test_the_benchmark_maps_value_range_canvas_and_batches_both_ways(digits, size):
  import jax

  for degradation in R.PROTOCOL:
    measured, mask = degradation.apply(digits[:5], seed=0)
    pad = R.canvas_padding((size, size, 1), degradation)
    if size == 32 and degradation.name == "superres_x4":
      assert pad is None  # 2-pixel padding is half a low-res pixel
      continue
    restorer = IdentityRestorer(size)
    restored, timing = R.restore_in_batches(
      restorer, "identity", degradation, measured, mask, pad, jax.random.key(0), batch_size=2
    )
    expected = {
      "denoise": np.clip(measured, 0, 1),
      "inpaint": measured,
      "superres": R.nearest_upsample(measured, scale=degradation.scale),
    }[degradation.task]
    np.testing.assert_allclose(restored, expected, atol=1e-6)
    assert len(restorer.calls) == 3 and timing["timed_calls"] == 2  # batches 2, 2, 1 (padded)
    shape, noise_sigma, _, mask_shape = restorer.calls[-1]
    assert shape[0] == 2 and noise_sigma == (
      degradation.sigma if degradation.task == "denoise" else 0
    )
    assert shape[1] == size // (degradation.scale if degradation.task == "superres" else 1)
    assert mask_shape == (None if mask is None else (2, size, size, 1))


def test_the_benchmark_script_saves_the_outputs_it_scores_for_evaluate_py(tmp_path, data_env):
  """scripts/restoration_benchmark.py --save_outputs (baselines only, 4x super-resolution of 6 real
  test digits): each saved file holds exactly the images its row scored (per-image PSNR recomputed
  from the file against the saved ground truth equals results.json's), the ground truth is real
  test digits, and scripts/evaluate.py reads a saved file."""
  out = tmp_path / "bench"
  run_script(
    "restoration_benchmark.py",
    [
      "--tasks=superres_x4",
      "--num_images=6",
      "--tuning_images=2",
      "--figure_examples=1",
      "--save_outputs",
      f"--out={out}",
    ],
    data_env,
  )
  rows = [
    r
    for r in json.loads((out / "results.json").read_text())["results"]
    if r["degradation"] == "superres_x4"
  ]
  files = sorted((out / "outputs" / "superres_x4").glob("*.npz"))
  assert len(rows) >= 2 and len(files) == len(rows)
  clean = np.load(out / "outputs" / "none" / "ground_truth.npz")["samples"]
  test_set = mnist_digits("test", 0, 10_000).reshape(10_000, -1)
  for image in clean.reshape(6, -1):  # real test digits (tfds order, not the idx file's)
    assert np.any(np.all(test_set == image, axis=1))
  for row in rows:
    saved = np.load(out / "outputs" / "superres_x4" / f"{row['method']}.npz")
    assert str(saved["method"]) == row["method"] and saved["samples"].shape == (6, 28, 28, 1)
    np.testing.assert_allclose(
      np.round(R.psnr(saved["samples"], clean), 4), row["per_image"]["psnr"], atol=1e-4
    )
  run_script(
    "evaluate.py",
    [
      f"--samples={files[0]}",
      "--value_range=0,1",
      "--metrics=mnist_fid",
      "--reference_split=test",
      "--reference_num_examples=100",
      f"--reference_dir={tmp_path / 'reference'}",
      f"--output={tmp_path / 'eval.json'}",
    ],
    data_env,
  )
  result = json.loads((tmp_path / "eval.json").read_text())
  assert result["protocol"]["num_samples"] == 6 and result["metrics"]["mnist_fid"] > 0

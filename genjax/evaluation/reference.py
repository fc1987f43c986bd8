"""Reference statistics of a real dataset split, cached on disk and tied to their protocol by hash.

A reference file `<reference_dir>/<dataset>_<split>_<extractor>_<hash12>.npz` holds the feature moments of
the split (count, mean [D], covariance [D, D]), its first `feature_samples` feature vectors (for KID
and precision/recall/density/coverage) and its protocol: dataset, split, number of examples, pixel
conversion, feature_samples and the extractor's full description (incl. its weights' SHA-256), with
`protocol_sha256` = SHA-256 of that protocol as canonical JSON.

Reference pixels are canonical whatever the family's preprocessing: uint8 / 255 in [0, 1] at the
native size, no binarization or dequantization, so every family is compared with the same numbers
(`canonical_data`). Points of the generated 2-D datasets are used as they are, drawn from seed 0.

The file name ends with the first 12 hex digits of protocol_sha256, so every protocol has its own
file: runs that differ in extractor, weights, feature_samples or example count never overwrite or
trip over each other's statistics. `get_reference` loads the file of the requested protocol when
it exists (a file whose contents do not hash to its protocol is an error naming the differences,
never a silent recompute), and computes and writes it otherwise
(scripts/compute_reference_stats.py does the same ahead of time).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from genjax import parallel
from genjax.datasets import dataset_info
from genjax.evaluation.extractors import FeatureExtractor
from genjax.evaluation.streaming import FeatureAccumulator

REFERENCE_FORMAT = 1
CANONICAL_PIXELS = "uint8 / 255 in [0, 1], native size, no binarization or dequantization"


class ReferenceMismatchError(ValueError):
  """A cached reference file was computed under another protocol (extractor, split, sizes...)."""


@dataclasses.dataclass
class ReferenceStats:
  """count; mean [D]; covariance [D, D] (float64); features [<= feature_samples, D]; protocol."""

  count: int
  mean: np.ndarray
  covariance: np.ndarray
  features: np.ndarray
  protocol: dict[str, Any]

  @property
  def protocol_sha256(self) -> str:
    return protocol_hash(self.protocol)


def protocol_hash(protocol: dict[str, Any]) -> str:
  return hashlib.sha256(json.dumps(protocol, sort_keys=True).encode()).hexdigest()


def reference_protocol(
  data: ml_collections.ConfigDict,
  eval_config: ml_collections.ConfigDict,
  extractor: FeatureExtractor,
) -> dict[str, Any]:
  """Everything the reference numbers of data.name's eval.reference_split depend on (hashed into
  protocol_sha256)."""
  return {
    "format": REFERENCE_FORMAT,
    "dataset": data.name,
    "split": eval_config.reference_split,
    "num_examples": eval_config.reference_num_examples or "all",
    "pixels": CANONICAL_PIXELS,
    "feature_samples": eval_config.feature_samples,
    "extractor": extractor.describe(),
    **example_selection(data, eval_config.reference_split),
  }


def example_selection(data: ml_collections.ConfigDict, split: str) -> dict[str, Any]:
  """The example selection of genjax.datasets.select_examples that applies to `split` (absent when
  none does, so the protocol of whole splits is unchanged)."""
  selection: dict[str, Any] = {}
  if data.name == "image_folder":  # one set of images per folder and size (genjax.datasets)
    selection["folder"] = str(data.folder)
    selection["image_size"] = int(data.image_size)
  if data.get("classes"):
    selection["classes"] = [int(c) for c in data.classes]
  if data.get("train_examples") and split == data.train_split:
    selection["train_examples"] = int(data.train_examples)
    selection["subset_seed"] = int(data.subset_seed)
    if data.get("subset_complement"):
      selection["subset_complement"] = True
  return selection


def default_reference_dir() -> Path:
  """$GENJAX_REFERENCE_DIR, else ~/.cache/genjax/reference_stats."""
  return Path(
    os.environ.get("GENJAX_REFERENCE_DIR", Path.home() / ".cache" / "genjax" / "reference_stats")
  )


def reference_path(reference_dir: str | Path, dataset: str, protocol: dict[str, Any]) -> Path:
  """<reference_dir>/<dataset>_<split>_<extractor>_<first 12 hex digits of the protocol hash>.npz;
  dataset may carry a selection suffix (e.g. mnist_classes5-6-7-8-9)."""
  name = f"{dataset}_{protocol['split']}_{protocol['extractor']['name']}"
  folder = Path(reference_dir or default_reference_dir())
  return folder / f"{name}_{protocol_hash(protocol)[:12]}.npz"


def save_reference(path: str | Path, stats: ReferenceStats) -> Path:
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "wb") as handle:
    np.savez(
      handle,
      count=stats.count,
      mean=stats.mean,
      covariance=stats.covariance,
      features=stats.features,
      protocol_json=json.dumps(stats.protocol, sort_keys=True),
      protocol_sha256=stats.protocol_sha256,
    )
  return path


def _differences(stored: dict[str, Any], expected: dict[str, Any], prefix: str = "") -> list[str]:
  lines = []
  for key in sorted(set(stored) | set(expected)):
    old, new = stored.get(key), expected.get(key)
    if isinstance(old, dict) and isinstance(new, dict):
      lines += _differences(old, new, f"{prefix}{key}.")
    elif old != new:
      lines.append(f"{prefix}{key}: file has {old!r}, requested {new!r}")
  return lines


def load_reference(
  path: str | Path, expected_protocol: dict[str, Any] | None = None
) -> ReferenceStats:
  """Loads a reference file; with expected_protocol, its hash must match (else
  ReferenceMismatchError)."""
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(
      f"No reference statistics at {str(path)!r}; compute them with "
      "scripts/compute_reference_stats.py."
    )
  with np.load(path) as archive:
    protocol = json.loads(str(archive["protocol_json"]))
    stored_hash = str(archive["protocol_sha256"])
    stats = ReferenceStats(
      int(archive["count"]), archive["mean"], archive["covariance"], archive["features"], protocol
    )
  if stored_hash != protocol_hash(protocol):
    raise ReferenceMismatchError(
      f"The reference file {str(path)!r} is corrupted: its protocol does not "
      "hash to its recorded protocol_sha256. Recompute it."
    )
  if expected_protocol is not None and stored_hash != protocol_hash(expected_protocol):
    differences = "; ".join(_differences(protocol, expected_protocol)) or "format"
    raise ReferenceMismatchError(
      f"The reference statistics {str(path)!r} were computed under another protocol "
      f"({differences}). "
      "They are not recomputed silently: delete the file (it was renamed or edited by hand) or "
      "recompute it with scripts/compute_reference_stats.py --overwrite."
    )
  return stats


def canonical_data(data: ml_collections.ConfigDict, split: str) -> ml_collections.ConfigDict:
  """A copy of the data section whose eval pipeline yields the canonical pixels of `split` (see the
  module doc): the same dataset, location and generated-dataset settings, no preprocessing."""
  canonical = data.copy_and_resolve_references()
  canonical.eval_split = split
  canonical.value_range = (0.0, 1.0)
  if data.name != "image_folder":  # a folder's images are cropped and resized to image_size
    canonical.image_size = 0
  canonical.dequantize = False
  canonical.binarize = "none"
  canonical.random_flip = False
  return canonical


def compute_reference(
  extractor: FeatureExtractor,
  data: ml_collections.ConfigDict,
  eval_config: ml_collections.ConfigDict,
  mesh: jax.sharding.Mesh,
) -> ReferenceStats:
  """Streams the canonical pixels of data.name's eval.reference_split (its first
  eval.reference_num_examples, 0: all) through the extractor, in global batches of eval.batch_size
  sharded over the mesh; keeps the first eval.feature_samples features. Generated datasets draw
  their points from seed 0 (points have no pixels: they are used as they are)."""
  from genjax.input_pipeline import eval_batches

  ev = eval_config
  canonical = canonical_data(data, ev.reference_split)
  value_range = (0.0, 1.0) if dataset_info(canonical).is_image else None
  accumulator = FeatureAccumulator(
    extractor, value_range, ev.feature_samples, what=f"{data.name} {ev.reference_split} images"
  )
  batches = eval_batches(
    canonical, parallel.local_batch_size(ev.batch_size, "eval.batch_size"),
    num_examples=ev.reference_num_examples, data_seed=0, noise_seed=ev.seed,
  )
  for local in batches:
    batch = parallel.global_batch(mesh, {"x": local["x"], "mask": local["mask"]})
    accumulator.add(batch["x"], batch["mask"])
  summary = accumulator.result()
  protocol = reference_protocol(data, ev, extractor)
  return ReferenceStats(summary.count, summary.mean, summary.covariance, summary.features, protocol)


def get_reference(
  extractor: FeatureExtractor,
  data: ml_collections.ConfigDict,
  eval_config: ml_collections.ConfigDict,
  mesh: jax.sharding.Mesh,
) -> tuple[ReferenceStats, Path]:
  """The reference of data.name's eval.reference_split for this extractor and protocol, loaded from
  eval.reference_dir, or computed (see compute_reference) and written there on first use;
  returns (stats, path)."""
  split = eval_config.reference_split
  selection = "".join(
    f"_{key}{'-'.join(map(str, value)) if isinstance(value, list) else value}"
    for key, value in example_selection(data, split).items()
  )  # readable names for selections, e.g. mnist_classes5-6-7-8-9_test_mnist_<hash>.npz
  expected = reference_protocol(data, eval_config, extractor)
  path = reference_path(eval_config.reference_dir, data.name + selection, expected)
  if path.is_file():
    return load_reference(path, expected), path
  logging.info(
    "Computing the %s reference statistics of %s/%s into %s.", extractor.name, data.name, split,
    path,
  )
  stats = compute_reference(extractor, data, eval_config, mesh)
  if jax.process_index() == 0:
    save_reference(path, stats)
  return stats, path

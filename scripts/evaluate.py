"""Evaluates samples against a dataset's reference statistics; writes numbers with their protocol.

  python scripts/evaluate.py --samples=workdirs/vae_mnist/samples/samples_0300000_seed42.npz \
    --value_range=0,1 --metrics=mnist_fid,mnist_kid,mnist_is,mnist_prd --reference_split=train

--samples is one of
  an .npz with key "samples" [N, H, W, C] in --value_range (as `--mode=sample` writes), or an .npy;
  a folder of PNG files (grey or RGB, 8-bit; read as k / 255 in [0, 1], --value_range is ignored);
  DATASET:SPLIT, e.g. mnist:test: the split's own images (canonical uint8 / 255 pixels), which gives
  the floor of a metric, e.g. the MNIST FID of the test set against the training set:
    GENJAX_DATA_DIR=/work/shared/data/mnist python scripts/evaluate.py --samples=mnist:test \
      --metrics=mnist_fid,mnist_kid,mnist_is,mnist_prd --reference_split=train
Mode coverage of 2-D points [N, 2] (as `--mode=sample` writes them for the toy mixtures):
  python scripts/evaluate.py --samples=<...>.npz --dataset=8gaussians --metrics=raw_modes
Images are read and fed in batches of --batch_size (an .npz is decompressed into host memory once).
Samples larger than the dataset's own images are cropped to their centre (--crop=auto): genjax's
configs with data.image_size above the dataset's size (MNIST at 32x32) zero-pad the images, and the
reference statistics are of the dataset's own pixels, so an extractor that resizes (Inception, to
299) would otherwise compare digits of two scales. --crop=none compares the samples as they are.
The reference statistics are loaded from, or computed into, --reference_dir
(genjax.evaluation.reference).
The result JSON (--output, default <samples>.eval.json, or ./<dataset>_<split>.eval.json) holds
"metrics" and "protocol"; it is also printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import ml_collections
import numpy as np
from PIL import Image

import genjax
from genjax import parallel
from genjax.config import base_config
from genjax.datasets import dataset_info, load_source
from genjax.evaluation.extractors import WEIGHTS_KEYS, add_weights_arguments, extractor_from_config
from genjax.evaluation.params_io import file_sha256
from genjax.evaluation.reference import get_reference
from genjax.evaluation.sample_metrics import (
  MetricContext,
  check_sample_metrics,
  metric_definitions,
  metrics_from_summaries,
  needs_logits,
  needs_reference,
  parse_sample_metrics,
)
from genjax.evaluation.streaming import FeatureAccumulator
from genjax.input_pipeline import unpad


class SampleSource:
  """images in batches, their number, value range and a description for the protocol.

  data: the data section that locates a DATASET:SPLIT spec's files (manual_dir, data_dir)."""

  def __init__(
    self, spec: str, value_range: tuple[float, float], data: ml_collections.ConfigDict
  ):
    path = Path(spec)
    self.value_range = value_range
    if path.is_dir():
      self.files = sorted(path.glob("*.png"))
      if not self.files:
        raise FileNotFoundError(f"No .png files in {spec!r}.")
      self.kind, self.count, self.value_range = "png_folder", len(self.files), (0.0, 1.0)
      self.description = {"png_folder": str(path), "files": self.count, "pixels": "uint8 / 255"}
    elif path.suffix in (".npz", ".npy"):
      if not path.is_file():
        raise FileNotFoundError(f"No samples file {spec!r}.")
      if path.suffix == ".npz":
        with np.load(path) as archive:
          if "samples" not in archive.files:
            raise KeyError(f"{spec!r} has no array 'samples' (it has {archive.files}).")
          self.array = archive["samples"]
      else:
        self.array = np.load(path, mmap_mode="r")
      self.kind, self.count = "array", len(self.array)
      self.description = {
        "file": str(path),
        "sha256": file_sha256(path),
        "shape": list(self.array.shape),
      }
    elif ":" in spec:
      dataset, split = spec.split(":", 1)
      data = data.copy_and_resolve_references()
      data.name = dataset
      self.source = load_source(data, split, seed=0)
      self.kind, self.count, self.value_range = "dataset", len(self.source), (0.0, 1.0)
      self.description = {
        "dataset": dataset,
        "split": split,
        "pixels": "uint8 / 255 in [0, 1], native size",
      }
    else:
      raise FileNotFoundError(
        f"--samples={spec!r} is neither a folder, an .npz/.npy file nor DATASET:SPLIT."
      )

  def batches(self, batch_size: int, limit: int) -> Iterator[np.ndarray]:
    for start in range(0, limit, batch_size):
      stop = min(start + batch_size, limit)
      if self.kind == "png_folder":
        yield np.stack([_read_png(path) for path in self.files[start:stop]])
      elif self.kind == "array":
        yield np.asarray(self.array[start:stop], np.float32)
      else:
        yield self.source.gather(np.arange(start, stop))["x"].astype(np.float32) / 255.0


def _read_png(path: Path) -> np.ndarray:
  """An 8-bit PNG as [H, W, 1] (grey) or [H, W, 3] (anything else, converted to RGB) in [0, 1]."""
  with Image.open(path) as picture:
    grey = picture.mode in ("L", "1")
    pixels = np.asarray(picture.convert("L" if grey else "RGB"), np.float32) / 255.0
  return pixels[..., None] if grey else pixels


def _crop_shape(sample_shape: tuple[int, ...], dataset_shape: tuple[int, ...]):
  """The dataset's image shape (h, w, C) when samples [H, W, C] are larger (H >= h, W >= w, not
  both equal) with the same channels, as a zero-padding config writes them; else None."""
  if len(sample_shape) != 3 or sample_shape[2] != dataset_shape[2]:
    return None
  larger = sample_shape[0] >= dataset_shape[0] and sample_shape[1] >= dataset_shape[1]
  return tuple(dataset_shape) if larger and sample_shape[:2] != dataset_shape[:2] else None


def main() -> None:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  defaults = base_config().eval
  parser.add_argument("--samples", required=True)
  parser.add_argument("--value_range", default="0,1", help="low,high of the samples (arrays only)")
  parser.add_argument("--metrics", default="mnist_fid,mnist_kid,mnist_is,mnist_prd")
  parser.add_argument("--num_samples", type=int, default=0, help="0: all of them")
  parser.add_argument(
    "--dataset", default="mnist", help="the dataset the samples imitate (reference, mixture modes)"
  )
  parser.add_argument("--reference_split", default=defaults.reference_split)
  parser.add_argument("--reference_num_examples", type=int, default=0)
  parser.add_argument("--reference_dir", default="")
  parser.add_argument("--feature_samples", type=int, default=defaults.feature_samples)
  parser.add_argument("--kid_subset_size", type=int, default=defaults.kid_subset_size)
  parser.add_argument("--is_splits", type=int, default=defaults.is_splits)
  parser.add_argument("--prd_k", type=int, default=defaults.prd_k)
  parser.add_argument("--dc_k", type=int, default=defaults.dc_k)
  parser.add_argument("--batch_size", type=int, default=500)
  parser.add_argument("--manual_dir", default="", help="dataset files (else $GENJAX_DATA_DIR)")
  parser.add_argument("--data_dir", default="", help="tfds data_dir (else $TFDS_DATA_DIR)")
  parser.add_argument("--output", default="")
  parser.add_argument(
    "--crop",
    choices=("auto", "none"),
    default="auto",
    help="auto: samples larger than the dataset's images are cropped to their centre (genjax "
    "zero-pads, e.g. MNIST to 32x32); none: compared as they are",
  )
  add_weights_arguments(parser)
  args = parser.parse_args()

  config = base_config()
  data, eval_config = config.data, config.eval
  data.name, data.manual_dir, data.data_dir = args.dataset, args.manual_dir, args.data_dir
  for key in (
    "reference_split",
    "reference_num_examples",
    "reference_dir",
    "feature_samples",
    "kid_subset_size",
    "is_splits",
    "prd_k",
    "dc_k",
    "batch_size",
    *WEIGHTS_KEYS,
  ):
    eval_config[key] = getattr(args, key)
  groups = parse_sample_metrics([m for m in args.metrics.split(",") if m])
  samples = SampleSource(args.samples, tuple(float(v) for v in args.value_range.split(",")), data)
  count = min(args.num_samples or samples.count, samples.count)
  eval_config.num_samples = count
  info = dataset_info(data)
  context = MetricContext(eval_config, info)
  value_range = samples.value_range if info.is_image else None  # points have no value range

  sample_shape = next(samples.batches(1, 1)).shape[1:]
  crop_shape = (
    _crop_shape(sample_shape, info.shape) if info.is_image and args.crop == "auto" else None
  )
  example_shape = crop_shape or sample_shape
  extractors = {name: extractor_from_config(name, eval_config, example_shape) for name in groups}
  check_sample_metrics(groups, extractors, context)
  accumulators = {
    name: FeatureAccumulator(
      extractors[name],
      value_range,
      args.feature_samples,
      total=count if needs_logits(kinds) else 0,
      num_splits=args.is_splits,
      what=f"samples of {args.samples}",
    )
    for name, kinds in groups.items()
  }
  for images in samples.batches(args.batch_size, count):
    if crop_shape:
      images = unpad(images, crop_shape)
    for accumulator in accumulators.values():
      accumulator.add(images)

  metrics, extractor_protocols = {}, {}
  mesh = parallel.make_mesh()
  for name, kinds in groups.items():
    reference, path = (None, None)
    if needs_reference(kinds):
      reference, path = get_reference(extractors[name], data, eval_config, mesh)
    metrics.update(
      metrics_from_summaries(name, kinds, accumulators[name].result(), reference, context)
    )
    extractor_protocols[name] = {
      "metrics": kinds,
      "extractor": extractors[name].describe(),
      "extractor_sha256": extractors[name].identity_hash(),
      "reference": None
      if reference is None
      else {
        **reference.protocol,
        "extractor": "as above",
        "protocol_sha256": reference.protocol_sha256,
        "file": str(path),
      },
    }
  protocol = {
    "samples": samples.description,
    "num_samples": count,
    "value_range": list(value_range) if value_range else None,
    "compared_size": (
      f"the centre {crop_shape[0]}x{crop_shape[1]} of each sample (the dataset's own size; "
      f"the samples are {sample_shape[0]}x{sample_shape[1]})"
      if crop_shape
      else "as given"
    ),
    "reference_dataset": args.dataset,
    "reference_split": args.reference_split,
    "feature_samples": args.feature_samples,
    "kid_subset_size": args.kid_subset_size,
    "is_splits": args.is_splits,
    "prd_k": args.prd_k,
    "dc_k": args.dc_k,
    "metric_definitions": metric_definitions(groups, context),
    "extractors": extractor_protocols,
    "genjax_version": genjax.__version__,
    "command": " ".join(sys.argv),
  }
  result = json.dumps({"metrics": metrics, "protocol": protocol}, indent=2)
  default_output = (
    f"{args.samples}.eval.json"
    if samples.kind != "dataset"
    else f"{args.samples.replace(':', '_')}.eval.json"
  )
  Path(args.output or default_output).write_text(result + "\n")
  print(result)


if __name__ == "__main__":
  main()

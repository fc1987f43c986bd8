"""Computes (or checks) the cached reference statistics of dataset splits for a feature extractor.

  GENJAX_DATA_DIR=/work/shared/data/mnist python scripts/compute_reference_stats.py \
    --dataset=mnist --splits=train,test --extractor=mnist

writes <reference_dir>/mnist_train_mnist_<hash>.npz and mnist_test_mnist_<hash>.npz (reference_dir:
--reference_dir, else $GENJAX_REFERENCE_DIR, else ~/.cache/genjax/reference_stats): feature mean and
covariance of the whole split, its first --feature_samples features, and the protocol with its
SHA-256 (see genjax/evaluation/reference.py; <hash> is its first 12 hex digits, so each protocol
has its own file). An existing file for the same protocol is kept (and verified) unless
--overwrite. With the MNIST classifier the
train split (60k) took 35 s and the test split 9 s on 2 busy CPU cores.

  python scripts/get_inception_weights.py   # once
  python scripts/compute_reference_stats.py --paper_protocol=cifar10

computes the statistics a published protocol compares with (genjax/evaluation/paper_protocols.py;
for CIFAR-10: all 50,000 training images from tfds `cifar10`, Inception pool3 features, TF FID
input handling) and prints whether they meet it (e.g. a --num_examples subset does not).
"""

from __future__ import annotations

import argparse
import time

from genjax import parallel
from genjax.config import base_config
from genjax.datasets import dataset_info
from genjax.evaluation.extractors import WEIGHTS_KEYS, add_weights_arguments, extractor_from_config
from genjax.evaluation.paper_protocols import PAPER_PROTOCOLS, paper_comparison
from genjax.evaluation.reference import (
  compute_reference,
  load_reference,
  reference_path,
  reference_protocol,
  save_reference,
)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--dataset", default="mnist")
  parser.add_argument("--splits", default="train", help="comma separated, e.g. train,test")
  parser.add_argument("--extractor", default="mnist", help="mnist, inception or raw")
  parser.add_argument("--num_examples", type=int, default=0, help="0: the whole split")
  parser.add_argument("--feature_samples", type=int, default=base_config().eval.feature_samples)
  parser.add_argument("--reference_dir", default="")
  parser.add_argument("--manual_dir", default="", help="dataset files (else $GENJAX_DATA_DIR)")
  parser.add_argument("--data_dir", default="", help="tfds data_dir (else $TFDS_DATA_DIR)")
  parser.add_argument("--batch_size", type=int, default=500)
  parser.add_argument("--overwrite", action="store_true", help="recompute even if a file exists")
  parser.add_argument(
    "--paper_protocol",
    default="",
    help="a dataset of PAPER_PROTOCOLS (e.g. cifar10): its reference split, Inception, TF FID",
  )
  add_weights_arguments(parser)
  args = parser.parse_args(argv)
  if args.paper_protocol:
    protocol = PAPER_PROTOCOLS.get(args.paper_protocol)
    args.dataset, args.splits, args.extractor = (
      args.paper_protocol,
      protocol.reference_split,
      "inception",
    )
    args.inception_protocol = protocol.input_protocol

  config = base_config()
  data, eval_config = config.data, config.eval
  data.name, data.manual_dir, data.data_dir = args.dataset, args.manual_dir, args.data_dir
  eval_config.reference_num_examples = args.num_examples
  eval_config.feature_samples = args.feature_samples
  eval_config.batch_size = args.batch_size
  for key in WEIGHTS_KEYS:
    eval_config[key] = getattr(args, key)
  extractor = extractor_from_config(args.extractor, eval_config, dataset_info(data).shape)
  mesh = parallel.make_mesh()
  for split in args.splits.split(","):
    eval_config.reference_split = split
    expected = reference_protocol(data, eval_config, extractor)
    path = reference_path(args.reference_dir, args.dataset, expected)
    if path.is_file() and not args.overwrite:
      stats = load_reference(path, expected)
      print(f"{path}: up to date ({stats.count} examples, protocol_sha256={stats.protocol_sha256})")
    else:
      start = time.time()
      stats = compute_reference(extractor, data, eval_config, mesh)
      save_reference(path, stats)
      print(
        f"{path}: {stats.count} examples in {time.time() - start:.1f} s, "
        f"protocol_sha256={stats.protocol_sha256}"
      )
    if args.paper_protocol:
      eval_config.num_samples = PAPER_PROTOCOLS.get(args.paper_protocol).num_samples
      comparison = paper_comparison(data, eval_config, extractor.sha256, stats.count)
      print(f"reference for the {args.paper_protocol} paper protocol: {comparison['label']}")


if __name__ == "__main__":
  main()

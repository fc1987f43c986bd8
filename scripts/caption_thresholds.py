"""Prints the caption attribute thresholds of genjax/text/captions.py from the MNIST training set.

  .venv/bin/python scripts/caption_thresholds.py --data_dir=/work/shared/data/mnist

Measures the 60,000 training digits (captions.measure_attributes), prints the 25% and 75% quantiles
of thickness and size per digit and of slant over all digits as the constants to paste into
captions.py, then the fraction of each digit in each category and the correlations of the
attributes within digits. Measuring takes about 3 s on 2 busy CPU cores.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from genjax.datasets import read_mnist_idx
from genjax.text import captions

QUANTILES = (0.25, 0.75)


def thresholds(labels: np.ndarray, attributes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """{"thickness": [10, 2], "slant": [2], "size": [10, 2]}: the QUANTILES of each attribute, per
  digit for thickness and size, over all digits for slant."""
  per_digit = {
    name: np.array(
      [np.quantile(attributes[name][labels == digit], QUANTILES) for digit in range(10)]
    )
    for name in ("thickness", "size")
  }
  return {**per_digit, "slant": np.quantile(attributes["slant"], QUANTILES)}


def constants_source(found: dict[str, np.ndarray]) -> str:
  """The Python source of the threshold constants, rounded to 3 decimals, laid out as ruff formats it."""

  def table(name: str, unit: str) -> list[str]:
    rows = [
      f"    ({low:.3f}, {high:.3f}),  # {digit}" for digit, (low, high) in enumerate(found[name])
    ]
    return [
      f"{name.upper()}_THRESHOLDS = np.array(",
      f"  [  # [10 digits, 2], {unit}",
      *rows,
      "  ]",
      ")",
    ]

  low, high = found["slant"]
  return "\n".join(
    [
      *table("thickness", "px"),
      f"SLANT_THRESHOLDS = np.array(({low:.3f}, {high:.3f}))  # [2], degrees, all digits",
      *table("size", "px"),
    ]
  )


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument(
    "--data_dir",
    default=os.environ.get("GENJAX_DATA_DIR", ""),
    help="folder with the official MNIST gzip idx files",
  )
  args = parser.parse_args(argv)
  images, labels = read_mnist_idx(args.data_dir, "train")
  start = time.perf_counter()
  attributes = captions.measure_attributes(images)
  seconds = time.perf_counter() - start
  print(f"# measured {len(images)} training digits in {seconds:.1f} s\n")
  print(constants_source(thresholds(labels, attributes)))
  categories = captions.categorize(labels, attributes)
  print(
    "\n# fraction of each digit in the low / middle / high category (with the stored constants)"
  )
  for name in captions.ATTRIBUTES:
    print(
      f"# {name}: "
      + "  ".join(
        f"{digit}:"
        + "/".join(f"{np.mean(categories[name][labels == digit] == c):.2f}" for c in range(3))
        for digit in range(10)
      )
    )
  names = ("thickness", "slant", "size")
  within = np.stack(
    [
      attributes[name]
      - np.array([np.mean(attributes[name][labels == d]) for d in range(10)])[labels]
      for name in names
    ]
  )
  print(f"# correlations within digits of {names}:\n" + str(np.corrcoef(within).round(2)))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())

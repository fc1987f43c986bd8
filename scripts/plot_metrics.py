"""Plots logged metrics of several runs against the training step (genjax.plots).

  python scripts/plot_metrics.py --out=rt.png --metric=train/d_real_sign --reference=0.6 \
      none=workdirs/ft_gan/none diffaugment=workdirs/ft_gan/diffaugment ada=workdirs/ft_gan/ada
"""

from __future__ import annotations

import argparse

from genjax.plots import metric_curves


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("runs", nargs="+", help="label=workdir")
  parser.add_argument("--metric", action="append", required=True, help="e.g. train/d_real_sign")
  parser.add_argument("--reference", type=float, action="append", default=[],
                      help="a dashed line per --metric, in order")
  parser.add_argument("--out", required=True, help="the PNG to write")
  args = parser.parse_args()
  runs = {}
  for entry in args.runs:
    label, _, workdir = entry.partition("=")
    if not workdir:
      parser.error(f"run {entry!r} is not label=workdir")
    runs[label] = workdir
  references = dict(zip(args.metric, args.reference, strict=False))
  print(metric_curves(runs, args.metric, args.out, references))


if __name__ == "__main__":
  main()

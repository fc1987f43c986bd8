"""The data statement shared by the likelihood metrics' conventions.

Families report likelihood metrics per example through their `eval_metrics` hook; the runner
averages them over the eval split. What a number means depends on conventions that papers often
leave implicit (nats or bits, per example or per dimension, which discretization of the data, how
many importance samples), so each family states them in its `metric_conventions` hook, next to the
code that computes them, and the runner writes them into every eval protocol.
"""

from __future__ import annotations

import ml_collections


def eval_data_statement(data: ml_collections.ConfigDict) -> str:
  """Which eval data a likelihood is measured on, and how its pixels were discretized."""
  if data.binarize != "none":
    how = (
      "binarized once with eval.seed (dynamic: x ~ Bernoulli(pixel))"
      if data.binarize == "dynamic"
      else "thresholded at 0.5"
    )
    return f"{data.name} {data.eval_split} split, pixels {how}"
  if data.dequantize:
    return f"{data.name} {data.eval_split} split, uniformly dequantized (x + u) / 256"
  return f"{data.name} {data.eval_split} split, grey levels k/255 in {tuple(data.value_range)}"

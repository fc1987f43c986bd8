"""Sample-based metrics of a family, as `--mode=eval` computes them, and their protocol.

config.eval.sample_metrics lists names "<extractor>_<metric>" with extractor in EXTRACTORS ("mnist",
"inception") and metric one of
  fid   Frechet distance of the feature Gaussians              -> <ex>_fid
  kid   unbiased cubic-kernel MMD^2 over disjoint subsets       -> <ex>_kid, <ex>_kid_se
  is    Inception Score with eval.is_splits splits              -> <ex>_is, <ex>_is_std
  prd   precision/recall (k=eval.prd_k), density/coverage (k=eval.dc_k)
        -> <ex>_precision, <ex>_recall, <ex>_density, <ex>_coverage
e.g. ("mnist_fid", "mnist_kid", "mnist_is", "mnist_prd").

eval.num_samples samples are drawn with the family's `sample(params, model_state, rng, num)` hook in
batches of eval.sample_batch_size, batch i with rng fold_in(key(eval.sample_seed), i), the batch
sharded over the mesh's data axis; every extractor sees the same samples and keeps only summaries
(genjax.evaluation.streaming). Reference statistics come from genjax.evaluation.reference.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

import genjax
from genjax import parallel
from genjax.evaluation.extractors import EXTRACTORS, extractor_from_config
from genjax.evaluation.frechet import frechet_distance
from genjax.evaluation.kid import kernel_inception_distance
from genjax.evaluation.prdc import precision_recall_density_coverage
from genjax.evaluation.reference import (
  ReferenceStats,
  get_reference,
  protocol_hash,
)
from genjax.evaluation.streaming import FeatureAccumulator, FeatureSummary

METRIC_KINDS = ("fid", "kid", "is", "prd")
KID_SEED = 0  # the permutation that cuts the features into KID's disjoint subsets


def parse_sample_metrics(names) -> dict[str, list[str]]:
  """("mnist_fid", "mnist_is") -> {"mnist": ["fid", "is"]}; unknown names raise ValueError."""
  groups: dict[str, list[str]] = {}
  for name in names:
    extractor, _, kind = str(name).rpartition("_")
    if extractor not in EXTRACTORS or kind not in METRIC_KINDS:
      valid = ", ".join(f"{e}_{k}" for e in EXTRACTORS.names() for k in METRIC_KINDS)
      raise ValueError(
        f"Unknown sample metric {name!r} in eval.sample_metrics. Valid names: {valid}."
      )
    groups.setdefault(extractor, [])
    if kind not in groups[extractor]:
      groups[extractor].append(kind)
  return groups


def metrics_from_summaries(
  extractor_name: str,
  kinds: list[str],
  fake: FeatureSummary,
  reference: ReferenceStats | None,
  eval_config: ml_collections.ConfigDict,
) -> dict[str, float]:
  """The numbers of `kinds` for one extractor, keyed "<extractor>_<name>"."""
  results: dict[str, float] = {}
  if "fid" in kinds:
    results["fid"] = frechet_distance(
      fake.mean, fake.covariance, reference.mean, reference.covariance
    )
  if "kid" in kinds:
    results["kid"], results["kid_se"], _ = kernel_inception_distance(
      reference.features, fake.features, eval_config.kid_subset_size, KID_SEED
    )
  if "is" in kinds:
    results["is"], results["is_std"] = fake.inception_score
  if "prd" in kinds:
    results.update(
      precision_recall_density_coverage(
        reference.features, fake.features, eval_config.prd_k, eval_config.dc_k
      )
    )
  return {f"{extractor_name}_{key}": float(value) for key, value in results.items()}


class SampleMetricsEvaluator:
  """eval.sample_metrics of one experiment, built once (as big_vision's evaluators): the feature
  extractors and the reference statistics are loaded at construction, `run` computes the metrics
  of a sample function's samples, and `protocol` describes how. It never sees the trainer.

  config: the experiment's config; mesh: the device mesh the samples are sharded over.
  """

  def __init__(self, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh):
    self.config, self.mesh = config, mesh
    ev = config.eval
    self.groups = parse_sample_metrics(ev.sample_metrics)
    if self.groups and ev.num_samples <= 0:
      raise ValueError(f"eval.num_samples must be positive for sample metrics, got {ev.num_samples}.")
    if self.groups:
      parallel.local_batch_size(ev.sample_batch_size, "eval.sample_batch_size")
    self.extractors = {name: extractor_from_config(name, ev) for name in self.groups}
    self.references: dict[str, tuple[ReferenceStats, Path]] = {
      name: get_reference(
        self.extractors[name], config.data.name, ev.reference_split, ev.reference_num_examples,
        ev.feature_samples, ev.reference_dir, config.data.manual_dir, config.data.data_dir,
        ev.batch_size,
      )
      for name, kinds in self.groups.items()
      if set(kinds) - {"is"}
    }

  def run(self, sample_fn, params, model_state) -> dict[str, float]:
    """Draws eval.num_samples samples with sample_fn(params, model_state, rng, num) -> [num, ...]
    in data.value_range (batch i with rng fold_in(key(eval.sample_seed), i)) and returns
    {"<extractor>_<metric>": value}; {} when eval.sample_metrics is empty."""
    if not self.groups:
      return {}
    config, ev = self.config, self.config.eval
    batch_size = ev.sample_batch_size
    accumulators = {
      name: FeatureAccumulator(
        self.extractors[name], config.data.value_range, ev.feature_samples,
        total=ev.num_samples if "is" in kinds else 0, num_splits=ev.is_splits,
        what=f"{config.family} samples",
      )
      for name, kinds in self.groups.items()
    }
    sample = jax.jit(sample_fn, static_argnums=3, out_shardings=parallel.batch_sharded(self.mesh))
    key = jax.random.key(ev.sample_seed)
    for index in range(math.ceil(ev.num_samples / batch_size)):
      images = sample(params, model_state, jax.random.fold_in(key, index), batch_size)
      mask = jnp.arange(batch_size) < ev.num_samples - index * batch_size
      for accumulator in accumulators.values():
        accumulator.add(images, mask)
    results = {}
    for name, kinds in self.groups.items():
      reference = self.references[name][0] if name in self.references else None
      results.update(metrics_from_summaries(name, kinds, accumulators[name].result(), reference, ev))
    return results

  def protocol(self) -> dict[str, Any]:
    """How the sample metrics are made: counts, seeds, sampler, reference and extractor ids."""
    config, ev = self.config, self.config.eval
    extractors = {}
    for name, kinds in self.groups.items():
      extractor = self.extractors[name]
      entry: dict[str, Any] = {
        "metrics": kinds,
        "extractor": extractor.describe(),
        "extractor_sha256": extractor.identity_hash(),
      }
      if name in self.references:
        stats, path = self.references[name]
        entry["reference"] = {
          **{k: v for k, v in stats.protocol.items() if k != "extractor"},
          "protocol_sha256": protocol_hash(stats.protocol),
          "file": str(path),
        }
      extractors[name] = entry
    return {
      "num_samples": ev.num_samples,
      "sample_batch_size": ev.sample_batch_size,
      "sample_seeds": f"batch i uses jax.random.fold_in(jax.random.key({ev.sample_seed}), i)",
      "parameters": "EMA" if ev.use_ema else "raw",
      "value_range": list(config.data.value_range),
      "image_size": config.data.image_size or "native",
      "sampling": config.sampling.to_dict(),
      "reference_split": ev.reference_split,
      "feature_samples": f"the first {ev.feature_samples} samples / reference examples (KID, PRD)",
      "kid": f"mean and standard error over disjoint subsets of {ev.kid_subset_size} "
      f"(permutation seed {KID_SEED}); kernel (x.y/D + 1)^3",
      "inception_score": f"{ev.is_splits} contiguous splits, mean and std",
      "prd": f"precision/recall k={ev.prd_k} (Kynkaanniemi 2019), density/coverage k={ev.dc_k} "
      "(Naeem 2020)",
      "fid": "squared Frechet distance of the feature Gaussians (unbiased covariances), float64",
      "extractors": extractors,
      "genjax_version": genjax.__version__,
    }

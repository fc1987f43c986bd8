"""Sample-based metrics of a family, as `--mode=eval` computes them, and their protocol.

config.eval.sample_metrics lists names "<extractor>_<metric>" with extractor in EXTRACTORS ("mnist",
"inception", "raw") and metric in SAMPLE_METRICS:
  fid    Frechet distance of the feature Gaussians              -> <ex>_fid
  kid    unbiased cubic-kernel MMD^2 over disjoint subsets       -> <ex>_kid, <ex>_kid_se
  is     Inception Score with eval.is_splits splits              -> <ex>_is, <ex>_is_std
  prd    precision/recall (k=eval.prd_k), density/coverage (k=eval.dc_k)
         -> <ex>_precision, <ex>_recall, <ex>_density, <ex>_coverage
  modes  mode coverage of the dataset's Gaussian mixture (genjax.evaluation.mode_coverage)
         -> <ex>_high_quality, <ex>_mode_distance, <ex>_modes_covered
  accuracy  class-conditional models: the fraction of samples the extractor's classifier assigns
         to the label they were generated for (the family's sample_labels) -> <ex>_accuracy
e.g. ("mnist_fid", "mnist_kid", "mnist_is", "mnist_prd"), or ("raw_modes",) on 8gaussians.
A new metric is one SAMPLE_METRICS entry (a SampleMetric): the evaluator, scripts/evaluate.py and
the protocol find everything about it there.

eval.num_samples samples are drawn with the family's `sample(params, model_state, rng, num)` hook in
batches of eval.sample_batch_size, batch i with rng fold_in(key(eval.sample_seed), i), the batch
sharded over the mesh's data axis; every extractor sees the same samples and keeps only summaries
(genjax.evaluation.streaming). Reference statistics come from genjax.evaluation.reference.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

import genjax
from genjax import parallel
from genjax.datasets import DatasetInfo
from genjax.evaluation.extractors import EXTRACTORS, FeatureExtractor, extractor_from_config
from genjax.evaluation.frechet import frechet_distance
from genjax.evaluation.kid import kernel_inception_distance
from genjax.evaluation.mode_coverage import mode_statistics
from genjax.evaluation.paper_protocols import paper_comparison
from genjax.evaluation.prdc import precision_recall_density_coverage
from genjax.evaluation.reference import ReferenceStats, get_reference, protocol_hash
from genjax.evaluation.streaming import FeatureAccumulator, FeatureSummary
from genjax.input_pipeline import example_shape, unpad
from genjax.registry import Registry

KID_SEED = 0  # the permutation that cuts the features into KID's disjoint subsets


@dataclasses.dataclass(frozen=True)
class MetricContext:
  """What a sample metric reads besides the summaries: the eval config section and the DatasetInfo
  of the data the samples imitate."""

  eval_config: ml_collections.ConfigDict
  info: DatasetInfo


def _applies_to_any_data(context: MetricContext) -> None:
  del context


@dataclasses.dataclass(frozen=True)
class SampleMetric:
  """One SAMPLE_METRICS entry.

  compute(fake, reference, context) -> {key: number}: from the samples' FeatureSummary and the
    reference statistics (None unless needs_reference); reported as "<extractor>_<key>".
  describe(context) -> how the numbers are made, for the protocol.
  needs_reference: the reference statistics of eval.reference_split are loaded for it.
  needs_logits: it needs the logits of all samples (FeatureAccumulator's `total`: Inception Score).
  needs_labels: it needs the label each sample was generated for (class-conditional models).
  check(context): raises ValueError, when the evaluator is built, if the metric cannot apply.
  """

  compute: Callable[[FeatureSummary, ReferenceStats | None, MetricContext], dict[str, Any]]
  describe: Callable[[MetricContext], str]
  needs_reference: bool = True
  needs_logits: bool = False
  needs_labels: bool = False
  check: Callable[[MetricContext], None] = _applies_to_any_data


# Metric names must not contain "_" (it separates the extractor from the metric).
SAMPLE_METRICS: Registry[SampleMetric] = Registry("sample metric")


def _fid(fake, reference, context):
  return {"fid": frechet_distance(fake.mean, fake.covariance, reference.mean, reference.covariance)}


SAMPLE_METRICS.register("fid")(
  SampleMetric(
    compute=_fid,
    describe=lambda context: (
      "squared Frechet distance of the feature Gaussians (unbiased covariances), float64"
    ),
  )
)


def _kid(fake, reference, context):
  kid, standard_error, _ = kernel_inception_distance(
    reference.features, fake.features, context.eval_config.kid_subset_size, KID_SEED
  )
  return {"kid": kid, "kid_se": standard_error}


SAMPLE_METRICS.register("kid")(
  SampleMetric(
    compute=_kid,
    describe=lambda context: (
      f"mean and standard error over disjoint subsets of {context.eval_config.kid_subset_size} "
      f"(permutation seed {KID_SEED}); kernel (x.y/D + 1)^3"
    ),
  )
)


def _inception_score(fake, reference, context):
  score, spread = fake.inception_score
  return {"is": score, "is_std": spread}


SAMPLE_METRICS.register("is")(
  SampleMetric(
    compute=_inception_score,
    describe=lambda context: (
      f"Inception Score: {context.eval_config.is_splits} contiguous splits, mean and std"
    ),
    needs_reference=False,
    needs_logits=True,
  )
)


def _prd(fake, reference, context):
  ev = context.eval_config
  return precision_recall_density_coverage(reference.features, fake.features, ev.prd_k, ev.dc_k)


SAMPLE_METRICS.register("prd")(
  SampleMetric(
    compute=_prd,
    describe=lambda context: (
      f"precision/recall k={context.eval_config.prd_k} (Kynkaanniemi 2019), "
      f"density/coverage k={context.eval_config.dc_k} (Naeem 2020)"
    ),
  )
)


def _mode_coverage(fake, reference, context):
  mixture = context.info.mixture
  stats = mode_statistics(jnp.asarray(fake.features), mixture.modes, mixture.std)
  return {
    "high_quality": jnp.mean(stats["high_quality"]),
    "mode_distance": jnp.mean(stats["mode_distance"]),
    "modes_covered": stats["modes_covered"],
  }


def _describe_mode_coverage(context: MetricContext) -> str:
  ev, mixture = context.eval_config, context.info.mixture
  count, num_modes = min(ev.num_samples, ev.feature_samples), len(mixture.modes)
  return (
    f"over the first N = {count} samples and the dataset's K = {num_modes} mixture modes (std "
    f"{mixture.std:g}): high_quality = fraction of samples within 3 std of their nearest mode, "
    "mode_distance = mean distance to the nearest mode, modes_covered = modes that are nearest to "
    "at least 0.2 N / K of the high-quality samples (PacGAN's rule)"
  )


def _check_mixture(context: MetricContext) -> None:
  if context.info.mixture is None:
    raise ValueError(
      "Sample metric 'modes' (mode coverage) needs data drawn from a known Gaussian mixture "
      "(DatasetInfo.mixture, e.g. data.name=8gaussians or 25gaussians); this dataset has none."
    )
  if context.eval_config.feature_samples <= 0:
    raise ValueError(
      "Sample metric 'modes' uses the kept sample features: eval.feature_samples must be positive, "
      f"got {context.eval_config.feature_samples}."
    )


SAMPLE_METRICS.register("modes")(
  SampleMetric(
    compute=_mode_coverage,
    describe=_describe_mode_coverage,
    needs_reference=False,
    check=_check_mixture,
  )
)


def _accuracy(fake, reference, context):
  return {"accuracy": fake.accuracy}


SAMPLE_METRICS.register("accuracy")(
  SampleMetric(
    compute=_accuracy,
    describe=lambda context: (
      "fraction of samples whose extractor-classifier argmax is the label they were generated "
      "for (labels as the family's sample_labels draws them)"
    ),
    needs_reference=False,
    needs_labels=True,
  )
)


def parse_sample_metrics(names) -> dict[str, list[str]]:
  """("mnist_fid", "mnist_is") -> {"mnist": ["fid", "is"]}; unknown names raise ValueError."""
  groups: dict[str, list[str]] = {}
  for name in names:
    extractor, _, kind = str(name).rpartition("_")
    if extractor not in EXTRACTORS or kind not in SAMPLE_METRICS:
      valid = ", ".join(f"{e}_{k}" for e in EXTRACTORS.names() for k in SAMPLE_METRICS.names())
      raise ValueError(
        f"Unknown sample metric {name!r} in eval.sample_metrics. Valid names: {valid}."
      )
    groups.setdefault(extractor, [])
    if kind not in groups[extractor]:
      groups[extractor].append(kind)
  return groups


def check_sample_metrics(
  groups: dict[str, list[str]], extractors: dict[str, FeatureExtractor], context: MetricContext
) -> None:
  """Raises ValueError for a metric that cannot apply to the data (its entry's check) or that needs
  logits from an extractor without any."""
  for name, kinds in groups.items():
    for kind in kinds:
      metric = SAMPLE_METRICS.get(kind)
      metric.check(context)
      if (metric.needs_logits or metric.needs_labels) and not extractors[name].num_classes:
        raise ValueError(
          f"Sample metric {name}_{kind} needs class logits, which the {name!r} extractor does not "
          f"give{extractors[name].missing_logits_hint}."
        )


def needs_reference(kinds: list[str]) -> bool:
  return any(SAMPLE_METRICS.get(kind).needs_reference for kind in kinds)


def needs_logits(kinds: list[str]) -> bool:
  return any(SAMPLE_METRICS.get(kind).needs_logits for kind in kinds)


def metrics_from_summaries(
  extractor_name: str,
  kinds: list[str],
  fake: FeatureSummary,
  reference: ReferenceStats | None,
  context: MetricContext,
) -> dict[str, float]:
  """The numbers of `kinds` for one extractor, keyed "<extractor>_<key>"."""
  results: dict[str, Any] = {}
  for kind in kinds:
    results.update(SAMPLE_METRICS.get(kind).compute(fake, reference, context))
  return {f"{extractor_name}_{key}": float(value) for key, value in results.items()}


def metric_definitions(groups: dict[str, list[str]], context: MetricContext) -> dict[str, str]:
  """{metric: its description} of every metric in `groups`, for the protocol."""
  kinds = dict.fromkeys(kind for group in groups.values() for kind in group)
  return {kind: SAMPLE_METRICS.get(kind).describe(context) for kind in kinds}


class SampleMetricsEvaluator:
  """eval.sample_metrics of one experiment, built once (as big_vision's evaluators): the metrics are
  checked against the data, the feature extractors and the reference statistics are loaded at
  construction, `run` computes the metrics of a sample function's samples, and `protocol` describes
  how. It never sees the trainer.

  config: the experiment's config; info: its dataset's DatasetInfo; mesh: the device mesh the
  samples are sharded over.
  """

  def __init__(self, config: ml_collections.ConfigDict, info: DatasetInfo, mesh: jax.sharding.Mesh):
    self.config, self.info, self.mesh = config, info, mesh
    ev = config.eval
    self.groups = parse_sample_metrics(ev.sample_metrics)
    self.context = MetricContext(ev, info)
    if self.groups and ev.num_samples <= 0:
      raise ValueError(
        f"eval.num_samples must be positive for sample metrics, got {ev.num_samples}."
      )
    if self.groups:
      parallel.local_batch_size(ev.sample_batch_size, "eval.sample_batch_size")
    # Samples of point data are compared as they are: points have no value range.
    self.value_range = tuple(config.data.value_range) if info.is_image else None
    # Samples of a config that zero-pads its images (MNIST 28 -> 32) are cropped back to the
    # dataset's own size, the size the reference statistics are of, before any extractor sees them:
    # otherwise Inception, which resizes any canvas to 299, would compare digits of two scales.
    shape = example_shape(config.data, info)
    self.unpadded_shape = info.shape if info.is_image and shape != info.shape else None
    shape = self.unpadded_shape or shape
    self.extractors = {name: extractor_from_config(name, ev, shape) for name in self.groups}
    check_sample_metrics(self.groups, self.extractors, self.context)
    self.references: dict[str, tuple[ReferenceStats, Path]] = {
      name: get_reference(self.extractors[name], config.data, ev, mesh)
      for name, kinds in self.groups.items()
      if needs_reference(kinds)
    }
    # Inception numbers say whether they may stand next to published ones (paper_protocols.py).
    self.paper_comparisons = {
      name: paper_comparison(
        config.data,
        ev,
        self.extractors[name].sha256,
        self.references[name][0].count if name in self.references else None,
      )
      for name in self.groups
      if name == "inception"
    }

  def run(self, sample_fn, params, model_state, label_fn=None) -> dict[str, float]:
    """Draws eval.num_samples samples with sample_fn(params, model_state, rng, num) -> [num, ...]
    in data.value_range (batch i with rng fold_in(key(eval.sample_seed), i)) and returns
    {"<extractor>_<key>": value}; {} when eval.sample_metrics is empty. label_fn(rng, num) -> the
    [num] labels sample_fn conditions on with that rng, or None for an unconditional model (the
    family's sample_labels); metrics with needs_labels require them."""
    if not self.groups:
      return {}
    config, ev = self.config, self.config.eval
    wants_labels = [
      f"{name}_{kind}"
      for name, kinds in self.groups.items()
      for kind in kinds
      if SAMPLE_METRICS.get(kind).needs_labels
    ]
    labels_of = jax.jit(label_fn, static_argnums=1) if wants_labels and label_fn else None
    if wants_labels and (labels_of is None or labels_of(jax.random.key(0), 1) is None):
      raise ValueError(
        f"Sample metric(s) {', '.join(wants_labels)} compare samples with the label they were "
        "generated for: they need a class-conditional model (model.num_classes or "
        "model.conditional)."
      )
    batch_size = ev.sample_batch_size
    accumulators = {
      name: FeatureAccumulator(
        self.extractors[name],
        self.value_range,
        ev.feature_samples,
        total=ev.num_samples if needs_logits(kinds) else 0,
        num_splits=ev.is_splits,
        what=f"{config.family} samples",
      )
      for name, kinds in self.groups.items()
    }
    sample = jax.jit(sample_fn, static_argnums=3, out_shardings=parallel.batch_sharded(self.mesh))
    key = jax.random.key(ev.sample_seed)
    for index in range(math.ceil(ev.num_samples / batch_size)):
      batch_key = jax.random.fold_in(key, index)
      images = sample(params, model_state, batch_key, batch_size)
      if self.unpadded_shape:
        images = unpad(images, self.unpadded_shape)
      labels = labels_of(batch_key, batch_size) if labels_of else None
      mask = jnp.arange(batch_size) < ev.num_samples - index * batch_size
      for accumulator in accumulators.values():
        accumulator.add(images, mask, labels)
    for name, comparison in self.paper_comparisons.items():
      logging.info("%s metrics: %s", name, comparison["label"])
    results = {}
    for name, kinds in self.groups.items():
      reference = self.references[name][0] if name in self.references else None
      summary = accumulators[name].result()
      results.update(metrics_from_summaries(name, kinds, summary, reference, self.context))
    return results

  def protocol(self) -> dict[str, Any]:
    """How the sample metrics are made: counts, seeds, sampler, the definition of each metric,
    reference and extractor ids."""
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
      if name in self.paper_comparisons:
        entry["paper_comparison"] = self.paper_comparisons[name]
      extractors[name] = entry
    return {
      "num_samples": ev.num_samples,
      "sample_batch_size": ev.sample_batch_size,
      "sample_seeds": f"batch i uses jax.random.fold_in(jax.random.key({ev.sample_seed}), i)",
      "parameters": "EMA" if ev.use_ema else "raw",
      "value_range": list(self.value_range) if self.value_range else None,
      "image_size": config.data.image_size or "native",
      "compared_size": (
        f"the centre {self.unpadded_shape[0]}x{self.unpadded_shape[1]} of each sample (the "
        "dataset's own size; data.image_size only zero-pads)"
        if self.unpadded_shape
        else "as sampled"
      ),
      "sampling": config.sampling.to_dict(),
      "reference_split": ev.reference_split,
      "feature_samples": f"the first {ev.feature_samples} samples / reference examples are kept as "
      "feature vectors (for the metrics on samples rather than moments)",
      "metric_definitions": metric_definitions(self.groups, self.context),
      "extractors": extractors,
      "genjax_version": genjax.__version__,
    }

"""Pixel attribution: plain and integrated gradients (Sundararajan et al. 2017) of a per-example
score, here the MNIST classifier's logit of its predicted class and a GAN's critic score.

For f: images [B, H, W, C] -> scores [B], example b's score depending on example b only:
  gradients(f, x)                    d f_b / d x_b                                  [B, H, W, C]
  integrated_gradients(f, x, x')     (x - x') * int_0^1 grad f(x' + a (x - x')) da   [B, H, W, C]
    with the midpoint rule on `steps` points a_k = (k + 1/2) / steps; completeness:
    sum over pixels of example b = f_b(x) - f_b(x') + O(1 / steps^2) for a smooth f (O(1 / steps)
    across the kinks of a ReLU network).
  completeness_error(attributions, f(x) - f(x'))
                                     max_b |sum_b - (f_b(x) - f_b(x'))| / max_b |f_b(x) - f_b(x')|,
                                     sum_b = the sum of example b's attributions
  one_at_a_time(score, context)      a per-example f from a score whose examples interact (batch
                                     norm with batch statistics, StyleGAN2's minibatch std): f_b(x)
                                     = score(context with row b replaced by x_b)_b.

The "attribution" tool applies them to generated MNIST-shaped samples (28x28x1 or 32x32x1) with a
black baseline (data.value_range's low end).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from genjax.evaluation.extractors import MnistExtractor
from genjax.images import to_unit_range
from genjax.interpret import TOOLS, NotApplicable, Tool, ToolResult

Score = Callable[[jax.Array], jax.Array]  # images [B, H, W, C] -> [B]

NUM_SAMPLES = 8
IG_STEPS = 64
MNIST_SHAPES = ((28, 28, 1), (32, 32, 1))


# --- pure math ------------------------------------------------------------------------------------


def gradients(f: Score, x: jax.Array) -> jax.Array:
  """d f_b / d x_b [B, H, W, C] (the gradient of sum_b f_b, which is that when f_b sees x_b only)."""
  return jax.grad(lambda images: f(images).sum())(x)


def integrated_gradients(
  f: Score, x: jax.Array, baseline: jax.Array | float, steps: int = 64, chunk: int = 16
) -> jax.Array:
  """(x - baseline) * (1/steps) sum_k grad f(baseline + a_k (x - baseline)), a_k = (k + 1/2)/steps:
  [B, H, W, C]. baseline broadcasts against x [B, H, W, C]; the path points are evaluated `chunk`
  at a time (vectorised), so memory stays at chunk * B images."""
  baseline = jnp.broadcast_to(jnp.asarray(baseline, x.dtype), x.shape)
  alphas = (jnp.arange(steps, dtype=x.dtype) + 0.5) / steps
  along = jax.lax.map(
    lambda a: gradients(f, baseline + a * (x - baseline)), alphas, batch_size=min(chunk, steps)
  )
  return (x - baseline) * along.mean(axis=0)


def completeness_error(attributions: jax.Array, change: jax.Array) -> float:
  """max_b |sum of attributions_b - change_b| / max_b |change_b| for attributions [B, ...] of the
  score changes change_b = f_b(x) - f_b(baseline) [B]: how far the attributions are from
  accounting for the change of the score (integrated gradients: 0 as steps -> infinity)."""
  gap = jnp.asarray(attributions).reshape(change.shape[0], -1).sum(axis=1) - change
  return float(jnp.abs(gap).max() / jnp.maximum(jnp.abs(change).max(), 1e-12))


def one_at_a_time(score: Score, context: jax.Array) -> Score:
  """f with f_b(x) = score(context with row b replaced by x_b)_b, for a score whose examples
  interact within the batch: each example is scored among the other examples of `context` [B, ...],
  so f_b depends on x_b alone (B evaluations of `score` per call)."""

  def f(x):
    def one(index, example):
      return score(context.at[index].set(example))[index]

    return jax.vmap(one)(jnp.arange(x.shape[0]), x)

  return f


# --- figure ---------------------------------------------------------------------------------------


def attribution_figure(
  images: np.ndarray, maps: dict[str, np.ndarray], row_labels: list[str], title: str
) -> Figure:
  """One row per example: the image [H, W, C] in [0, 1] in grey, then each attribution map
  [B, H, W, C] (summed over channels) over the image in grey, as a diverging colour map (red:
  raises the score, blue: lowers it), symmetric around 0 with its own scale per panel."""
  count = images.shape[0]
  figure = Figure(figsize=(1.9 * (1 + len(maps)), 1.7 * count + 0.4))
  axes = figure.subplots(count, 1 + len(maps), squeeze=False)
  grey = images.mean(axis=-1)
  for row in range(count):
    axes[row, 0].imshow(grey[row], cmap="gray", vmin=0.0, vmax=1.0)
    axes[row, 0].set_ylabel(row_labels[row], fontsize=8)
    for column, (name, values) in enumerate(maps.items(), start=1):
      signed = values[row].sum(axis=-1)
      scale = max(float(np.abs(signed).max()), 1e-12)
      axis = axes[row, column]
      axis.imshow(grey[row], cmap="gray", vmin=0.0, vmax=1.0)
      shown = axis.imshow(signed, cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -scale, scale), alpha=0.7)
      figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
      if row == 0:
        axis.set_title(name, fontsize=9)
  axes[0, 0].set_title("sample", fontsize=9)
  for axis in axes.ravel():
    axis.set_xticks([])
    axis.set_yticks([])
  figure.suptitle(title, fontsize=9)
  figure.tight_layout()
  return figure


# --- the tool -------------------------------------------------------------------------------------


def _attribute(
  f: Score, x: jax.Array, baseline: jax.Array
) -> tuple[dict, np.ndarray, float, float]:
  """(maps {"gradient", "integrated gradients"} [B, H, W, C], scores f(x) [B], IG's completeness
  error, seconds), computed in one compiled function."""
  start = time.perf_counter()

  @jax.jit
  def compute(x):
    scores = f(x)
    change = scores - f(baseline)
    return gradients(f, x), integrated_gradients(f, x, baseline, IG_STEPS), scores, change

  plain, integrated, scores, change = jax.device_get(compute(x))
  seconds = time.perf_counter() - start
  maps = {"gradient": np.asarray(plain), "integrated gradients": np.asarray(integrated)}
  return maps, np.asarray(scores), completeness_error(integrated, change), seconds


def run_attribution(experiment, state, rng: jax.Array) -> ToolResult:
  """Plain and integrated gradients (IG_STEPS midpoint steps, black baseline) on NUM_SAMPLES
  generated samples of: the MNIST classifier's logit of its predicted class, and for GANs the
  discriminator's score of each sample among the others (`one_at_a_time`)."""
  config, family = experiment.config, experiment.family
  shape = tuple(family.example_shape)
  if shape not in MNIST_SHAPES:
    raise NotApplicable(
      f"The 'attribution' tool explains the MNIST classifier, which takes digits 28x28x1 or "
      f"32x32x1; this run's {config.data.name!r} examples are {'x'.join(map(str, shape))}."
    )
  low, high = config.data.value_range
  params = experiment.sample_params(state)
  x = jnp.clip(experiment.sample_fn(params, state.model_state, rng, NUM_SAMPLES), low, high)
  baseline = jnp.full_like(x, low)
  shown = np.asarray(jnp.clip(to_unit_range(x, (low, high)), 0.0, 1.0))

  extractor = MnistExtractor.load()

  def logits(images):
    return extractor.apply(extractor.variables, images, (low, high))[1]

  classes = jnp.argmax(jax.jit(logits)(x), axis=1)

  def class_logit(images):
    return jnp.take_along_axis(logits(images), classes[:, None], axis=1)[:, 0]

  maps, scores, error, seconds = _attribute(class_logit, x, baseline)
  figures = {
    "classifier": attribution_figure(
      shown,
      maps,
      [f"class {c}, logit {s:.1f}" for c, s in zip(classes, scores, strict=True)],
      f"MNIST classifier's predicted-class logit; IG: {IG_STEPS} steps from black",
    )
  }
  summary = {
    "num_samples": NUM_SAMPLES,
    "ig_steps": IG_STEPS,
    "baseline": f"black (value_range low {low:g})",
    "predicted_classes": [int(c) for c in classes],
    "classifier_completeness_error": error,
    "classifier_seconds": seconds,
  }

  if config.family in ("gan", "stylegan2"):
    labels = family.sample_labels(rng, NUM_SAMPLES)  # the labels `sample` generated x with
    d_params = state.params["discriminator"]

    def critic(images):
      d_input = family._from_value_range(images)
      return family._discriminate(d_params, state.model_state, d_input, labels, False)[0]

    maps, values, error, seconds = _attribute(one_at_a_time(critic, x), x, baseline)
    figures["discriminator"] = attribution_figure(
      shown,
      maps,
      [f"D {v:.2f}" for v in values],
      f"discriminator score (each sample among the others); IG: {IG_STEPS} steps from black",
    )
    summary.update(
      discriminator_completeness_error=error,
      discriminator_seconds=seconds,
      discriminator_scores=[round(float(v), 4) for v in values],
    )
  return ToolResult(figures=figures, summary=summary)


TOOLS.register("attribution")(
  Tool(
    ("vae", "gan", "stylegan2", "diffusion"),
    "plain and integrated gradients of the MNIST classifier's predicted logit (and a GAN's "
    "discriminator) on generated samples",
    run_attribution,
  )
)

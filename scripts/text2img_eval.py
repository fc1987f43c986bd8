"""Measures a trained text2img MNIST run: prompt following, attribute control, guidance, speed.

  python scripts/text2img_eval.py --config=configs/text2img_mnist.py --workdir=workdirs/text2img_mnist

Writes <workdir>/text2img_eval/results.json, guidance.png (accuracy and FID against the guidance
weight) and prompts.png (one held-out prompt per row). Protocol:

  prompts     held-out phrasings only (genjax.text.captions, split "eval"): for each digit d,
              --prompts_per_digit prompts (default 10), prompt j drawn with
              default_rng([1, d, j]) and a random subset of thickness / slant / size stated
  accuracy    the project's MNIST classifier's class of each generated image equals the digit its
              prompt names; --images_per_prompt images per prompt (default 20: 2,000 images)
  FID         mnist_fid (the classifier's features; genjax.evaluation) of those images against
              the MNIST training set, for guidance weights --guidances (default 0,1,2,4,8)
  attributes  for each digit, --attribute_images images (default 50) of "thick d" vs "thin d",
              "slanted left d" vs "slanted right d" and "large d" vs "small d" (held-out phrasing,
              the other attributes unstated), at the config's guidance; measured with
              genjax.text.captions.measure_attributes; effect size Cohen's d = (mean_a - mean_b)
              / pooled std over all 10 digits' images
  speed       images per second of family.generate (the config's sampler and steps, e.g. 20-step
              DPM-Solver++(2M), guidance on: 2 network evaluations per step) at --speed_batch,
              median of 3 timed calls after a compile
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from genjax import trainer
from genjax.config import apply_overrides, load_config
from genjax.evaluation.sample_metrics import SampleMetricsEvaluator
from genjax.images import make_grid, save_png
from genjax.text import captions

ATTRIBUTE_PAIRS = {
  "thickness": ({"thickness": "thick"}, {"thickness": "thin"}),
  "slant": ({"slant": "right"}, {"slant": "left"}),
  "size": ({"size": "large"}, {"size": "small"}),
}


def held_out_prompts(per_digit: int, attributes: bool = True) -> tuple[list[str], np.ndarray]:
  """per_digit held-out prompts for each digit; with `attributes`, each states a random subset of
  thickness, slant and size, else none of them."""
  prompts, labels = [], []
  for digit in range(10):
    for j in range(per_digit):
      rng = np.random.default_rng([1, digit, j])
      stated = {name: str(rng.choice([None, *options]) or "") or None
                for name, options in (("thickness", ("thin", "thick")),
                                      ("slant", ("left", "upright", "right")),
                                      ("size", ("small", "large")))} if attributes else {}
      prompts.append(captions.prompt(digit, **stated, rng=rng))
      labels.append(digit)
  return prompts, np.asarray(labels, np.int32)


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", required=True)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--override", action="append", default=[], help="key=value config overrides")
  parser.add_argument("--guidances", default="0,1,2,4,8")
  parser.add_argument("--prompts_per_digit", type=int, default=10)
  parser.add_argument("--images_per_prompt", type=int, default=20)
  parser.add_argument("--attribute_images", type=int, default=50, help="0: no attribute test")
  parser.add_argument("--speed_batch", type=int, default=500, help="0: no speed test")
  parser.add_argument("--prompt_attributes", default="random", choices=["random", "none"],
                      help="whether the accuracy prompts state attributes")
  parser.add_argument("--name", default="text2img_eval", help="folder under the workdir")
  args = parser.parse_args(argv)

  config = load_config(args.config)
  apply_overrides(config, dict(item.split("=", 1) for item in args.override))
  experiment, state, step = trainer.restore_for_inference(config, args.workdir, None)
  family, params = experiment.family, experiment.sample_params(state)
  out_dir = experiment.workdir / args.name
  out_dir.mkdir(parents=True, exist_ok=True)

  def text_of(prompts):
    return family._constant_text(family.encode_prompts(prompts))

  prompts, labels = held_out_prompts(args.prompts_per_digit, args.prompt_attributes == "random")
  prompt_text = text_of(prompts)
  metric_config = config.copy_and_resolve_references()
  metric_config.eval.sample_metrics = ("mnist_accuracy", "mnist_fid")
  metric_config.eval.num_samples = len(prompts) * args.images_per_prompt
  metric_config.eval.sample_batch_size = len(prompts)
  evaluator = SampleMetricsEvaluator(metric_config, experiment.info, experiment.mesh)
  label_fn = lambda rng, num: jnp.asarray(labels)[jnp.arange(num) % len(labels)]
  results = {"step": step, "prompts": prompts, "guidance": {}}
  for weight in (float(g) for g in args.guidances.split(",")):
    sample_fn = lambda p, m, rng, num, w=weight: family.generate(
      p, jax.tree.map(lambda v: v[jnp.arange(num) % len(labels)], prompt_text), rng, w)
    start = time.perf_counter()
    measured = evaluator.run(sample_fn, params, {}, label_fn)
    results["guidance"][f"{weight:g}"] = {**measured, "seconds": time.perf_counter() - start}
    print(f"guidance {weight:g}: {measured}", flush=True)

  weight = config.sampling.guidance
  draw = jax.jit(lambda p, text, rng: family.generate(p, text, rng, weight))
  attributes = {}
  for name, (first, second) in ATTRIBUTE_PAIRS.items() if args.attribute_images else ():
    values = []
    for index, stated in enumerate((first, second)):
      sides = [captions.prompt(d, **stated, rng=np.random.default_rng([2, d, index]))
               for d in range(10) for _ in range(args.attribute_images)]
      images = np.asarray(draw(params, text_of(sides), jax.random.key(100 + index)))
      values.append(captions.measure_attributes(images)[name])
    a, b = (v[np.isfinite(v)] for v in values)
    pooled = np.sqrt((a.var(ddof=1) * (len(a) - 1) + b.var(ddof=1) * (len(b) - 1)) / (len(a) + len(b) - 2))
    attributes[name] = {
      "prompts": [next(iter(first.values())), next(iter(second.values()))],
      "mean": [float(a.mean()), float(b.mean())], "std": [float(a.std()), float(b.std())],
      "cohens_d": float((a.mean() - b.mean()) / pooled), "images_each": len(a),
    }
    print(name, attributes[name], flush=True)
  results["attributes"] = attributes
  results["attribute_guidance"] = weight

  if args.speed_batch:
    results["speed"] = _speed(params, draw, prompt_text, len(labels), args.speed_batch, config)
  shown = [prompts[d * args.prompts_per_digit] for d in range(10)]
  grid_text = jax.tree.map(lambda v: jnp.repeat(v, 10, axis=0), text_of(shown))
  grid = np.asarray(draw(params, grid_text, jax.random.key(7)))
  (out_dir / "prompts.txt").write_text("\n".join(shown) + "\n")
  save_png(out_dir / "prompts.png", make_grid(np.clip(grid, 0, 1), 10))
  _plot(results, out_dir)
  (out_dir / "results.json").write_text(json.dumps(results, indent=2))
  experiment.checkpointer.close()
  return results


def _speed(params, draw, prompt_text, num_prompts: int, batch: int, config) -> dict:
  """Images per second of `draw` at `batch` prompts, median of 3 timed calls after a compile."""
  speed_text = jax.tree.map(lambda v: v[jnp.arange(batch) % num_prompts], prompt_text)
  jax.block_until_ready(draw(params, speed_text, jax.random.key(0)))
  times = []
  for repeat in range(3):
    start = time.perf_counter()
    jax.block_until_ready(draw(params, speed_text, jax.random.key(repeat + 1)))
    times.append(time.perf_counter() - start)
  speed = {
    "images_per_second": batch / statistics.median(times), "batch": batch,
    "sampler": config.sampling.sampler, "num_steps": config.sampling.num_steps,
    "guidance": config.sampling.guidance, "seconds": times,
    "device": str(jax.devices()[0].device_kind),
  }
  print("speed", speed, flush=True)
  return speed


def _plot(results: dict, out_dir) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  weights = [float(w) for w in results["guidance"]]
  rows = list(results["guidance"].values())
  figure, (left, right) = plt.subplots(1, 2, figsize=(8, 3))
  left.plot(weights, [100 * r["mnist_accuracy"] for r in rows], "o-")
  left.set(xlabel="guidance weight w", ylabel="classifier accuracy (%)", title="prompt following")
  right.plot(weights, [r["mnist_fid"] for r in rows], "o-", color="C1")
  right.set(xlabel="guidance weight w", ylabel="MNIST FID", title="sample quality")
  figure.tight_layout()
  figure.savefig(str(out_dir / "guidance.png"), dpi=120)
  plt.close(figure)


if __name__ == "__main__":
  main()

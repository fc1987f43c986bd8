"""Mode collapse of an MNIST GAN config under overrides: class histogram and MNIST FID of raw-G and
EMA-G samples at fixed steps (a diagnostic, not a test; the README's stylegan2_mnist row).

  GENJAX_DATA_DIR=../shared/data/mnist python scripts/gan_collapse_sweep.py \
      --config=configs/stylegan2_mnist.py --steps=3000 --checks=500,1000,2000,3000 --out=/tmp/sweep \
      --variants='{"config": {}, "lr5e4": {"optim.lr": 0.0005, "optim.d_lr": 0.0005}}'

Each variant is the config with its overrides ("section.key": value), trained from seed 0 by the
family's own train_step on batches drawn with replacement from the official MNIST training files
(genjax.datasets.read_mnist_idx, the config's preprocessing): no tfds, grain or checkpoints, so it
also runs where only jax and flax are installed (the GPU runs of the README). At each check step
it writes one JSON line to <out>/sweep.jsonl: the step's train metrics, seconds since the start,
and for the raw generator and its EMA the MNIST FID of --num_samples samples against the first
10,000 training images (genjax MNIST-classifier features; FIDs of other sample counts are not
comparable) and `classes`, the share of samples the MNIST classifier assigns to each digit: a
collapsed generator puts nearly all of them on one. <out>/grids.npz keeps the first 64 samples of
each (variant, step, raw or ema).

With --samples=a.npz,b.npz instead, it prints for each file of samples (`genjax.main --mode=sample
--config.sampling.num_samples=N` writes one, for any MNIST config) the digit shares and how
unambiguous the classifier finds them (`confident_share`: top class probability > 0.9), and how
much faint background noise they carry (`faint_pixel_share`: pixels between 1% and 10% of full
intensity; real MNIST test digits 0.016, where 82% of the pixels are below 1%).
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from genjax.config import apply_overrides
from genjax.datasets import DatasetInfo, read_mnist_idx
from genjax.evaluation.extractors import MnistExtractor
from genjax.evaluation.frechet import frechet_distance
from genjax.evaluation.statistics import moments_all_at_once
from genjax.input_pipeline import preprocess_fn
from genjax.trainer import Experiment

_CONFIG = config_flags.DEFINE_config_file("config", None, "An MNIST GAN config, path[:arg].")
_VARIANTS = flags.DEFINE_string("variants", '{"config": {}}', "JSON {name: {dotted key: value}}.")
_STEPS = flags.DEFINE_integer("steps", 3000, "Train steps per variant.")
_CHECKS = flags.DEFINE_list("checks", ["500", "1000", "2000", "3000"], "Steps to measure at.")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 1000, "Samples per measurement.")
_OUT = flags.DEFINE_string("out", None, "Output folder (for training variants).")
_SAMPLES = flags.DEFINE_list(
  "samples",
  [],
  "Instead of training: .npz files of samples ('samples' [N, H, W, 1] on [-1, 1],"
  " 28x28 or 32x32, from `genjax.main --mode=sample` or scripts/stylegan2_reference.py"
  " --mode=train_mnist) to report the digit shares and classifier confidence of.",
)

_FEATURE_BATCH = 500
_REFERENCE_IMAGES = 10_000


@functools.cache
def _features_fn(value_range: tuple[float, float]):
  extractor = MnistExtractor.load()
  return jax.jit(lambda x: extractor.apply(extractor.variables, x, value_range))


def mnist_features(images: np.ndarray, value_range: tuple[float, float]):
  """(features [N, 128], logits [N, 10]) of images [N, 28 or 32, 28 or 32, 1] in value_range."""
  apply = _features_fn(value_range)
  outputs = [apply(images[i : i + _FEATURE_BATCH]) for i in range(0, len(images), _FEATURE_BATCH)]
  return tuple(np.concatenate([np.asarray(out[k]) for out in outputs]) for k in (0, 1))


def with_overrides(config, overrides: dict):
  """A copy of config with the dotted overrides set (unknown keys rejected with the nearest ones)."""
  config = config.copy_and_resolve_references()
  apply_overrides(config, overrides)
  return config


def sweep_variant(name, config, images, labels, reference, checks, out: Path) -> None:
  info = DatasetInfo(images.shape[1:], 10, is_image=True)
  grids = dict(np.load(out / "grids.npz")) if (out / "grids.npz").exists() else {}
  with tempfile.TemporaryDirectory() as workdir:
    experiment = Experiment(config, workdir, info)
    family, state = experiment.family, experiment.init_state()
    preprocess = preprocess_fn(config.data, info, train=True)
    train_step = jax.jit(family.train_step, donate_argnums=0)
    sample = jax.jit(
      lambda params, model_state, key: family.sample(params, model_state, key, _NUM_SAMPLES.value)
    )
    rng, start = np.random.default_rng(0), time.time()
    for step in range(1, _STEPS.value + 1):
      index = rng.integers(0, len(images), config.training.batch_size)
      batch = preprocess({"x": images[index], "label": labels[index]}, rng)
      state, metrics = train_step(state, {k: jnp.asarray(v) for k, v in batch.items()})
      if step not in checks:
        continue
      row = {
        "variant": name,
        "step": step,
        "seconds": round(time.time() - start, 1),
        **{k: round(float(v), 4) for k, v in metrics.items() if np.ndim(v) == 0},
      }
      for which, params in (("raw", state.params), ("ema", state.ema_params)):
        x = np.asarray(sample(params, state.model_state, jax.random.key(1)))
        features, logits = mnist_features(x, tuple(config.data.value_range))
        row[f"fid_{which}"] = round(frechet_distance(*moments_all_at_once(features), *reference), 2)
        row[f"classes_{which}"] = digit_shares(logits)
        grids[f"{name}_{step}_{which}"] = x[:64]
      print(json.dumps(row), flush=True)
      with open(out / "sweep.jsonl", "a") as file:
        file.write(json.dumps(row) + "\n")
      np.savez_compressed(out / "grids.npz", **grids)
    experiment.checkpointer.close()


def digit_shares(logits: np.ndarray) -> list[float]:
  """The share of samples the MNIST classifier puts on each digit, from its logits [N, 10]."""
  return [
    round(float(share), 3) for share in np.bincount(logits.argmax(-1), minlength=10) / len(logits)
  ]


def confidence(logits: np.ndarray, threshold: float = 0.9) -> dict[str, float]:
  """How unambiguous the samples are to the MNIST classifier, from its logits [N, 10]: the share
  whose top class has probability > threshold (`confident_share`), and the mean top probability.
  Real test digits: above 0.95; two digits of different classes blended half and half: about
  0.3 and 0.73. It measures ambiguity between digits, not realism: the classifier gives uniform
  noise a top probability of 1."""
  top = np.asarray(jax.nn.softmax(logits, axis=-1)).max(-1)
  return {
    "confident_share": round(float(np.mean(top > threshold)), 3),
    "mean_top_probability": round(float(top.mean()), 3),
  }


def faint_pixel_share(samples: np.ndarray) -> float:
  """The share of pixels of samples on [-1, 1] whose intensity on [0, 1] lies in [0.01, 0.1):
  faint noise on the black background, which a sampler's final denoising should have removed."""
  intensity = (samples + 1.0) / 2.0
  return round(float(np.mean((intensity >= 0.01) & (intensity < 0.1))), 3)


def samples_report(path: str) -> dict:
  """Digit shares (max_share, classes), confidence and faint_pixel_share of the samples (on
  [-1, 1]) in an .npz file."""
  samples = np.load(path)["samples"].astype(np.float32)
  logits = mnist_features(samples, (-1.0, 1.0))[1]
  shares = digit_shares(logits)
  return {
    "samples": path,
    "max_share": max(shares),
    "classes": shares,
    **confidence(logits),
    "faint_pixel_share": faint_pixel_share(samples),
  }


def main(argv):
  del argv
  if _SAMPLES.value:
    for path in _SAMPLES.value:
      print(json.dumps(samples_report(path)))
    return
  if _OUT.value is None or _CONFIG.value is None:
    raise app.UsageError("Give --config and --out to train variants, or --samples to classify.")
  out = Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  images, labels = read_mnist_idx(
    os.environ.get("GENJAX_DATA_DIR", "../shared/data/mnist"), "train"
  )
  images, labels = images[..., None], labels.astype(np.int32)
  reference = moments_all_at_once(
    mnist_features(images[:_REFERENCE_IMAGES] / np.float32(255), (0.0, 1.0))[0]
  )
  checks = {int(step) for step in _CHECKS.value}
  for name, overrides in json.loads(_VARIANTS.value).items():
    sweep_variant(
      name, with_overrides(_CONFIG.value, overrides), images, labels, reference, checks, out
    )


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  app.run(main)

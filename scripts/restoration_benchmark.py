"""Restoration benchmark on MNIST: genjax's diffusion-prior (and SR3 / VAE) restorers against
classical baselines, on the same seeded degradations of the first --num_images MNIST test digits.

  GENJAX_DATA_DIR=../shared/data/mnist python scripts/restoration_benchmark.py \
    --prior_config=configs/ddpm_mnist28.py --prior_workdir=workdirs/ddpm_mnist28 \
    [--sr3_config=... --sr3_workdir=...] [--vae_config=configs/vae_mnist.py --vae_workdir=...] \
    --num_images=200 --seed=0 --out=workdirs/restoration_benchmark

Protocol (genjax.evaluation.restoration.PROTOCOL): Gaussian noise of std 0.2 and 0.5 on [0, 1]
pixels (not clipped); a centred 14x14 box and random brush strokes (25-35%) unknown; 2x and 4x
block-mean downsampling. Every degradation is drawn from --seed. For each one: every classical
baseline of its task (denoisers' free parameters tuned on the first --tuning_images MNIST *training*
images, noise seed --seed + 1, never on test images), every method the restorers list for the task,
and an "input" row (the measurement itself, for denoising and inpainting). Every output is clipped
to [0, 1]; PSNR and SSIM are per image on [0, 1] pixels (mean and standard error over the images);
MNIST FID of the N restored images against all 60,000 training images (genjax MNIST-classifier
features; biased at small N, so compare rows with each other and with the "ground truth" row, the
clean images' own FID at this N). Time per image: wall time of the restore calls after the first
(which compiles; reported apart), per image row computed; baselines: one call over all images.

Writes to --out: results.json (every number, per-image PSNR/SSIM, the protocol, the command line),
results.md (the README's columns) and comparison.png (per degradation --figure_examples examples:
input, the two best baselines by PSNR, the genjax methods, ground truth), plus one
comparison_<degradation>.png with every method. Without any workdir only the baselines run.
With --save_outputs, also outputs/<degradation>/<method>.npz: the restored images themselves (and
outputs/none/ground_truth.npz, the clean images, in the same order), which
scripts/evaluate.py scores with any sample metric, e.g. the Inception FID of SR3's 4x outputs of the
first 1,000 test digits against those digits (SR3's protocol: outputs vs the originals):
  python scripts/restoration_benchmark.py --sr3_config=configs/sr3_mnist.py \
    --sr3_workdir=workdirs/sr3_mnist --tasks=superres_x4 --num_images=1000 --save_outputs --out=<o>
  python scripts/evaluate.py --samples=<o>/outputs/superres_x4/sr3_sr3.npz --value_range=0,1 \
    --metrics=inception_fid,inception_kid,mnist_fid --reference_split=test \
    --reference_num_examples=1000 --kid_subset_size=500
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import shlex
import sys
import time
import traceback
from pathlib import Path

import jax
import numpy as np
from absl import app, flags, logging

import genjax
from genjax import parallel
from genjax.config import apply_overrides, base_config, load_config
from genjax.datasets import load_source
from genjax.evaluation import restoration
from genjax.evaluation.extractors import EXTRACTORS
from genjax.evaluation.reference import get_reference

_SOURCES = ("prior", "sr3", "vae")
_WORKDIRS = {
  name: flags.DEFINE_string(f"{name}_workdir", "", f"Trained {name} workdir (optional).")
  for name in _SOURCES
}
_CONFIGS = {
  name: flags.DEFINE_string(f"{name}_config", "", f"Config of --{name}_workdir, path[:arg].")
  for name in _SOURCES
}
_NUM_IMAGES = flags.DEFINE_integer("num_images", 200, "The first N MNIST test images.")
_TUNING_IMAGES = flags.DEFINE_integer(
  "tuning_images", 100, "The first M MNIST training images tune the baselines' parameters."
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the degradations and of the genjax samplers.")
_OUT = flags.DEFINE_string("out", None, "Output folder.")
_TASKS = flags.DEFINE_list(
  "tasks", [], "Tasks (denoise, inpaint, superres) or degradation names; empty: all."
)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 100, "Images per genjax restore call.")
_FIGURE_EXAMPLES = flags.DEFINE_integer(
  "figure_examples", 3, "Examples per degradation in figures."
)
_SKIP_METHODS = flags.DEFINE_list("skip_methods", [], "genjax methods not to run (e.g. pigdm).")
_RESTORE_STEPS = flags.DEFINE_integer(
  "restore_steps",
  0,
  "Steps of the diffusion restorers (config.restore.num_steps); 0: the config's.",
)
_MANUAL_DIR = flags.DEFINE_string("manual_dir", "", "MNIST files (else $GENJAX_DATA_DIR).")
_SAVE_OUTPUTS = flags.DEFINE_bool(
  "save_outputs",
  False,
  "Also write every method's restored images to --out/outputs/<degradation>/<method>.npz "
  '("samples" [N, 28, 28, 1] on [0, 1]), for scripts/evaluate.py (e.g. Inception FID).',
)


def selected_degradations(names: list[str]) -> list[restoration.Degradation]:
  """The PROTOCOL entries whose task or name is in `names` (all when empty)."""
  known = set(restoration.TASKS) | {d.name for d in restoration.PROTOCOL}
  unknown = [name for name in names if name not in known]
  if unknown:
    raise app.UsageError(f"Unknown --tasks {unknown}; choose from {sorted(known)}.")
  return [d for d in restoration.PROTOCOL if not names or d.task in names or d.name in names]


def mnist_images(split: str, count: int) -> np.ndarray:
  """The first `count` images of an MNIST split (tfds order), [count, 28, 28, 1] on [0, 1]."""
  data = base_config().data
  data.name, data.manual_dir, data.in_memory = "mnist", _MANUAL_DIR.value, False
  source = load_source(data, split, seed=0)
  return source.gather(np.arange(count))["x"].astype(np.float32) / 255.0


def fid_reference() -> tuple[tuple[np.ndarray, np.ndarray], dict]:
  """(mean, covariance) of the MNIST-classifier features of all 60,000 training images (cached
  by genjax.evaluation.reference) and the reference's protocol."""
  config = base_config()
  config.data.manual_dir = _MANUAL_DIR.value
  config.eval.reference_split = "train"
  stats, path = get_reference(
    EXTRACTORS.get("mnist")(), config.data, config.eval, parallel.make_mesh()
  )
  protocol = {
    "split": "train",
    "count": stats.count,
    "file": str(path),
    "protocol_sha256": stats.protocol_sha256,
  }
  return (stats.mean, stats.covariance), protocol


# --------------------------------------------------------------------------------------- report


def scores(restored: np.ndarray, clean: np.ndarray, reference) -> dict:
  psnr, ssim = restoration.psnr(restored, clean), restoration.ssim(restored, clean)
  n = len(clean)
  return {
    "psnr": float(psnr.mean()),
    "psnr_se": float(psnr.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0,
    "ssim": float(ssim.mean()),
    "ssim_se": float(ssim.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0,
    "mnist_fid": restoration.mnist_fid(restored, reference) if n > 1 else None,
    "per_image": {"psnr": np.round(psnr, 4).tolist(), "ssim": np.round(ssim, 5).tolist()},
  }


def save_outputs(folder: Path, degradation: str, results: dict[str, np.ndarray]) -> list[Path]:
  """folder/<degradation>/<method>.npz for every method's restored images [N, H, W, C] on [0, 1]
  (as the rows score them), in the format of `--mode=sample`'s files: "samples", plus the method's
  and degradation's names. A file is named after its method, each run of characters other than
  letters, digits, '.', '-' and '_' made one '_', none at the ends ("sr3 (sr3)" -> "sr3_sr3").
  Evaluate one with: python scripts/evaluate.py --samples=<file> --value_range=0,1 --metrics=..."""
  paths = []
  for method, restored in results.items():
    path = folder / degradation / (re.sub(r"[^A-Za-z0-9._-]+", "_", method).strip("_") + ".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
      path, samples=restored.astype(np.float32), method=method, degradation=degradation
    )
    paths.append(path)
  return paths


def display_input(degradation, measured, mask):
  """What a figure shows as the input: unknown pixels mid-grey for inpainting."""
  if degradation.task == "inpaint":
    return measured * mask + 0.5 * (1.0 - mask)
  return measured


def markdown_table(rows: list[dict], command: str) -> str:
  lines = [
    "| task | method | PSNR (dB) | SSIM | MNIST FID | time per image | command |",
    "| --- | --- | --- | --- | --- | --- | --- |",
  ]
  for index, row in enumerate(rows):
    if "error" in row or "skipped" in row:
      cells = ["-", "-", "-", row.get("error") or row.get("skipped")]
    else:
      fid = "-" if row.get("mnist_fid") is None else f"{row['mnist_fid']:.1f}"
      seconds = row.get("seconds_per_image")
      timing = "-" if seconds is None else f"{seconds * 1e3:.2f} ms"
      if row.get("compile_seconds_estimate") is not None:
        timing += f" (first call {row['first_call_seconds']:.1f} s, incl. compile)"
      psnr = f"{row['psnr']:.2f} +- {row['psnr_se']:.2f}" if "psnr" in row else "-"
      ssim = f"{row['ssim']:.3f}" if "ssim" in row else "-"
      cells = [psnr, ssim, fid, timing]
    method = row["method"] + (f" ({row['kind']})" if row["kind"] != "classical" else "")
    if row.get("parameter") is not None:
      method += f", parameter {row['parameter']:g}"
    command_cell = f"`{command}`" if index == 0 else "(same run)"
    lines.append(f"| {row['degradation']} | {method} | {' | '.join(cells)} | {command_cell} |")
  return "\n".join(lines) + "\n"


def cpu_name() -> str:
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor()


def main(argv: list[str]) -> None:
  del argv
  if not _OUT.value:
    raise app.UsageError("--out is required.")
  for name in _SOURCES:
    if bool(_WORKDIRS[name].value) != bool(_CONFIGS[name].value):
      raise app.UsageError(f"--{name}_workdir and --{name}_config go together.")
  out = Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  data_dir = os.environ.get("GENJAX_DATA_DIR")
  command = (
    (f"GENJAX_DATA_DIR={shlex.quote(data_dir)} " if data_dir else "")
    + "python "
    + " ".join(shlex.quote(a) for a in sys.argv)
  )
  degradations = selected_degradations(_TASKS.value)
  seed, count = _SEED.value, _NUM_IMAGES.value

  restorers = {}
  if any(_WORKDIRS[name].value for name in _SOURCES):
    from genjax import restore  # the restorers' own dependencies only when one is asked for

    for name in _SOURCES:
      if _WORKDIRS[name].value:
        config = load_config(_CONFIGS[name].value)
        if _RESTORE_STEPS.value:
          apply_overrides(config, {"restore.num_steps": _RESTORE_STEPS.value})
        restorers[name] = restore.load_restorer(config, _WORKDIRS[name].value, step=None)
        logging.info("Loaded the %s restorer from %s.", name, _WORKDIRS[name].value)

  clean = mnist_images("test", count)
  tuning = mnist_images("train", _TUNING_IMAGES.value)
  reference, reference_protocol = fid_reference()
  key = jax.random.key(seed)
  examples = min(_FIGURE_EXAMPLES.value, count)
  rows: list[dict] = [
    {
      "degradation": "none",
      "task": "-",
      "method": "ground truth",
      "kind": "reference",
      **scores(clean, clean, reference),
    }
  ]
  if _SAVE_OUTPUTS.value:
    save_outputs(out / "outputs", "none", {"ground truth": clean})
  figure_rows, figure_names, failures = [], [], 0
  for degradation in degradations:
    d_index = restoration.PROTOCOL.index(degradation)  # stable whatever --tasks selects
    logging.info("%s: %s", degradation.name, degradation.describe())
    measured, mask = degradation.apply(clean, seed)
    base = {"degradation": degradation.name, "task": degradation.task}
    results: dict[str, np.ndarray] = {}
    if degradation.task != "superres":
      shown = np.clip(measured, 0.0, 1.0)
      rows.append(
        {**base, "method": "input", "kind": "reference", **scores(shown, clean, reference)}
      )
    for name in restoration.baselines_for(degradation.task):
      baseline = restoration.BASELINES.get(name)
      arguments = degradation.arguments(mask)
      row = {**base, "method": name, "kind": "classical", "description": baseline.description}
      if baseline.grid:
        start = time.perf_counter()
        arguments["parameter"] = restoration.tune_denoiser(
          name, tuning, degradation.sigma, seed + 1
        )
        row.update(
          parameter=arguments["parameter"],
          tuning_grid=list(baseline.grid),
          tuning_seconds=time.perf_counter() - start,
        )
      one = {k: v[:1] if isinstance(v, np.ndarray) else v for k, v in arguments.items()}
      baseline.restore(measured[:1], **one)  # warm-up: lazy imports, first-call overheads
      start = time.perf_counter()
      restored = baseline.restore(measured, **arguments)
      row["seconds_per_image"] = (time.perf_counter() - start) / count
      results[name] = restored
      rows.append({**row, **scores(restored, clean, reference)})
    baseline_rows = [
      r for r in rows if r["degradation"] == degradation.name and r["kind"] == "classical"
    ]
    best = [r["method"] for r in sorted(baseline_rows, key=lambda r: -r["psnr"])[:2]]
    genjax_names = []
    for source, restorer in restorers.items():
      for method in restorer.methods(degradation.task):
        if method in _SKIP_METHODS.value:
          continue
        label = f"{method}" if source == "prior" else f"{method} ({source})"
        row = {
          **base,
          "method": label,
          "kind": f"genjax {source}",
          "workdir": _WORKDIRS[source].value,
          "config": _CONFIGS[source].value,
        }
        pad = restoration.canvas_padding(tuple(restorer.shape), degradation)
        if pad is None:
          rows.append(
            {
              **row,
              "skipped": f"{degradation.name} does not align with the model's "
              f"{tuple(restorer.shape)} canvas",
            }
          )
          continue
        try:
          restored, timing = restoration.restore_in_batches(
            restorer,
            method,
            degradation,
            measured,
            mask,
            pad,
            jax.random.fold_in(key, d_index),
            _BATCH_SIZE.value,
          )
        except Exception as error:  # noqa: BLE001 - recorded; the other methods still run
          failures += 1
          logging.error("%s %s failed:\n%s", degradation.name, label, traceback.format_exc())
          rows.append({**row, "error": f"{type(error).__name__}: {error}"})
          continue
        results[label] = restored
        genjax_names.append(label)
        rows.append({**row, **timing, **scores(restored, clean, reference)})
        logging.info("%s %s: PSNR %.2f", degradation.name, label, rows[-1]["psnr"])
    if _SAVE_OUTPUTS.value:
      saved = save_outputs(out / "outputs", degradation.name, results)
      logging.info(
        "Saved %d restored sets under %s.", len(saved), out / "outputs" / degradation.name
      )
    shown = display_input(degradation, measured, mask)
    all_methods = list(results)
    restoration.comparison_figure(
      [[shown[i], *(results[m][i] for m in all_methods), clean[i]] for i in range(examples)],
      ["input", *all_methods, "ground truth"],
      out / f"comparison_{degradation.name}.png",
      [f"#{i}" for i in range(examples)],
    )
    for i in range(examples):
      figure_rows.append(
        (
          shown[i],
          [results[m][i] for m in best],
          {m: results[m][i] for m in genjax_names},
          clean[i],
        )
      )
      figure_names.append(f"{degradation.name} #{i}\nbaselines: {', '.join(best)}")
    partial = [{k: v for k, v in row.items() if k != "per_image"} for row in rows]
    (out / "results_so_far.md").write_text(markdown_table(partial, command))  # a run cut short

  genjax_columns = list(dict.fromkeys(name for row in figure_rows for name in row[2]))
  restoration.comparison_figure(
    [
      [given, *(top + [None] * (2 - len(top))), *(outputs.get(m) for m in genjax_columns), truth]
      for given, top, outputs, truth in figure_rows
    ],
    ["input", "best baseline", "2nd baseline", *genjax_columns, "ground truth"],
    out / "comparison.png",
    figure_names,
  )

  protocol = {
    "images": f"the first {count} MNIST test images (tfds order), uint8 / 255 on [0, 1], 28x28",
    "degradations": {d.name: d.describe() for d in degradations},
    "degradation_seed": seed,
    "noise": "the same standard-normal draw (np.random.default_rng(seed)) scaled by each sigma",
    "tuning": f"denoiser parameters: best mean PSNR over each baseline's grid on the first "
    f"{_TUNING_IMAGES.value} MNIST training images, noise seed {seed + 1}",
    "outputs": "clipped to [0, 1]; genjax outputs mapped from the model's value range first",
    "genjax_rng": "degradation d (index in PROTOCOL), batch b: jax.random.fold_in(fold_in(key(seed), d), b); num=1",
    "psnr": f"per image, 10 log10(1 / MSE) on [0, 1], capped at {restoration.PSNR_CAP_DB:g} dB; "
    "mean +- standard error over the images",
    "ssim": "per image, skimage structural_similarity, data_range 1, Gaussian window sigma 1.5, "
    "population covariances; mean +- standard error",
    "mnist_fid": "genjax MNIST-classifier features of the N restored images vs the reference "
    "below; biased at small N: compare rows of this run (and the ground-truth row, the floor)",
    "fid_reference": reference_protocol,
    "time_per_image": "genjax: wall time of the restore calls after the first (compile), per image "
    "row computed (batches padded to batch_size); baselines: one numpy call over all images after a one-image "
    "warm-up, tuning excluded",
    "batch_size": _BATCH_SIZE.value,
    "saved_outputs": "outputs/<degradation>/<method>.npz, as scored; outputs/none/ground_truth.npz"
    if _SAVE_OUTPUTS.value
    else None,
    "restorers": {
      name: {
        "workdir": _WORKDIRS[name].value,
        "config": _CONFIGS[name].value,
        "shape": list(r.shape),
        "value_range": list(r.value_range),
      }
      for name, r in restorers.items()
    },
    "hardware": {
      "cpu": cpu_name(),
      "cpu_count": os.cpu_count(),
      "jax_devices": [str(device) for device in jax.devices()],
    },
    "genjax_version": genjax.__version__,
  }
  record = {"command": command, "protocol": protocol, "results": rows}
  (out / "results.json").write_text(json.dumps(record, indent=1) + "\n")
  table_rows = [{k: v for k, v in row.items() if k != "per_image"} for row in rows]
  header = (
    f"# Restoration benchmark\n\n{protocol['images']}; seed {seed}; FID reference: all 60,000 MNIST "
    f"training images; hardware: {protocol['hardware']['cpu']}, devices "
    f"{', '.join(protocol['hardware']['jax_devices'])}. Protocol in results.json.\n\n"
  )
  (out / "results.md").write_text(header + markdown_table(table_rows, command))
  print(markdown_table(table_rows, command))
  if failures:
    raise SystemExit(f"{failures} genjax method(s) failed; see results.json.")


if __name__ == "__main__":
  app.run(main)

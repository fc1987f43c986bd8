"""`--mode=generate`: images from typed prompts with a trained text2img run.

  python -m genjax.main --config=configs/text2img_mnist.py --workdir=W --mode=generate \
      --prompt="a thick seven" [--num=16 --guidance=3 --seed=0 --output=DIR]
  ... --mode=generate --prompt_file=prompts.txt      # one prompt per line; blank lines skipped

For each prompt, `num` images drawn with the run's sampler (sampling.sampler, num_steps) and
guidance weight `guidance` (default sampling.guidance) from PRNG key fold_in(key(seed), i) for the
i-th prompt, so a prompt's images do not depend on the other prompts. Written to --output (default
<workdir>/generated):

  <slug>_g<guidance>_s<seed>.png   a grid of the num images (8 per row)
  <slug>_g<guidance>_s<seed>.npz   images [num, H, W, C] float32 in data.value_range, the prompt,
                                   guidance, seed, checkpoint step and whether it was truncated

slug: the prompt in lower case, runs of other characters than letters and digits as "-", at most
60 characters. An empty prompt is refused (the empty string is the unconditional model: ask for it
with --guidance=0 and a prompt, or use --mode=sample), as is a run that is not text2img or has no
checkpoint; a prompt longer than data.caption_length tokens is truncated with a warning.
"""

from __future__ import annotations

import re

import jax
import ml_collections
import numpy as np
from absl import logging
from etils import epath

from genjax.images import make_grid, save_png, to_unit_range
from genjax.paths import as_path
from genjax.text.encoder import TextEmbeddings

GRID_COLUMNS = 8


def read_prompts(prompt: str, prompt_file: str) -> list[str]:
  """The prompts of --prompt or --prompt_file (one per line, blank lines skipped), checked."""
  if bool(prompt) == bool(prompt_file):
    raise ValueError("--mode=generate needs --prompt=\"...\" or --prompt_file=<file>, one of them.")
  if prompt_file:
    path = epath.Path(prompt_file)
    if not path.exists():
      raise FileNotFoundError(f"--prompt_file={prompt_file!r} does not exist.")
    prompts = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not prompts:
      raise ValueError(f"--prompt_file={prompt_file!r} has no prompts (one per line).")
    return prompts
  if not prompt.strip():
    raise ValueError(
      "The prompt is empty. Describe the image (e.g. --prompt=\"a thick seven\"); the "
      "unconditional model is --mode=sample."
    )
  return [prompt.strip()]


def slug(prompt: str) -> str:
  return re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:60] or "prompt"


def generate_files(
  config: ml_collections.ConfigDict,
  workdir: epath.PathLike,
  prompts: list[str],
  *,
  num: int = 16,
  guidance: float | None = None,
  seed: int = 0,
  step: int | None = None,
  output: str = "",
) -> list[epath.Path]:
  """Writes each prompt's grid and .npz (module docstring); returns the PNG paths."""
  from genjax import trainer  # the runner imports this module's callers

  if config.family != "text2img":
    raise ValueError(
      f"--mode=generate draws images from prompts with a text2img run; this config is a "
      f"{config.family} config (use --mode=sample)."
    )
  if num < 1:
    raise ValueError(f"--num must be at least 1, got {num}.")
  if not (as_path(workdir) / "checkpoints").exists():
    raise FileNotFoundError(
      f"No trained text2img model in {workdir}: train it first with --mode=train (same --config "
      "and --workdir), or point --workdir at a trained run."
    )
  experiment, state, step = trainer.restore_for_inference(config, workdir, step)
  family = experiment.family
  weight = config.sampling.guidance if guidance is None else float(guidance)
  if weight and not config.text.prompt_dropout:
    raise ValueError("This model was trained without dropped prompts: guidance needs --guidance=0.")
  params = experiment.sample_params(state)
  draw = jax.jit(lambda p, text, rng: family.generate(p, text, rng, weight))
  out_dir = as_path(output) if output else experiment.workdir / "generated"
  embeddings = family.encode_prompts(prompts)
  paths = []
  for index, prompt in enumerate(prompts):
    row = TextEmbeddings(*(np.repeat(field[index : index + 1], num, axis=0) for field in embeddings))
    text = family._constant_text(row)
    rng = jax.random.fold_in(jax.random.key(seed), index)
    images = np.asarray(jax.device_get(draw(params, text, rng)))
    name = f"{slug(prompt)}_g{weight:g}_s{seed}"
    unit = np.clip(to_unit_range(images, config.data.value_range), 0.0, 1.0)
    paths.append(save_png(out_dir / f"{name}.png", make_grid(unit, GRID_COLUMNS)))
    with (out_dir / f"{name}.npz").open("wb") as file:
      np.savez(file, images=images, prompt=prompt, guidance=weight, seed=seed, step=step,
               truncated=bool(embeddings.truncated[index]))
    logging.info("%r: %d images -> %s", prompt, num, paths[-1])
  experiment.checkpointer.close()
  return paths

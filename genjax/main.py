"""Command line: `python -m genjax.main --config=configs/<name>.py[:tiny] --workdir=<dir> [--mode=...]`.

Modes: train (default; resumes the workdir's latest checkpoint), eval, sample, summary, export
(a LoRA run's merged weights as the run <workdir>/merged, genjax.trainer.export_merged), and
project (StyleGAN2: fit W+ to --config.projection.target's images, genjax.trainer.project), and
restore (denoise, inpaint or super-resolve your images: --task, --input and the flags below,
genjax.restore; a run that skipped unreadable files exits with status 1 after restoring the rest),
generate (a text2img run's images of --prompt or --prompt_file's prompts, genjax.text.generate),
interpret (the interpretability tools --tools, default all of the family's, genjax.interpret),
report (<workdir>/report.html: config, curves, samples, evaluations and every tool's figures,
genjax.interpret.report) and dream (DeepDream on the MNIST classifier, genjax.interpret.deepdream).
Override any config key with --config.<key>=<value>; an unknown key is an error naming the closest ones.
Several processes (multi-host): --coordinator_address=host:port --num_processes=N --process_id=i.
"""

from __future__ import annotations

import logging as std_logging
import re
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from genjax import compilation_cache, parallel, restore, trainer
from genjax.config import flat_keys, load_config, unknown_key_message
from genjax.datasets import resolve_manual_dir
from genjax.interpret import deepdream, report
from genjax.text import generate

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file, path[:arg].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for checkpoints, samples and metrics.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval", "sample", "export", "project", "restore", "generate", "interpret", "report", "dream", "summary"], "What to do.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step for --mode=eval/sample/export/project/restore/generate/interpret/report (default: latest).")
_TASK = flags.DEFINE_enum("task", None, list(restore.TASKS), "--mode=restore: what to do to the images.")
_INPUT = flags.DEFINE_string("input", None, "--mode=restore: an image file or a folder of them.")
_MASK = flags.DEFINE_string("mask", "", "--mode=restore --task=inpaint: a PNG of the input's size, white = the pixels to fill.")
_BOX = flags.DEFINE_string("box", "", "--mode=restore --task=inpaint: x0,y0,x1,y1, the box to fill in input pixels.")
_NOISE_SIGMA = flags.DEFINE_float("noise_sigma", 0.0, "--mode=restore: the noise std on [0, 1] pixels (needed to denoise).")
_SCALE = flags.DEFINE_integer("scale", 2, "--mode=restore --task=superres: the upscaling factor.")
_NUM = flags.DEFINE_integer("num", None, "--mode=restore: restorations per image (default 1; samples show the uncertainty); --mode=generate: images per prompt (default 16).")
_PROMPT = flags.DEFINE_string("prompt", "", "--mode=generate: the text to draw images of.")
_PROMPT_FILE = flags.DEFINE_string("prompt_file", "", "--mode=generate: a file of prompts, one per line.")
_GUIDANCE = flags.DEFINE_float("guidance", None, "--mode=generate: classifier-free guidance weight (default: sampling.guidance).")
_METHOD = flags.DEFINE_string("method", "", "--mode=restore: the solver (default: the model's first; see genjax.restore).")
_OUTPUT = flags.DEFINE_string("output", "", "--mode=restore/generate/dream: folder for the results (default: next to the inputs; <workdir>/generated; <workdir>/dream/<objective>).")
_TOOLS = flags.DEFINE_list("tools", [], "--mode=interpret/report: tools to run (default: all of the family's; see genjax.interpret).")
_SEED = flags.DEFINE_integer("seed", 0, "--mode=generate/interpret/report/dream: seed of the random draws.")
_OBJECTIVE = flags.DEFINE_string("objective", "", "--mode=dream: class:<0-9>, layer:<name> or layer:<name>:<channel> of the MNIST classifier.")
_START = flags.DEFINE_string("start", "digit", "--mode=dream: digit, digit:<test index>, noise, or the path of your image.")
_COMPILATION_CACHE = flags.DEFINE_string(
  "compilation_cache", None, "Folder of JAX's persistent compilation cache, so a restarted run does not compile "
  f"again (default ${compilation_cache.ENV_VAR}, else {compilation_cache.DEFAULT_DIR}/<host CPU tag>); 'none' turns it off.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", "", "host:port of process 0 (multi-process).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 0, "Number of processes (multi-process).")
_PROCESS_ID = flags.DEFINE_integer("process_id", -1, "This process's index (multi-process).")


def parse_flags(argv: list[str]) -> list[str]:
  """absl parsing, with bad flags (e.g. a config-key typo) reported in one clear line."""
  try:
    return flags.FLAGS(argv)
  except Exception as error:  # noqa: BLE001 - every parse failure becomes a one-line message
    message = str(error).replace("\\n", " ")
    config_path = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    overrides = re.findall(r"--config\.([\w.]+)=", " ".join(argv))
    if config_path and overrides:
      try:
        config = load_config(config_path)
      except Exception:  # noqa: BLE001 - the original message is the clearer one then
        config = None
      unknown = [key for key in overrides if config is not None and key not in flat_keys(config)]
      if unknown:
        message = unknown_key_message(config, unknown[0])
    print(f"genjax: error: {message}", file=sys.stderr)
    sys.exit(2)


class _QuietLibraries(std_logging.Filter):
  """Drops INFO chatter of orbax (several lines per checkpoint); warnings and errors still show."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    return record.levelno >= std_logging.WARNING or "orbax" not in record.pathname


def main(argv: list[str]) -> None:
  del argv
  logging.get_absl_handler().addFilter(_QuietLibraries())
  needs_config = _MODE.value != "dream"
  if (needs_config and _CONFIG.value is None) or (_WORKDIR.value is None and _MODE.value != "summary"):
    raise app.UsageError("--config and --workdir are required (--mode=summary needs only --config, "
                         "--mode=dream only --workdir).")
  compilation_cache.enable(compilation_cache.resolve_cache_dir(_COMPILATION_CACHE.value))
  parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  logging.info("JAX process %d/%d, devices: %s", jax.process_index(), jax.process_count(), jax.devices())
  config = _CONFIG.value
  try:
    if _MODE.value == "train":
      result = trainer.train_and_evaluate(config, _WORKDIR.value)
    elif _MODE.value == "eval":
      result = trainer.evaluate(config, _WORKDIR.value, _STEP.value)
    elif _MODE.value == "sample":
      result = [str(path) for path in trainer.sample(config, _WORKDIR.value, _STEP.value)]
    elif _MODE.value == "project":
      result = [str(path) for path in trainer.project(config, _WORKDIR.value, _STEP.value)]
    elif _MODE.value == "restore":
      result = _restore(config)
    elif _MODE.value == "generate":
      prompts = generate.read_prompts(_PROMPT.value, _PROMPT_FILE.value)
      result = [str(path) for path in generate.generate_files(
        config, _WORKDIR.value, prompts, num=_NUM.value or 16, guidance=_GUIDANCE.value,
        seed=_SEED.value, step=_STEP.value, output=_OUTPUT.value)]
    elif _MODE.value == "interpret":
      result = report.interpret_run(config, _WORKDIR.value, _TOOLS.value, _STEP.value, _SEED.value)
    elif _MODE.value == "report":
      result = str(report.build_report(config, _WORKDIR.value, _STEP.value, _TOOLS.value or None,
                                       _SEED.value))
    elif _MODE.value == "dream":
      result = [str(path) for path in _dream(config)]
    elif _MODE.value == "export":
      result = str(trainer.export_merged(config, _WORKDIR.value, _STEP.value))
    else:
      print(trainer.summary(config))
      return
  except (trainer.TrainingHalted, FileNotFoundError, ValueError, RuntimeError) as error:
    print(f"genjax: error: {error}", file=sys.stderr)
    sys.exit(1)
  logging.info("Done: %s", result)
  logging.info("%s.", compilation_cache.compile_stats().describe())


def _dream(config) -> list:
  """--mode=dream: writes the progression to --output (default <workdir>/dream/<objective>)."""
  if not _OBJECTIVE.value:
    raise ValueError("--mode=dream needs --objective; " + deepdream.objective_choices())
  deepdream.parse_objective(_OBJECTIVE.value)  # a bad layer or class fails before any file is read
  kind, _, index = _START.value.partition(":") if _START.value.startswith("digit:") else (_START.value, "", "0")
  if not index.isdigit():
    raise ValueError(f"--start={_START.value!r}: the test digit index must be a number, e.g. digit:17.")
  data_dir = resolve_manual_dir(config.data) if config is not None else ""
  out_dir = _OUTPUT.value or f"{_WORKDIR.value}/dream/{_OBJECTIVE.value.replace(':', '_')}"
  return deepdream.dream_to_dir(out_dir, _OBJECTIVE.value, kind, seed=_SEED.value, data_dir=data_dir,
                                digit_index=int(index))


def _restore(config) -> str:
  """--mode=restore; exits with status 1, after restoring the rest, when files were skipped."""
  if not _TASK.value or not _INPUT.value:
    raise ValueError("--mode=restore needs --task=denoise|inpaint|superres and --input=<image or folder>.")
  request = restore.Request(task=_TASK.value, input=_INPUT.value, mask=_MASK.value, box=_BOX.value,
                            noise_sigma=_NOISE_SIGMA.value, scale=_SCALE.value, num=_NUM.value or 1,
                            method=_METHOD.value, output=_OUTPUT.value)
  outcome = restore.restore_files(config, _WORKDIR.value, request, _STEP.value)
  done = f"restored {len(outcome['restored'])} of {len(outcome['restored']) + len(outcome['errors'])} images"
  if outcome["errors"]:
    lines = "\n".join(f"  {message}" for message in outcome["errors"].values())
    print(f"genjax: {done}; skipped:\n{lines}", file=sys.stderr)
    sys.exit(1)
  return done


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)

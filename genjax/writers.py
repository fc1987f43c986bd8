"""Metric writers: clu's default writer (console + TensorBoard) plus a JSONL file in the workdir,
and Weights & Biases when config.logging.wandb is set (an optional dependency, imported lazily)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import Any

import jax
import ml_collections
import numpy as np
from clu import metric_writers
from etils import epath

from genjax.config import flat_keys
from genjax.paths import as_path

WANDB_RUN_ID_FILE = "wandb_run_id"  # in the workdir: a resumed run continues the same W&B run


class JsonlWriter(metric_writers.MetricWriter):
  """Appends one JSON object per write to <workdir>/metrics.jsonl: {"step": s, "<name>": value, ...}."""

  def __init__(self, path: epath.PathLike):
    self.path = as_path(path)
    self.path.parent.mkdir(parents=True, exist_ok=True)

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    record = {"step": int(step), **{k: float(np.asarray(v)) for k, v in scalars.items()}}
    with self.path.open("a") as file:
      file.write(json.dumps(record) + "\n")

  def write_summaries(self, step, values, metadata=None):
    pass

  def write_images(self, step, images):
    pass

  def write_videos(self, step, videos):
    pass

  def write_audios(self, step, audios, *, sample_rate):
    pass

  def write_texts(self, step, texts):
    pass

  def write_histograms(self, step, arrays, num_buckets=None):
    pass

  def write_hparams(self, hparams):
    pass

  def flush(self):
    pass

  def close(self):
    pass


def import_wandb():
  """The wandb module; ImportError saying how to install it when it is missing."""
  try:
    import wandb
  except ImportError as error:
    raise ImportError(
      "config.logging.wandb=True needs Weights & Biases, which is not installed: run "
      "pip install 'genjax-generative[wandb]' (in a checkout: pip install -e '.[wandb]'), or set "
      "--config.logging.wandb=False."
    ) from error
  return wandb


def wandb_run_id(workdir: epath.PathLike) -> str:
  """The W&B run id of a workdir: read from <workdir>/wandb_run_id, or drawn (8 hex digits) and
  written there on first use, so every later invocation (resumed training, eval, sample) logs to
  the same run."""
  path = as_path(workdir) / WANDB_RUN_ID_FILE
  if path.exists():
    return path.read_text().strip()
  path.parent.mkdir(parents=True, exist_ok=True)
  run_id = secrets.token_hex(4)
  path.write_text(run_id + "\n")
  return run_id


class WandbWriter(metric_writers.MetricWriter):
  """Logs to a Weights & Biases run: scalars, images and texts with wandb.log(..., step=step),
  the whole config as the run's config, hparams added to it. Other summaries are not sent.

  The run is config.logging.wandb_project / wandb_entity in wandb_mode, its id wandb_run_id(workdir)
  (resume="allow"), its name the workdir's name, its files under <workdir>/wandb (a local workdir;
  wandb's default folder for a gs:// one). Creating a WandbWriter finishes this process's earlier
  W&B run. W&B keeps one row per step and drops steps below the run's latest, so a run resumed from
  an earlier checkpoint logs again only past that step.
  """

  def __init__(self, workdir: epath.PathLike, config: ml_collections.ConfigDict):
    self._wandb = import_wandb()
    workdir = as_path(workdir)
    logging = config.logging
    self._config_keys = set(flat_keys(config))
    self.run = self._wandb.init(
      project=logging.wandb_project,
      entity=logging.wandb_entity or None,
      mode=logging.wandb_mode or None,
      dir=None if "://" in str(workdir) else str(workdir),
      id=wandb_run_id(workdir),
      name=workdir.name,
      resume="allow",
      reinit="finish_previous",  # a later writer in this process (another workdir) starts its run
      config=config.to_dict(),
    )

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    self.run.log({k: float(np.asarray(v)) for k, v in scalars.items()}, step=int(step))

  def write_images(self, step: int, images: Mapping[str, Any]) -> None:
    """images {name: [N, H, W, C] in [0, 1] (floats) or uint8}: a list of N wandb.Image each."""
    logged = {}
    for name, batch in images.items():
      batch = np.asarray(batch)
      if batch.dtype != np.uint8:
        batch = (np.clip(batch, 0.0, 1.0) * 255.0).round().astype(np.uint8)
      logged[name] = [
        self._wandb.Image(image[..., 0] if image.shape[-1] == 1 else image) for image in batch
      ]
    self.run.log(logged, step=int(step))

  def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
    self.run.log(dict(texts), step=int(step))

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    """Adds the hparams that are not config keys ("optim.lr"): those are already the run's config."""
    extra = {k: v for k, v in hparams.items() if k not in self._config_keys}
    if extra:
      self.run.config.update(extra, allow_val_change=True)

  def write_summaries(self, step, values, metadata=None):
    pass

  def write_videos(self, step, videos):
    pass

  def write_audios(self, step, audios, *, sample_rate):
    pass

  def write_histograms(self, step, arrays, num_buckets=None):
    pass

  def flush(self):
    pass

  def close(self):
    self.run.finish()


def make_writer(
  workdir: epath.PathLike, config: ml_collections.ConfigDict | None = None
) -> metric_writers.MetricWriter:
  """Process 0 writes TensorBoard events and metrics.jsonl, and to Weights & Biases when
  config.logging.wandb is set; every process logs to the console."""
  if jax.process_index() > 0:
    return metric_writers.create_default_writer(just_logging=True)
  workdir = as_path(workdir)  # TensorBoard's writer takes local and gs:// folders as strings
  default = metric_writers.create_default_writer(str(workdir), asynchronous=False)
  writers = [default, JsonlWriter(workdir / "metrics.jsonl")]
  if config is not None and config.logging.wandb:
    writers.append(WandbWriter(workdir, config))
  return metric_writers.MultiWriter(writers)


def read_metrics(workdir: epath.PathLike) -> list[dict]:
  """The records of <workdir>/metrics.jsonl, in order."""
  path = as_path(workdir) / "metrics.jsonl"
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

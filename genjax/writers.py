"""Metric writers: clu's default writer (console + TensorBoard) plus a JSONL file in the workdir."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from clu import metric_writers
from etils import epath

from genjax.paths import as_path


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


def make_writer(workdir: epath.PathLike) -> metric_writers.MetricWriter:
  """Process 0 writes TensorBoard events and metrics.jsonl; every process logs to the console."""
  if jax.process_index() > 0:
    return metric_writers.create_default_writer(just_logging=True)
  workdir = as_path(workdir)  # TensorBoard's writer takes local and gs:// folders as strings
  default = metric_writers.create_default_writer(str(workdir), asynchronous=False)
  return metric_writers.MultiWriter([default, JsonlWriter(workdir / "metrics.jsonl")])


def read_metrics(workdir: epath.PathLike) -> list[dict]:
  """The records of <workdir>/metrics.jsonl, in order."""
  path = as_path(workdir) / "metrics.jsonl"
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

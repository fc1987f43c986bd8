"""Plots of logged metrics (matplotlib), e.g. the discriminator's overfitting signal of several runs.

`metric_curves(runs, metrics)` reads each run's <workdir>/metrics.jsonl (genjax.writers) and draws
one panel per metric with one line per run against the training step; the figure is written as a
PNG. `python scripts/plot_metrics.py` is its command line.
"""

from __future__ import annotations

from etils import epath
from matplotlib.figure import Figure  # the object API: no pyplot state, no display backend

from genjax.paths import as_path
from genjax.writers import read_metrics


def metric_series(workdir: epath.PathLike, metric: str) -> tuple[list[int], list[float]]:
  """(steps, values) of `metric` in the run's metrics.jsonl, in step order (a resumed run's
  repeated steps keep their last value)."""
  values = {record["step"]: float(record[metric]) for record in read_metrics(workdir) if metric in record}
  steps = sorted(values)
  return steps, [values[step] for step in steps]


def metric_curves(
  runs: dict[str, epath.PathLike],
  metrics: list[str],
  out_path: epath.PathLike,
  references: dict[str, float] | None = None,
) -> epath.Path:
  """One panel per metric, one line per run (label -> workdir), against the step; `references`
  draws a dashed horizontal line per metric (e.g. ADA's target 0.6 for train/d_real_sign). Raises
  ValueError when a metric is in none of the runs (listing the metrics they have)."""
  figure = Figure(figsize=(5 * len(metrics), 3.5))
  axes = figure.subplots(1, len(metrics), squeeze=False)
  for axis, metric in zip(axes[0], metrics, strict=True):
    drawn = 0
    for label, workdir in runs.items():
      steps, values = metric_series(workdir, metric)
      if steps:
        axis.plot(steps, values, label=label)
        drawn += 1
    if not drawn:
      names = sorted({key for w in runs.values() for r in read_metrics(w) for key in r} - {"step"})
      raise ValueError(f"No run logged {metric!r}. Logged metrics: {', '.join(names) or 'none'}.")
    if references and metric in references:
      axis.axhline(references[metric], color="grey", linestyle="--", linewidth=1)
    axis.set_xlabel("step")
    axis.set_title(metric)
    axis.legend(fontsize="small")
  figure.tight_layout()
  path = as_path(out_path)
  path.parent.mkdir(parents=True, exist_ok=True)
  figure.savefig(str(path), dpi=100)
  return path

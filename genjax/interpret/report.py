"""The run report: one self-contained `report.html` per workdir (`--mode=report`).

The page holds, in order: how far the run got (latest checkpoint step of
training.num_train_steps), the config, the training curves (matplotlib, from metrics.jsonl), the
latest sample grids (samples/<name>_<step>.png), every evaluation (eval_<step>.json: metrics and
the full protocol), and the interpretability tools of the run's family (genjax.interpret.TOOLS,
memorisation among them) with their figures, numbers and running time. Every image is inline
(base64 PNG), so the page needs no network and no other file. The figures are also written as
PNG and PDF under <workdir>/report/ for papers.

A tool that cannot run on this run (e.g. MNIST-only tools on CIFAR-10 images) is listed with its
reason; the rest of the report is still written.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import time
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
from etils import epath
from matplotlib.figure import Figure

from genjax import interpret, trainer
from genjax.paths import as_path
from genjax.writers import read_metrics

_GRID = re.compile(r"^(?P<name>[a-z_]+?)_(?P<step>\d{7})(?P<tag>.*)\.png$")
_EVAL = re.compile(r"^eval_(?P<step>\d+)\.json$")
_MAX_CURVES = 16

_STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
h1, h2, h3 { font-weight: 600; } img { max-width: 100%; image-rendering: pixelated; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: left; font-size: 90%; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 80%; }
.warning { background: #fff3cd; padding: 0.6em; border: 1px solid #e0c97a; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
"""


def _png_data(figure: Figure) -> str:
  encoded = io.BytesIO()
  figure.savefig(encoded, format="png", dpi=110, bbox_inches="tight")
  return base64.b64encode(encoded.getvalue()).decode("ascii")


def _img(data: str, caption: str) -> str:
  return (
    f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
    f"<figcaption>{html.escape(caption)}</figcaption></figure>"
  )


def _table(rows: dict[str, Any]) -> str:
  cells = "".join(
    f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_format(v))}</td></tr>"
    for k, v in rows.items()
  )
  return f"<table>{cells}</table>"


def _format(value: Any) -> str:
  if isinstance(value, float):
    return f"{value:.6g}"
  if isinstance(value, dict | list | tuple):
    return json.dumps(value, default=str)
  return str(value)


def training_curves(records: list[dict]) -> Figure | None:
  """One panel per logged metric (train/*, eval/* and the rest, at most _MAX_CURVES) against the
  step; a resumed run's repeated steps keep their last value. None when nothing was logged."""
  series: dict[str, dict[int, float]] = {}
  for record in records:
    for key, value in record.items():
      if key != "step" and isinstance(value, int | float):
        series.setdefault(key, {})[int(record["step"])] = float(value)
  if not series:
    return None
  names = sorted(series, key=lambda k: (not k.startswith("train/"), not k.startswith("eval/"), k))
  names = names[:_MAX_CURVES]
  columns = min(4, len(names))
  rows = -(-len(names) // columns)
  figure = Figure(figsize=(3.6 * columns, 2.6 * rows))
  axes = figure.subplots(rows, columns, squeeze=False).ravel()
  for axis, name in zip(axes, names, strict=False):
    steps = sorted(series[name])
    axis.plot(steps, [series[name][s] for s in steps], marker="." if len(steps) < 30 else None)
    axis.set_title(name, fontsize=9)
    axis.set_xlabel("step", fontsize=8)
    axis.tick_params(labelsize=7)
  for axis in axes[len(names) :]:
    axis.set_visible(False)
  figure.tight_layout()
  return figure


def latest_grids(workdir: epath.Path) -> dict[str, epath.Path]:
  """The newest samples/<name>_<step>[tag].png per image set name (samples, reconstructions...)."""
  newest: dict[str, tuple[int, epath.Path]] = {}
  folder = workdir / "samples"
  for path in sorted(folder.glob("*.png")) if folder.exists() else []:
    match = _GRID.match(path.name)
    if match:
      step = int(match["step"])
      if match["name"] not in newest or step >= newest[match["name"]][0]:
        newest[match["name"]] = (step, path)
  return {name: path for name, (_, path) in sorted(newest.items())}


def evaluations(workdir: epath.Path) -> list[dict]:
  """Every eval_<step>.json of the workdir, by step."""
  found = []
  for path in workdir.glob("eval_*.json"):
    match = _EVAL.match(path.name)
    if match:
      found.append(json.loads(path.read_text()))
  return sorted(found, key=lambda record: record["step"])


def _progress(config: ml_collections.ConfigDict, step: int, records: list[dict]) -> str:
  total = config.training.num_train_steps
  logged = max((int(r["step"]) for r in records), default=0)
  if step >= total:
    return f"<p>Finished: checkpoint step {step:,} of training.num_train_steps = {total:,}.</p>"
  minutes = config.training.get("max_train_minutes", 0.0)
  if minutes:
    return (
      f"<p>Time-limited run: each invocation trains for training.max_train_minutes = {minutes:g}; "
      f"the latest checkpoint is step {step:,} (the last logged step is {logged:,}; "
      f"training.num_train_steps = {total:,} is an upper bound). The same command with "
      "--mode=train trains on from there.</p>"
    )
  return (
    f'<p class="warning">Unfinished run: the latest checkpoint is step {step:,} of '
    f"{total:,} ({100 * step / total:.1f}%; the last logged step is {logged:,}). Resume it with "
    "the same command and --mode=train.</p>"
  )


def build_report(
  config: ml_collections.ConfigDict,
  workdir: epath.PathLike,
  step: int | None = None,
  tools: Sequence[str] | None = None,
  seed: int = 0,
) -> epath.Path:
  """Writes <workdir>/report.html, <workdir>/report/<figure>.{png,pdf} and the tools' numbers
  (<workdir>/report/summaries.json: {"checkpoint_step", "tools": {tool: summary with seconds}});
  returns the page's path.

  tools: the interpretability tools to run (default: every tool of the run's family); each gets
  the key fold_in(key(seed), index). Raises FileNotFoundError for a workdir without a checkpoint
  and ValueError for a tool that does not apply to the family.
  """
  experiment, state, step = trainer.restore_for_inference(config, workdir, step)
  workdir = experiment.workdir
  try:
    family = config.family
    names = list(tools) if tools is not None else interpret.tools_for(family)
    records = read_metrics(workdir)
    figure_dir = workdir / "report"
    sections = [
      f"<h1>genjax run report: {html.escape(str(workdir))}</h1>",
      (f"<p>Family <b>{html.escape(family)}</b>, dataset <b>{html.escape(config.data.name)}</b>, "
       f"written {time.strftime('%Y-%m-%d %H:%M:%S %Z')}.</p>"),
      _progress(config, step, records),
      "<h2>Config</h2>",
      f"<pre>{html.escape(str(config))}</pre>",
      "<h2>Training curves</h2>",
    ]
    curves = training_curves(records)
    if curves is None:
      sections.append("<p>No metrics.jsonl records yet.</p>")
    else:
      interpret.save_figure(curves, figure_dir, "training_curves")
      sections.append(_img(_png_data(curves), "metrics.jsonl against the training step"))

    sections.append("<h2>Latest sample grids</h2>")
    grids = latest_grids(workdir)
    for name, path in grids.items():
      data = base64.b64encode(path.read_bytes()).decode("ascii")
      sections.append(_img(data, f"{name} ({path.name})"))
    if not grids:
      sections.append("<p>No sample grids yet (they are written at the end of training).</p>")

    sections.append("<h2>Evaluations</h2>")
    evaluated = evaluations(workdir)
    for record in evaluated:
      sections += [
        f"<h3>Step {record['step']:,}</h3>",
        _table(record["metrics"]),
        ("<details><summary>protocol</summary>"
         f"<pre>{html.escape(json.dumps(record.get('protocol', {}), indent=1, default=str))}</pre>"
         "</details>"),
      ]
    if not evaluated:
      sections.append("<p>No evaluation yet (--mode=eval writes one).</p>")

    sections.append(f"<h2>Interpretability ({html.escape(family)})</h2>")
    key = jax.random.key(seed)
    summaries = {}
    for index, name in enumerate(names):
      sections.append(f"<h3>{html.escape(name)}</h3>")
      description = interpret.TOOLS.get(name).description if name in interpret.TOOLS else ""
      sections.append(f"<p>{html.escape(description)}</p>")
      try:
        result = interpret.run_tool(name, experiment, state, jax.random.fold_in(key, index))
      except interpret.NotApplicable as reason:
        sections.append(f'<p class="warning">Not run: {html.escape(str(reason))}</p>')
        summaries[name] = {"not_run": str(reason)}
        continue
      for figure_name, figure in result.figures.items():
        interpret.save_figure(figure, figure_dir, f"{name}_{figure_name}")
        sections.append(_img(_png_data(figure), f"{name}: {figure_name}"))
      summaries[name] = {**result.summary, "seconds": round(result.seconds, 2)}
      sections.append(_table(summaries[name]))
    figure_dir.mkdir(parents=True, exist_ok=True)
    (figure_dir / "summaries.json").write_text(
      json.dumps({"checkpoint_step": step, "tools": summaries}, indent=1, default=str)
    )

    page = (
      '<!DOCTYPE html><html><head><meta charset="utf-8">'
      f"<title>genjax report: {html.escape(workdir.name)}</title><style>{_STYLE}</style></head>"
      f"<body>{''.join(sections)}</body></html>"
    )
    path = workdir / "report.html"
    partial = workdir / "report.html.partial"
    partial.write_text(page)
    partial.replace(path)  # a reader never sees half a page; an older report is replaced whole
    return path
  finally:
    experiment.checkpointer.close()


def interpret_run(
  config: ml_collections.ConfigDict,
  workdir: epath.PathLike,
  tools: Sequence[str],
  step: int | None = None,
  seed: int = 0,
) -> dict[str, Any]:
  """`--mode=interpret`: runs the named tools (all of the family's when empty) on a run and writes
  their figures to <workdir>/interpret/<tool>_<figure>.{png,pdf} and summaries to
  <workdir>/interpret/<tool>.json; returns {tool: summary with seconds}."""
  experiment, state, step = trainer.restore_for_inference(config, workdir, step)
  try:
    names = list(tools) or interpret.tools_for(config.family)
    out_dir = as_path(workdir) / "interpret"
    key = jax.random.key(seed)
    summaries = {}
    for index, name in enumerate(names):
      result = interpret.run_tool(name, experiment, state, jax.random.fold_in(key, index))
      for figure_name, figure in result.figures.items():
        interpret.save_figure(figure, out_dir, f"{name}_{figure_name}")
      summary = {**result.summary, "seconds": result.seconds, "checkpoint_step": step}
      (out_dir / f"{name}.json").write_text(json.dumps(summary, indent=1, default=str))
      summaries[name] = summary
    return summaries
  finally:
    experiment.checkpointer.close()

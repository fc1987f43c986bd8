"""Seeing inside the models: one short module per interpretability tool, each a registry entry.

A tool is pure math (functions of arrays and callables, testable on toy models) plus a `Tool`
entry in `TOOLS` that runs it on a trained run and returns figures and numbers:

  run(experiment, state, rng) -> ToolResult(figures={name: matplotlib Figure}, summary={...})

`experiment` is a genjax.trainer.Experiment (config, family, dataset info) and `state` its restored
TrainState. `Tool.families` lists the config.family values the tool applies to; `run_tool` refuses
the others with a message naming the tools that do apply. The run report (genjax.interpret.report,
`--mode=report`) runs every tool of the run's family and embeds their figures and summaries.

  latents       VAE traversals ranked by KL; GANSpace directions; spherical/linear interpolation
  attribution   plain and integrated gradients of the MNIST classifier and of a GAN's critic
  trajectory    a diffusion sampler's x_t and x_0_hat over time; when the class is decided;
                interpolation through DDIM-inverted noise
  memorisation  nearest training images of samples; the fraction closer than test images are
  deepdream     gradient ascent on the MNIST classifier's layers or classes (`--mode=dream`)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax
from etils import epath
from matplotlib.figure import Figure

from genjax.paths import as_path
from genjax.registry import Registry


@dataclasses.dataclass
class ToolResult:
  """What a tool shows: figures by name, and JSON-able numbers (the README's and report's)."""

  figures: dict[str, Figure]
  summary: dict[str, Any]
  seconds: float = 0.0


@dataclasses.dataclass(frozen=True)
class Tool:
  """An interpretability tool: the families it applies to, what it shows, and how to run it."""

  families: tuple[str, ...]
  description: str
  run: Callable[[Any, Any, jax.Array], ToolResult]


TOOLS: Registry[Tool] = Registry("interpretability tool")


class NotApplicable(ValueError):
  """A tool cannot run on this run (its family, or its data: e.g. MNIST-only tools on other
  images). The message says why and what would apply; the report lists it and goes on."""


def _import_all() -> None:
  """Imports the tool modules so their @TOOLS.register decorators run."""
  from genjax.interpret import (  # noqa: F401
    attribution,
    deepdream,
    latents,
    memorisation,
    trajectory,
  )


def tools_for(family: str) -> list[str]:
  """The names of the tools that apply to config.family == family, in registry order."""
  _import_all()
  return [name for name in TOOLS.names() if family in TOOLS.get(name).families]


def run_tool(name: str, experiment, state, rng: jax.Array) -> ToolResult:
  """Runs tool `name` on a restored run; NotApplicable when it does not apply to the run's
  family (or, raised by the tool, to its data)."""
  _import_all()
  tool = TOOLS.get(name)
  family = experiment.config.family
  if family not in tool.families:
    raise NotApplicable(
      f"The {name!r} tool does not apply to the {family!r} family ({tool.description}; it needs "
      f"one of: {', '.join(tool.families)}). Tools for {family!r}: "
      f"{', '.join(tools_for(family)) or 'none'}."
    )
  start = time.perf_counter()
  result = tool.run(experiment, state, rng)
  result.seconds = time.perf_counter() - start
  return result


def save_figure(figure: Figure, out_dir: epath.PathLike, name: str) -> list[epath.Path]:
  """Writes <out_dir>/<name>.png (150 dpi) and <name>.pdf (vector, for papers); returns both."""
  out_dir = as_path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  paths = []
  for suffix, options in ((".png", {"dpi": 150}), (".pdf", {})):
    path = out_dir / f"{name}{suffix}"
    with path.open("wb") as handle:
      figure.savefig(handle, format=suffix[1:], bbox_inches="tight", **options)
    paths.append(path)
  return paths

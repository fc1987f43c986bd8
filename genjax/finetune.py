"""Fine-tuning: a run initialised from another run's checkpoint, with parameters frozen by path.

  config.init_from        a workdir whose checkpoint initialises the parameters ("": random init)
  config.init_step        its step (0: the latest)
  config.init_from_ema    take its EMA weights (True) or its raw weights
  config.init_rules       named rules that allow a shape difference (INIT_RULES)
  config.init_include     a regex: only the parameter paths it selects are loaded ("": all), e.g.
                          "^generator/" for a GAN whose discriminator starts fresh
Freezing (optim.freeze) and per-group learning rates (optim.lr_multipliers) live in genjax.optim.

Initialising: every parameter whose path and shape match a parameter of the source is loaded (cast
to this run's dtype); parameters the source lacks keep their fresh initialisation (a new head, a
new conditioning branch); source parameters this run lacks are skipped. The non-trainable state
that belongs to one network (the family's `owned_state`: spectral-norm vectors, StyleGAN2's w_avg
and constant noise maps) is loaded with that network's parameters, under the path
<network>/<state key>/... (so that "^generator/" takes G's buffers too); the rest of model_state
(ADA's p, running means of a loss) starts fresh, as in the official StyleGAN2-ADA resume. A parameter whose shape
differs is an error, unless a rule of config.init_rules adapts it. The optimizer state, the
schedule, the EMA (set to the loaded parameters), the data position and the PRNG key start fresh:
the new run is an ordinary run from step 0, and resumes itself like any other once it has a
checkpoint (init_from is then ignored). A LoRA source (genjax.lora) gives its merged weights, so
a run without LoRA initialised from it is its export. What was loaded, adapted, new and skipped is logged and
written to <workdir>/init_from.json.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from flax import traverse_util

from genjax import lora
from genjax.checkpoint import Checkpointer
from genjax.paths import as_path
from genjax.registry import Registry


class InitFromError(ValueError):
  """config.init_from cannot initialise this run; the message says why and what to do."""


# A rule adapts a source array to a target shape: (path, source [...], fresh target [...], context)
# -> the adapted array, or None when the rule does not apply to this parameter.
Rule = Callable[[str, np.ndarray, np.ndarray, dict[str, Any]], np.ndarray | None]
INIT_RULES: Registry[Rule] = Registry("init rule")


@INIT_RULES.register("extend_class_embedding")
def extend_class_embedding(path, source, fresh, context):
  """A class-embedding table (an nn.Embed "embedding" [classes, D]) with more classes than the
  source: the source rows are loaded, the new classes' rows keep their fresh initialisation. With
  context["null_label_row"] (diffusion: the last row is classifier-free guidance's "no label"),
  the source's last row moves to the target's last row."""
  if not path.endswith("/embedding") or source.ndim != 2 or fresh.ndim != 2:
    return None
  if source.shape[1] != fresh.shape[1] or source.shape[0] >= fresh.shape[0]:
    return None
  adapted = np.array(fresh, dtype=fresh.dtype)
  if context.get("null_label_row"):
    adapted[: source.shape[0] - 1] = source[:-1]
    adapted[-1] = source[-1]
  else:
    adapted[: source.shape[0]] = source
  return adapted


@dataclasses.dataclass
class InitTable:
  """What initialising from `source` did to each parameter path."""

  source: str
  step: int
  weights: str  # "EMA" or "raw"
  loaded: list[str] = dataclasses.field(default_factory=list)
  adapted: list[str] = dataclasses.field(default_factory=list)  # "path: rule, old -> new shape"
  new: list[str] = dataclasses.field(default_factory=list)
  skipped: list[str] = dataclasses.field(default_factory=list)
  not_selected: list[str] = dataclasses.field(default_factory=list)  # outside config.init_include

  def render(self) -> str:
    lines = [f"Initialised from {self.source} step {self.step} ({self.weights} weights):"]
    for title, entries in (("loaded", self.loaded), ("adapted", self.adapted),
                           ("new (fresh init)", self.new), ("skipped (not in this model)", self.skipped),
                           ("not selected by config.init_include (fresh init)", self.not_selected)):
      lines.append(f"  {title}: {len(entries)}")
      lines += [f"    {entry}" for entry in entries]
    return "\n".join(lines)


def _flat(params) -> dict[str, Any]:
  return traverse_util.flatten_dict(params, sep="/")


def read_source(init_from: str, step: int, use_ema: bool, family: str) -> tuple[dict, dict, int]:
  """The source run's parameters and model_state (host numpy, nested dicts) and the step they
  come from."""
  workdir = as_path(init_from)
  if not workdir.exists():
    raise InitFromError(
      f"config.init_from={init_from!r} does not exist. Point it at the --workdir of a finished "
      "or running pre-training run."
    )
  checkpointer = Checkpointer(workdir, read_only=True)
  try:
    steps = sorted(checkpointer.all_steps())
    if not steps:
      raise InitFromError(
        f"config.init_from={init_from!r} has no checkpoint in {checkpointer.directory}. Train it "
        "first (python -m genjax.main --config=<its config> --workdir=<it>)."
      )
    chosen = step or steps[-1]
    if chosen not in steps:
      raise InitFromError(
        f"config.init_step={step} is not a checkpoint of {init_from!r}; its steps are {steps}."
      )
    saved_config = checkpointer.restored_config(chosen)
    saved_family = saved_config.get("family")
    if saved_family != family:
      raise InitFromError(
        f"config.init_from={init_from!r} is a {saved_family!r} run, but this config is a {family!r} "
        "run: parameters only carry over within a family."
      )
    metadata = checkpointer.manager.item_metadata(chosen)["state"].tree
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    is_array = lambda leaf: hasattr(leaf, "shape") and hasattr(leaf, "dtype")
    target = jax.tree.map(
      lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=device), metadata,
      is_leaf=is_array,
    )
    restored = checkpointer.manager.restore(
      chosen, args=ocp.args.Composite(state=ocp.args.StandardRestore(target))
    )["state"]
  finally:
    checkpointer.close()
  params = jax.device_get(restored["ema_params" if use_ema else "params"])
  if lora.has_adapters(params):  # a LoRA run: its merged weights are its network's weights
    params = lora.merge(params, lora.scale(ml_collections.ConfigDict(saved_config["model"])))
  return params, jax.device_get(restored.get("model_state") or {}), chosen


def with_owned_state(params: dict, model_state: dict, owners: dict[str, str]) -> dict:
  """params with each model_state entry that `owners` ({state key: network}) names nested under
  its network, as params[network][state key]; entries model_state lacks are left out."""
  merged = dict(params)
  for key, network in owners.items():
    if key in model_state:
      if key in merged[network]:
        raise ValueError(f"model_state key {key!r} is also a parameter name of {network!r}.")
      merged[network] = {**merged[network], key: model_state[key]}
  return merged


def split_owned_state(merged: dict, owners: dict[str, str]) -> tuple[dict, dict]:
  """The inverse of with_owned_state: (params, {state key: its tree})."""
  params, owned = dict(merged), {}
  for key, network in owners.items():
    if key in params.get(network, {}):
      network_tree = dict(params[network])
      owned[key] = network_tree.pop(key)
      params[network] = network_tree
  return params, owned


def initialise_params(
  params, source, rules: tuple[str, ...], context: dict[str, Any], table: InitTable,
  include: str = "",
) -> Any:
  """`params` (this run's fresh parameters) with every matching source parameter loaded; fills
  `table`. Only paths that the regex `include` selects (re.search; "" selects all) are considered,
  e.g. "^generator/" to take only a GAN's generator. Raises InitFromError for a shape difference no
  rule in `rules` adapts, and for an `include` that selects nothing."""
  fresh, old = _flat(jax.device_get(params)), _flat(source)
  rule_fns = [(name, INIT_RULES.get(name)) for name in rules]
  if include and not any(re.search(include, path) for path in fresh):
    raise InitFromError(
      f"config.init_include={include!r} selects no parameter. Parameter paths: {', '.join(fresh)}."
    )
  result = {}
  for path, value in fresh.items():
    value = np.asarray(value)
    if include and not re.search(include, path):
      table.not_selected.append(f"{path} {list(value.shape)}")
      result[path] = value
      continue
    if path not in old:
      table.new.append(f"{path} {list(value.shape)}")
      result[path] = value
      continue
    source_value = np.asarray(old[path])
    if source_value.shape == value.shape:
      table.loaded.append(f"{path} {list(value.shape)}")
      result[path] = source_value.astype(value.dtype)
      continue
    for name, rule in rule_fns:
      adapted = rule(path, source_value, value, context)
      if adapted is not None:
        table.adapted.append(f"{path}: {name}, {list(source_value.shape)} -> {list(value.shape)}")
        result[path] = adapted.astype(value.dtype)
        break
    else:
      raise InitFromError(
        f"`{path}` is {list(source_value.shape)} in config.init_from's checkpoint but "
        f"{list(value.shape)} in this config. Change the config to match, or allow it with a rule "
        f"in config.init_rules (valid rules: {', '.join(INIT_RULES.names())})."
      )
  table.skipped = [f"{path} {list(np.shape(old[path]))}" for path in old
                   if path not in fresh and (not include or re.search(include, path))]
  return traverse_util.unflatten_dict(result, sep="/")


def write_table(workdir: epath.Path, table: InitTable) -> None:
  """Logs the table and writes <workdir>/init_from.json (process 0)."""
  logging.info("%s", table.render())
  if jax.process_index() == 0:
    path = workdir / "init_from.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dataclasses.asdict(table), indent=1))

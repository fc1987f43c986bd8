"""Low-rank adaptation (LoRA, Hu et al. 2021) of a network's dense layers, on its parameter tree.

A LoRA run keeps the base network's parameter tree and adds, next to each adapted kernel
W [in, out] (a dense layer's "kernel"; the UNet's attention q, k, v and proj_out are dense layers
too), two leaves

  lora_a [in, r] ~ N(0, 1 / in),   lora_b [r, out] = 0,

so the adapted network starts as the base one. The network always runs on `merge(params, scale)`:

  W' = W + scale * lora_a @ lora_b,   scale = model.lora_alpha / model.lora_rank,

with the adapters dropped, which is exactly the base network's tree. Only the adapters train: the
family freezes every other parameter (genjax.optim's zero update, so the base stays bitwise
unchanged), except those model.lora_also_train selects (e.g. "Embed_" for a new class embedding).
Because the merged tree is an ordinary one, the merged weights are the export: a run
with model.lora_rank = 0 initialised from a LoRA run (config.init_from) loads them (genjax.finetune
merges the source's adapters), and samples exactly as the LoRA run does.

Which kernels: every 2-D "kernel" leaf whose "/"-joined path matches the regex model.lora_targets
(re.search; "" matches all of them). Convolution kernels (4-D) are never adapted.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import traverse_util

LORA_A, LORA_B = "lora_a", "lora_b"
# optim.freeze pattern of a LoRA run: every parameter that is not an adapter.
FREEZE_ALL_BUT_ADAPTERS = rf"^(?!.*/({LORA_A}|{LORA_B})$)"


def enabled(model: ml_collections.ConfigDict) -> bool:
  return model.get("lora_rank", 0) > 0


def scale(model: ml_collections.ConfigDict) -> float:
  """alpha / r, the factor of lora_a @ lora_b in the merged kernel."""
  return model.lora_alpha / model.lora_rank


def _flat(params) -> dict[str, Any]:
  return traverse_util.flatten_dict(params, sep="/")


def target_paths(params, targets: str) -> list[str]:
  """Paths of the 2-D kernels of `params` that `targets` (a regex, re.search) selects; ValueError,
  listing the dense kernels, when it selects none."""
  kernels = [
    path for path, value in _flat(params).items()
    if path.rsplit("/", 1)[-1] == "kernel" and np.ndim(value) == 2
  ]
  chosen = [path for path in kernels if re.search(targets, path)]
  if not chosen:
    raise ValueError(
      f"model.lora_targets={targets!r} matches no dense kernel. Dense kernels: "
      f"{', '.join(kernels) or 'none (this network has no dense layers)'}."
    )
  return chosen


def add_adapters(params, rng: jax.Array, rank: int, targets: str):
  """`params` with lora_a [in, r] ~ N(0, 1/in) and lora_b [r, out] = 0 beside each target kernel
  (see the module docstring). Pure: traceable under jit."""
  flat = dict(_flat(params))
  paths = target_paths(params, targets)
  for path, key in zip(paths, jax.random.split(rng, len(paths)), strict=True):
    kernel = flat[path]
    fan_in, fan_out = kernel.shape
    layer = path.rsplit("/", 1)[0]
    flat[f"{layer}/{LORA_A}"] = jax.random.normal(key, (fan_in, rank), kernel.dtype) / np.sqrt(fan_in)
    flat[f"{layer}/{LORA_B}"] = jnp.zeros((rank, fan_out), kernel.dtype)
  return traverse_util.unflatten_dict(flat, sep="/")


def has_adapters(params) -> bool:
  return any(path.endswith(f"/{LORA_A}") for path in _flat(params))


def merge(params, factor: float):
  """The base network's tree: each adapted kernel W becomes W + factor * lora_a @ lora_b and the
  adapters are dropped; a tree without adapters is returned as it is. Works on jax arrays (traced,
  differentiable in the adapters) and on host numpy arrays."""
  flat = _flat(params)
  if not any(path.endswith(f"/{LORA_A}") for path in flat):
    return params
  merged = {}
  for path, value in flat.items():
    layer, name = path.rsplit("/", 1)
    if name in (LORA_A, LORA_B):
      continue
    if name == "kernel" and f"{layer}/{LORA_A}" in flat:
      value = value + factor * (flat[f"{layer}/{LORA_A}"] @ flat[f"{layer}/{LORA_B}"])
    merged[path] = value
  return traverse_util.unflatten_dict(merged, sep="/")


def trainable_fraction(params) -> tuple[int, int]:
  """(adapter parameters, all parameters of the LoRA tree) — the fraction a LoRA run trains."""
  flat = _flat(params)
  adapters = sum(int(np.prod(np.shape(v))) for p, v in flat.items() if p.endswith((LORA_A, LORA_B)))
  return adapters, sum(int(np.prod(np.shape(v))) for v in flat.values())


def optim_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """config.optim, with every parameter but the adapters (and those the regex
  model.lora_also_train selects, e.g. a new class embedding) frozen when LoRA is enabled."""
  if not enabled(config.model):
    return config.optim
  optim = ml_collections.ConfigDict(config.optim.to_dict())
  also_train = config.model.get("lora_also_train", "")
  frozen = FREEZE_ALL_BUT_ADAPTERS + (f"(?!.*(?:{also_train}))" if also_train else "")
  optim.freeze = (*optim.freeze, frozen)
  return optim


def check_config(model: ml_collections.ConfigDict) -> None:
  if model.lora_rank < 0:
    raise ValueError(f"model.lora_rank must be >= 0 (0 disables LoRA), got {model.lora_rank}.")
  if enabled(model) and model.lora_alpha <= 0:
    raise ValueError(f"model.lora_alpha must be positive, got {model.lora_alpha}.")

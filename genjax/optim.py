"""Optimizers from `config.optim`, all built from optax pieces."""

from __future__ import annotations

import re

import ml_collections
import optax
from flax import traverse_util


def make_schedule(optim: ml_collections.ConfigDict, num_train_steps: int) -> optax.Schedule:
  """Learning rate per optimizer update: linear warmup, then constant/cosine/linear/exponential decay."""
  peak, warmup = optim.lr, optim.warmup_steps
  decay_steps = max(num_train_steps // max(optim.accumulate_steps, 1) - warmup, 1)
  end = peak * optim.end_lr_factor
  if optim.schedule == "constant":
    decay = optax.constant_schedule(peak)
  elif optim.schedule == "cosine":
    decay = optax.cosine_decay_schedule(peak, decay_steps, alpha=optim.end_lr_factor)
  elif optim.schedule == "linear":
    decay = optax.linear_schedule(peak, end, decay_steps)
  elif optim.schedule == "exponential":
    decay = optax.exponential_decay(peak, decay_steps, decay_rate=max(optim.end_lr_factor, 1e-12))
  else:
    raise ValueError(
      f"Unknown optim.schedule {optim.schedule!r}; use constant, cosine, linear or exponential."
    )
  if warmup <= 0:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), decay], [warmup])


def make_optimizer(
  optim: ml_collections.ConfigDict,
  num_train_steps: int,
  lr: float | None = None,
  path_prefix: str = "",
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """(optimizer, schedule): clipping + optimizer + schedule, wrapped in MultiSteps for gradient
  accumulation, and the learning rate it uses at optimizer update n (micro-step // accumulate_steps).

  `lr` overrides `optim.lr` (two time-scale GAN training builds two optimizers from one section).
  Returning the schedule with the optimizer lets families log the rate they train with instead of
  rebuilding it from the config. optim.freeze and optim.lr_multipliers select parameters by path
  (`path_prefix` + the path within the tree this optimizer updates, e.g. "generator/"); see
  `_grouped`.
  """
  if lr is not None:
    optim = ml_collections.ConfigDict(optim.to_dict())
    optim.lr = lr
  schedule = make_schedule(optim, num_train_steps)
  if optim.name == "adam":
    base = optax.adam(schedule, b1=optim.b1, b2=optim.b2, eps=optim.eps)
  elif optim.name == "adamw":
    base = optax.adamw(schedule, b1=optim.b1, b2=optim.b2, eps=optim.eps, weight_decay=optim.weight_decay)
  elif optim.name == "sgd":
    base = optax.sgd(schedule, momentum=optim.momentum or None)
  elif optim.name == "rmsprop":
    base = optax.rmsprop(schedule, momentum=optim.momentum, eps=optim.eps)
  else:
    raise ValueError(f"Unknown optim.name {optim.name!r}; use adam, adamw, sgd or rmsprop.")
  chain = [optax.clip_by_global_norm(optim.grad_clip_norm)] if optim.grad_clip_norm > 0 else []
  optimizer = optax.chain(*chain, base)
  if optim.freeze or optim.lr_multipliers:
    optimizer = _grouped(optimizer, optim, path_prefix)
  if optim.accumulate_steps > 1:
    optimizer = optax.MultiSteps(optimizer, every_k_schedule=optim.accumulate_steps)
  return optimizer, schedule


def _grouped(
  optimizer: optax.GradientTransformation, optim: ml_collections.ConfigDict, path_prefix: str
) -> optax.GradientTransformation:
  """`optimizer` with parameter groups (optax.multi_transform over `group_labels`): frozen
  gradients are zeroed before it (they count neither in the clipping norm nor in the moments) and
  frozen updates after it (weight decay would move them), so frozen parameters stay bitwise
  unchanged; a group with a multiplier has its updates scaled, i.e. its learning rate (and AdamW's
  decoupled decay) times the factor."""
  factors = {f"x{factor:g}": factor for _, factor in _lr_multipliers(optim.lr_multipliers)}
  labels = lambda params: group_labels(params, optim.freeze, optim.lr_multipliers, path_prefix)
  before = {FROZEN: optax.set_to_zero(), TRAINABLE: optax.identity()}
  before.update({name: optax.identity() for name in factors})
  after = {FROZEN: optax.set_to_zero(), TRAINABLE: optax.identity()}
  after.update({name: optax.scale(factor) for name, factor in factors.items()})
  return optax.chain(
    optax.multi_transform(before, labels), optimizer, optax.multi_transform(after, labels)
  )


FROZEN, TRAINABLE = "frozen", "trainable"


def _lr_multipliers(entries: tuple[str, ...]) -> list[tuple[str, float]]:
  """("regex=factor", ...) -> [(regex, factor)]."""
  parsed = []
  for entry in entries:
    pattern, _, factor = str(entry).rpartition("=")
    try:
      parsed.append((pattern, float(factor)))
    except ValueError:
      pattern = ""
    if not pattern:
      raise ValueError(
        f"optim.lr_multipliers entry {entry!r} is not 'regex=factor' (e.g. '^encoder/=0.1')."
      )
  return parsed


def group_labels(params, freeze: tuple[str, ...], lr_multipliers: tuple[str, ...], prefix: str = ""):
  """A tree like `params` labelling each parameter FROZEN (its "/"-joined path, after `prefix`,
  matches a regex of `freeze`, re.search), "x<factor>" (the first entry of lr_multipliers whose
  regex matches) or TRAINABLE, for optax.multi_transform (genjax.optim)."""
  frozen = [re.compile(pattern) for pattern in freeze]
  scaled = [(re.compile(pattern), factor) for pattern, factor in _lr_multipliers(lr_multipliers)]

  def label(path: str) -> str:
    path = prefix + path
    if any(regex.search(path) for regex in frozen):
      return FROZEN
    return next((f"x{factor:g}" for regex, factor in scaled if regex.search(path)), TRAINABLE)

  return traverse_util.unflatten_dict({path: label(path) for path in traverse_util.flatten_dict(params, sep="/")}, sep="/")


def check_groups(params, freeze: tuple[str, ...], lr_multipliers: tuple[str, ...]) -> None:
  """Raises ValueError, listing the parameter paths, for a freeze or lr_multipliers pattern that
  matches no parameter of `params` (the whole tree, e.g. {"generator": ..., "discriminator": ...})
  and for freeze patterns that leave nothing to train."""
  paths = list(traverse_util.flatten_dict(params, sep="/"))
  patterns = [("optim.freeze", p) for p in freeze]
  patterns += [("optim.lr_multipliers", p) for p, _ in _lr_multipliers(lr_multipliers)]
  for key, pattern in patterns:
    if not any(re.search(pattern, path) for path in paths):
      raise ValueError(
        f"{key} pattern {pattern!r} matches no parameter. Parameter paths: {', '.join(paths)}."
      )
  if freeze and all(any(re.search(p, path) for p in freeze) for path in paths):
    raise ValueError(
      f"optim.freeze={tuple(freeze)} freezes every parameter: nothing would train. Parameter "
      f"paths: {', '.join(paths)}."
    )

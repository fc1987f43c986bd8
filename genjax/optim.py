"""Optimizers from `config.optim`, all built from optax pieces."""

from __future__ import annotations

import ml_collections
import optax


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
  optim: ml_collections.ConfigDict, num_train_steps: int, lr: float | None = None
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """(optimizer, schedule): clipping + optimizer + schedule, wrapped in MultiSteps for gradient
  accumulation, and the learning rate it uses at optimizer update n (micro-step // accumulate_steps).

  `lr` overrides `optim.lr` (two time-scale GAN training builds two optimizers from one section).
  Returning the schedule with the optimizer lets families log the rate they train with instead of
  rebuilding it from the config.
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
  if optim.accumulate_steps > 1:
    optimizer = optax.MultiSteps(optimizer, every_k_schedule=optim.accumulate_steps)
  return optimizer, schedule

"""The train state: one pytree with everything a run needs to continue exactly."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax


@flax.struct.dataclass
class TrainState:
  """step: micro-steps taken; params/ema_params: trainable weights (any pytree, e.g. {"generator",
  "discriminator"}); model_state: non-trainable collections (batch_stats, spectral-norm vectors);
  opt_state: optax state; rng: the key the next step splits."""

  step: jax.Array
  params: Any
  ema_params: Any
  model_state: Any
  opt_state: Any
  rng: jax.Array


def create_train_state(
  params: Any, model_state: Any, optimizer: optax.GradientTransformation, rng: jax.Array
) -> TrainState:
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    ema_params=params,
    model_state=model_state,
    opt_state=optimizer.init(params),
    rng=rng,
  )


def ema_decay_at(optim: ml_collections.ConfigDict, step: jax.Array) -> float | jax.Array:
  """The EMA decay for the update made at micro-step `step` (a traced int).

  optim.ema_warmup = "ramp" (the default) ramps the decay up as in diffusers:
    decay_n = min(optim.ema_decay, (1 + n) / (10 + n)),  n = optimizer updates before this one,
  so the EMA forgets the random initial weights within the first few hundred updates (with a
  constant 0.999, 55% of them are still there after 600 updates). "none" keeps the constant decay.
  """
  if optim.ema_warmup == "none" or optim.ema_decay <= 0:
    return float(optim.ema_decay)
  if optim.ema_warmup != "ramp":
    raise ValueError(f"Unknown optim.ema_warmup {optim.ema_warmup!r}; use 'ramp' or 'none'.")
  updates = (step // max(optim.accumulate_steps, 1)).astype(jnp.float32)
  return jnp.minimum(jnp.float32(optim.ema_decay), (1.0 + updates) / (10.0 + updates))


def apply_updates(
  params: Any,
  ema_params: Any,
  opt_state: Any,
  grads: Any,
  optimizer: optax.GradientTransformation,
  ema_decay: float | jax.Array,
) -> tuple[Any, Any, Any]:
  """One optimizer update of `params` (any pytree) and the matching EMA update (`ema_decay`: see
  ema_decay_at; 0 keeps no EMA, so the returned ema_params are the new params).

  Works on plain trees, so a family with several networks passes each network's sub-trees (e.g.
  params["generator"], opt_state["generator"]). With optax.MultiSteps the EMA only moves on
  micro-steps where the parameters really changed. Returns (params, ema_params, opt_state).
  """
  updates, new_opt_state = optimizer.update(grads, opt_state, params)
  new_params = optax.apply_updates(params, updates)
  if isinstance(ema_decay, float) and ema_decay <= 0:
    return new_params, new_params, new_opt_state
  new_ema = optax.incremental_update(new_params, ema_params, step_size=1.0 - ema_decay)
  if isinstance(optimizer, optax.MultiSteps):
    updated = optimizer.has_updated(new_opt_state)
    new_ema = jax.tree.map(lambda n, o: jnp.where(updated, n, o), new_ema, ema_params)
  return new_params, new_ema, new_opt_state

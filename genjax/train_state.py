"""The train state: one pytree with everything a run needs to continue exactly."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
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


def apply_updates(
  state: TrainState,
  grads: Any,
  optimizer: optax.GradientTransformation,
  ema_decay: float,
  params_key: str | None = None,
) -> tuple[Any, Any, Any]:
  """One optimizer update and the matching EMA update.

  With optax.MultiSteps the EMA only moves on micro-steps where the parameters really changed.
  `params_key` selects a sub-tree (e.g. "generator") when a family keeps several optimizers;
  then the opt_state passed and returned is that sub-tree's.
  Returns (params, ema_params, opt_state) for the selected tree.
  """
  params = state.params if params_key is None else state.params[params_key]
  ema = state.ema_params if params_key is None else state.ema_params[params_key]
  opt_state = state.opt_state if params_key is None else state.opt_state[params_key]
  updates, new_opt_state = optimizer.update(grads, opt_state, params)
  new_params = optax.apply_updates(params, updates)
  if ema_decay > 0:
    new_ema = optax.incremental_update(new_params, ema, step_size=1.0 - ema_decay)
    if isinstance(optimizer, optax.MultiSteps):
      updated = optimizer.has_updated(new_opt_state)
      new_ema = jax.tree.map(lambda n, o: jnp.where(updated, n, o), new_ema, ema)
  else:
    new_ema = new_params
  return new_params, new_ema, new_opt_state

"""The hooks a model family gives the generic runner (genjax.trainer).

A family turns a config into networks and the few pure functions the runner compiles:

  init(rng, batch)                         -> (params, model_state)
  loss(params, model_state, batch, rng)    -> (scalar loss, (metrics, new model_state))
  eval_metrics(params, model_state, batch, rng) -> {name: [B] per-example values}
  sample(params, model_state, rng, num)    -> [num, *example_shape] in data.value_range
  image_grids(params, model_state, batch, rng) -> {name: [N, H, W, C] images in data.value_range}
  benchmark_functions(params, model_state, batch, rng) -> {name: (fn, args, images per call)}

`train_step` has a default (one gradient step on `loss` with the config's optimizer and EMA); families
with several networks or updates per step (GANs) override it. Everything here is traced under
`jax.jit` with the batch sharded over the mesh, so hooks must be pure.
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
import optax

from genjax.datasets import DatasetInfo
from genjax.optim import make_optimizer, make_schedule
from genjax.train_state import TrainState, apply_updates, ema_decay_at

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


class Family:
  """Base class of model families; see the module docstring for the hook contract."""

  def __init__(self, config: ml_collections.ConfigDict, info: DatasetInfo, example_shape: tuple):
    self.config = config
    self.info = info
    self.example_shape = tuple(example_shape)
    self.optimizer = self.make_optimizer()

  # --- required hooks ---------------------------------------------------------------------------
  def init(self, rng: jax.Array, batch: Batch) -> tuple[Any, Any]:
    raise NotImplementedError

  def loss(self, params, model_state, batch: Batch, rng: jax.Array) -> tuple[jax.Array, tuple[Metrics, Any]]:
    raise NotImplementedError

  def eval_metrics(self, params, model_state, batch: Batch, rng: jax.Array) -> Metrics:
    raise NotImplementedError

  def sample(self, params, model_state, rng: jax.Array, num: int) -> jax.Array:
    raise NotImplementedError

  # --- hooks with defaults ----------------------------------------------------------------------
  def make_optimizer(self) -> optax.GradientTransformation:
    return make_optimizer(self.config.optim, self.config.training.num_train_steps)

  def learning_rate(self, step: jax.Array) -> jax.Array:
    optim = self.config.optim
    schedule = make_schedule(optim, self.config.training.num_train_steps)
    return schedule(step // max(optim.accumulate_steps, 1))

  def train_step(self, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    """One micro-step: gradients of `loss`, the optimizer update and the EMA update."""
    rng, step_rng = jax.random.split(state.rng)
    grad_fn = jax.value_and_grad(self.loss, has_aux=True)
    (loss, (metrics, model_state)), grads = grad_fn(state.params, state.model_state, batch, step_rng)
    ema_decay = ema_decay_at(self.config.optim, state.step)
    params, ema_params, opt_state = apply_updates(state, grads, self.optimizer, ema_decay)
    metrics = {"loss": loss, **metrics, "grad_norm": optax.global_norm(grads),
               "lr": self.learning_rate(state.step)}
    new_state = state.replace(
      step=state.step + 1, params=params, ema_params=ema_params, model_state=model_state,
      opt_state=opt_state, rng=rng,
    )
    return new_state, metrics

  def check_training(self, summary: dict[str, float]) -> str | None:
    """Why training should stop (e.g. divergence), or None, from the train metrics since the last
    log step: means over the steps, except metrics named `*_max`, which are maxima."""
    return None

  def image_grids(self, params, model_state, batch: Batch, rng: jax.Array) -> dict[str, jax.Array]:
    """Named image sets for PNG grids; by default prior/generator samples."""
    return {"samples": self.sample(params, model_state, rng, self.config.sampling.grid_size)}

  def parameter_groups(self, params) -> dict[str, Any]:
    """Networks to list separately in --mode=summary (e.g. generator / discriminator)."""
    return {"model": params}

  def benchmark_functions(self, params, model_state, batch: Batch, rng: jax.Array) -> dict[str, tuple]:
    """Extra functions scripts/benchmark.py times besides the train step (e.g. each sampler):
    name -> (fn, args, images produced or consumed per call). The script jit-compiles fn."""
    return {}

"""The hooks a model family gives the generic runner (genjax.trainer).

Every family has the same parts:
  genjax/<family>/            its math (losses, likelihoods, samplers), pure functions
  genjax/<family>/settings.py `add_defaults(config)`: the family's config keys and their defaults
  genjax/models/<family>.py   its networks, chosen by `model.network` from a Registry
  genjax/families/<family>.py a thin adapter: a Family subclass registered in FAMILIES

A family is built as `Family(config, info, mesh)` (the Experiment owns the mesh) and turns the
config into networks and the few pure functions the runner compiles:

  prepare(config, workdir, train)          before building: workdir-dependent config, prerequisites
  init(rng, batch)                         -> (params, model_state)
  loss(params, model_state, batch, rng)    -> (scalar loss, (metrics, new model_state))
  eval_metrics(params, model_state, batch, rng) -> {name: [B] per-example values}
  sample(params, model_state, rng, num)    -> [num, *example_shape] in data.value_range
  sample_labels(rng, num)                  -> the [num] labels `sample` conditions on, or None
  image_grids(params, model_state, batch, rng) -> {name: [N, H, W, C] images in data.value_range}
  metric_conventions()                     -> {eval metric name: its units and protocol}
  benchmark_functions(params, model_state, batch, rng) -> {name: (fn, args, images per call)}
  train_step_cycle, train_step_kind(step) -> what step `step` does, where steps differ (benchmarks)

`train_step` has a default (one gradient step on `loss` with the optimizer of `make_optimizer`
and the EMA); families with several networks or updates per step (GANs) override it and
`make_optimizer`. Everything here is traced under `jax.jit` with the batch sharded over the mesh,
so hooks must be pure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import jax
import ml_collections
import optax
from jax.sharding import Mesh

from genjax import lora
from genjax.datasets import DatasetInfo
from genjax.input_pipeline import example_shape
from genjax.optim import make_optimizer
from genjax.precision import network_apply
from genjax.train_state import TrainState, apply_updates, ema_decay_at

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]
LearningRates = Callable[[jax.Array], Metrics]  # micro-step -> {"lr": ..., ...}


class Family:
  """Base class of model families; see the module docstring for the hook contract."""

  # Whether the class-embedding tables of the family's networks end in a "no label" row
  # (classifier-free guidance), which genjax.finetune keeps last when a table gains classes.
  null_label_row = False
  # model_state entries that belong to one network and are loaded with its parameters when
  # fine-tuning (genjax.finetune): {model_state key: the params key of that network}.
  owned_state: ClassVar[dict[str, str]] = {}
  # A checkpoint step of the run whose parameters guide sampling from later steps (the diffusion
  # family's sampling.autoguidance): training saves and keeps it, and the runner passes
  # with_guide(params, its params) to the sampling hooks. None: sampling needs no other step.
  guide_step: int | None = None
  # Names the guidance in sample file names (--mode=sample), so that runs with other settings
  # write other files: e.g. "_autoguidance2by1000".
  guide_tag = ""

  def __init__(self, config: ml_collections.ConfigDict, info: DatasetInfo, mesh: Mesh):
    self.config = config
    self.info = info
    self.mesh = mesh
    self.example_shape = example_shape(config.data, info)
    self.optimizer, self.learning_rates = self.make_optimizer()
    # network_apply(module, variables, ...): module.apply in config.precision (genjax.precision)
    self.apply_network = network_apply(config.precision)

  # --- required hooks ---------------------------------------------------------------------------
  @staticmethod
  def add_defaults(config: ml_collections.ConfigDict) -> None:
    """Adds the family's config keys with their defaults to a base_config() (in place)."""
    raise NotImplementedError

  def init(self, rng: jax.Array, batch: Batch) -> tuple[Any, Any]:
    raise NotImplementedError

  def loss(self, params, model_state, batch: Batch, rng: jax.Array) -> tuple[jax.Array, tuple[Metrics, Any]]:
    raise NotImplementedError

  def eval_metrics(self, params, model_state, batch: Batch, rng: jax.Array) -> Metrics:
    raise NotImplementedError

  def sample(self, params, model_state, rng: jax.Array, num: int) -> jax.Array:
    raise NotImplementedError

  # --- hooks with defaults ----------------------------------------------------------------------
  def with_guide(self, params, guide_params):
    """The parameters the sampling hooks take when guide_step's parameters guide `params`."""
    raise NotImplementedError(f"{type(self).__name__} sets no guide_step.")

  @staticmethod
  def prepare(config: ml_collections.ConfigDict, workdir, train: bool) -> None:
    """Runs before the family is built, in every mode (train: in --mode=train): fills in config
    values that depend on the workdir and trains what the family builds on (text2img's frozen
    autoencoder). Nothing by default."""

  def make_optimizer(self) -> tuple[Any, LearningRates]:
    """(optimizer, learning_rates): the optax optimizer of `train_step`, and the learning rates it
    applies at a micro-step, logged as train metrics."""
    optim = lora.optim_config(self.config)
    optimizer, schedule = make_optimizer(optim, self.config.training.num_train_steps)
    return optimizer, lambda step: {"lr": schedule(step // max(optim.accumulate_steps, 1))}

  def train_step(self, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    """One micro-step: gradients of `loss`, the optimizer update and the EMA update."""
    rng, step_rng = jax.random.split(state.rng)
    grad_fn = jax.value_and_grad(self.loss, has_aux=True)
    (loss, (metrics, model_state)), grads = grad_fn(state.params, state.model_state, batch, step_rng)
    params, ema_params, opt_state = apply_updates(
      state.params, state.ema_params, state.opt_state, grads, self.optimizer,
      ema_decay_at(self.config.optim, state.step),
    )
    metrics = {"loss": loss, **metrics, "grad_norm": optax.global_norm(grads),
               **self.learning_rates(state.step)}
    new_state = state.replace(
      step=state.step + 1, params=params, ema_params=ema_params, model_state=model_state,
      opt_state=opt_state, rng=rng,
    )
    return new_state, metrics

  def check_training(self, summary: dict[str, float]) -> str | None:
    """Why training should stop (e.g. divergence), or None, from the train metrics since the last
    log step: means over the steps, except metrics named `*_max`, which are maxima."""
    return None

  def sample_labels(self, rng: jax.Array, num: int) -> jax.Array | None:
    """The class labels [num] that `sample(params, model_state, rng, num)` conditions on, or None
    for an unconditional model (class-conditional sample metrics compare samples with them)."""
    return None

  def image_grids(self, params, model_state, batch: Batch, rng: jax.Array) -> dict[str, jax.Array]:
    """Named image sets for PNG grids; by default prior/generator samples."""
    return {"samples": self.sample(params, model_state, rng, self.config.sampling.grid_size)}

  def metric_conventions(self) -> dict[str, str]:
    """eval metric name -> what the number means (units, estimator, data), for the eval protocol
    written next to every result; stated by the family beside the code that computes the metric."""
    return {}

  def parameter_groups(self, params) -> dict[str, Any]:
    """Networks to list separately in --mode=summary (e.g. generator / discriminator)."""
    return {"model": params}

  def benchmark_functions(self, params, model_state, batch: Batch, rng: jax.Array) -> dict[str, tuple]:
    """Extra functions scripts/benchmark.py times besides the train step (e.g. each sampler):
    name -> (fn, args, images produced or consumed per call). The script jit-compiles fn."""
    return {}

  # Train steps whose work differs by step number repeat it every train_step_cycle steps; step k
  # does the work named train_step_kind(k) (scripts/benchmark.py times each kind and whole cycles).
  train_step_cycle: int = 1

  def train_step_kind(self, step: int) -> str:
    return "every step"

"""The one generic runner: train, evaluate, sample and summarize any model family.

A family (genjax.families) supplies the model-specific hooks; this module owns everything else:
the mesh, the compiled steps, the input pipeline, checkpoints, metrics, sample grids, NaN checks
and preemption. Entry points (all take a locked config and a workdir):

  train_and_evaluate  train from scratch or resume the latest checkpoint, then evaluate and sample
  evaluate            evaluate the latest (or a given) checkpoint; writes eval_<step>.json
  sample              write new sample grids (and an .npz of samples) from the latest checkpoint
  project             fit the generator's latents to image files (families with `project`)
  summary             the networks' parameter table, ending in `total_params=<N>`
"""

from __future__ import annotations

import functools
import json
import math
import signal
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from clu import metrics as clu_metrics
from clu import parameter_overview, periodic_actions
from etils import epath

import genjax
from genjax import compilation_cache, finetune, images, lora, parallel
from genjax.checkpoint import Checkpointer, CheckpointUnreadableError
from genjax.config import check_renamed_keys
from genjax.datasets import DatasetInfo, dataset_info, load_images
from genjax.evaluation.sample_metrics import SampleMetricsEvaluator
from genjax.families import get_family
from genjax.input_pipeline import TrainData, eval_batches
from genjax.optim import check_groups, make_schedule
from genjax.paths import as_path
from genjax.train_state import TrainState, create_train_state
from genjax.writers import make_writer


class TrainingHalted(RuntimeError):
  """Training stopped because continuing would waste the run; the last good checkpoint is kept."""


class NonFiniteError(TrainingHalted):
  """The loss or the parameters became NaN/inf."""


class DivergedError(TrainingHalted):
  """The family's `check_training` hook found the run diverging (e.g. a GAN's critic loss exploding)."""


def dummy_batch(example_shape: tuple[int, ...]) -> dict[str, jax.Array]:
  """One all-zero example and label, the batch networks are initialised from."""
  return {"x": jnp.zeros((1, *example_shape), jnp.float32), "label": jnp.zeros((1,), jnp.int32)}


class Experiment:
  """A family bound to a mesh: compiled init/train/eval/sample functions and the checkpointer."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: epath.PathLike, info: DatasetInfo,
               read_only: bool = False):
    compilation_cache.enable_default()
    self.config = config
    self.workdir = as_path(workdir)
    self.info = info
    self.mesh = parallel.make_mesh()
    family = get_family(config.family)
    family.prepare(config, self.workdir, train=False)
    self.family = family(config, info, self.mesh)
    replicated = parallel.replicated(self.mesh)
    batch = parallel.batch_sharded(self.mesh)
    self.train_step = jax.jit(
      self.family.train_step, in_shardings=(replicated, batch), out_shardings=(replicated, replicated),
      donate_argnums=0,
    )
    self.eval_step = jax.jit(self._masked_eval_sums, in_shardings=(replicated, replicated, batch, replicated),
                             out_shardings=replicated)
    self.image_grids = jax.jit(self.family.image_grids, out_shardings=replicated)
    self.sample_fn = jax.jit(self.family.sample, static_argnums=3, out_shardings=replicated)
    self._init = jax.jit(self._init_state, out_shardings=replicated)
    if config.optim.freeze or config.optim.lr_multipliers:
      check_groups(self.abstract_state().params, config.optim.freeze, config.optim.lr_multipliers)
    if lora.enabled(config.model):
      adapters, total = lora.trainable_fraction(self.abstract_state().params)
      logging.info("LoRA rank %d: %d of %d parameters train (%.2f%%).", config.model.lora_rank,
                   adapters, total, 100 * adapters / total)
    self.checkpointer = Checkpointer(
      self.workdir, keep=config.training.keep_checkpoints, best_metric=config.training.keep_best_by,
      best_mode=config.training.best_mode, async_save=config.training.async_checkpoints,
      read_only=read_only,
      preserve_steps=() if self.family.guide_step is None else (self.family.guide_step,),
    )
    self._guides: dict[bool, Any] = {}

  @functools.cached_property
  def sample_evaluator(self) -> SampleMetricsEvaluator:
    """eval.sample_metrics, with its extractors and reference statistics loaded once."""
    return SampleMetricsEvaluator(self.config, self.info, self.mesh)

  def _init_state(self, rng: jax.Array) -> TrainState:
    init_rng, state_rng = jax.random.split(rng)
    params, model_state = self.family.init(init_rng, dummy_batch(self.family.example_shape))
    return create_train_state(params, model_state, self.family.optimizer, state_rng)

  def init_state(self) -> TrainState:
    return self._init(jax.random.key(self.config.seed))

  def abstract_state(self) -> TrainState:
    """Shapes, dtypes and (replicated) shardings of the train state, for restoring into."""
    shapes = jax.eval_shape(self._init_state, jax.random.key(self.config.seed))
    sharding = parallel.replicated(self.mesh)
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)

  def restore(self, data_iterator=None, step: int | None = None) -> tuple[TrainState, int]:
    return self.checkpointer.restore(self.abstract_state(), data_iterator, step)

  def _masked_eval_sums(self, params, model_state, batch, rng) -> dict[str, clu_metrics.Average]:
    per_example = self.family.eval_metrics(params, model_state, batch, rng)
    mask = batch["mask"]
    return {
      name: clu_metrics.Average(total=jnp.sum(value * mask), count=jnp.sum(mask))
      for name, value in per_example.items()
    }

  def eval_params(self, state: TrainState) -> Any:
    return state.ema_params if self.config.eval.use_ema else state.params

  def sample_params(self, state: TrainState) -> Any:
    """What the family's sampling hooks take: the EMA (sampling.use_ema) or raw parameters, with the
    guide's when the family has a guide_step (see `guided`)."""
    use_ema = self.config.sampling.use_ema
    return self.guided(state.ema_params if use_ema else state.params, state, use_ema)

  def guided_at(self, step: int, use_ema: bool) -> bool:
    """Whether `guided` combined the parameters of `step` with the guide step's."""
    guide_step = self.family.guide_step
    return guide_step is not None and guide_step < step and self._guides.get(use_ema) is not None

  def guided(self, params: Any, state: TrainState, use_ema: bool) -> Any:
    """`params` of `state`, combined with those of the family's guide_step (family.with_guide; the
    EMA or raw parameters as `use_ema` says) when that step is earlier than the state's.

    Read-only (eval, sample and the tools): a guide step that is not earlier, or not among the
    checkpoints, is an error. Training samples unguided until the guide step is saved and passed,
    and (with a warning) when a resumed workdir lacks it or cannot read it."""
    guide_step = self.family.guide_step
    if guide_step is None:
      return params
    step = int(jax.device_get(state.step))
    if guide_step >= step:
      if self.checkpointer.read_only:
        raise ValueError(
          f"sampling.autoguidance_step={guide_step} must be an earlier step than the sampled "
          f"checkpoint ({step}): choose an earlier guide step, sample a later step, or set "
          "sampling.autoguidance=0."
        )
      return params
    if use_ema not in self._guides:
      self._guides[use_ema] = self._restore_guide(guide_step, use_ema)
    guide = self._guides[use_ema]
    return params if guide is None else self.family.with_guide(params, guide)

  def _restore_guide(self, guide_step: int, use_ema: bool) -> Any | None:
    """The guide step's parameters; None (with a warning, once) when training cannot read them."""
    self.checkpointer.wait()
    steps = sorted(self.checkpointer.all_steps())
    try:
      if guide_step not in steps:
        raise FileNotFoundError(
          f"sampling.autoguidance_step={guide_step} has no checkpoint in "
          f"{self.checkpointer.directory} (steps there: {steps}); set it to one of those steps "
          "(training saves and keeps the guide step when sampling.autoguidance is set from the start)."
        )
      guide_state, _ = self.checkpointer.restore(self.abstract_state(), step=guide_step)
    except (FileNotFoundError, CheckpointUnreadableError) as error:
      if self.checkpointer.read_only:
        raise
      logging.warning("%s Sampling unguided.", error)  # training goes on; an earlier step stays so
      return None
    return guide_state.ema_params if use_ema else guide_state.params


def initial_state(experiment: Experiment) -> TrainState:
  """The state a new run starts from: the family's initialisation, with the parameters of
  config.init_from's checkpoint where they fit (genjax.finetune; the load table is logged and
  written to <workdir>/init_from.json), and the model_state its networks own (the family's
  owned_state) with them. The optimizer state, EMA, the rest of model_state and the PRNG key start
  fresh."""
  config = experiment.config
  state = experiment.init_state()
  if not config.init_from:
    return state
  source, source_state, step = finetune.read_source(
    config.init_from, config.init_step, config.init_from_ema, config.family
  )
  owners = experiment.family.owned_state
  fresh_state = jax.device_get(state.model_state)
  table = finetune.InitTable(config.init_from, step, "EMA" if config.init_from_ema else "raw")
  context = {"null_label_row": experiment.family.null_label_row}
  loaded = finetune.initialise_params(
    finetune.with_owned_state(state.params, fresh_state, owners),
    finetune.with_owned_state(source, source_state, owners),
    config.init_rules, context, table, config.init_include,
  )
  params, owned = finetune.split_owned_state(loaded, owners)
  finetune.write_table(experiment.workdir, table)
  optimizer = experiment.family.optimizer
  # Compiled, so that params and ema_params are distinct buffers (the train step donates both).
  build = jax.jit(lambda p, m, r: create_train_state(p, m, optimizer, r),
                  out_shardings=parallel.replicated(experiment.mesh))
  return build(params, {**fresh_state, **owned}, state.rng)


# --- evaluation and outputs -----------------------------------------------------------------------


def evaluate_state(experiment: Experiment, state: TrainState) -> dict[str, float]:
  """Averages the family's eval metrics over the eval split, then computes the sample-based metrics
  that eval.sample_metrics lists (genjax.evaluation), guided as sampling is (Experiment.guided);
  keys are prefixed with `eval/`."""
  config = experiment.config
  local_batch = parallel.local_batch_size(config.eval.batch_size, "eval.batch_size")
  rng = jax.random.key(config.eval.seed)
  params = experiment.eval_params(state)
  totals: dict[str, clu_metrics.Average] = {}
  batches = eval_batches(config.data, local_batch, num_examples=config.eval.num_examples,
                         data_seed=config.seed, noise_seed=config.eval.seed)
  for index, local in enumerate(batches):
    batch = parallel.global_batch(experiment.mesh, local)
    sums = experiment.eval_step(params, state.model_state, batch, jax.random.fold_in(rng, index))
    totals = {name: totals[name].merge(value) if name in totals else value for name, value in sums.items()}
  results = {f"eval/{name}": float(average.compute()) for name, average in totals.items()}
  family = experiment.family
  if config.eval.sample_metrics:  # no guide is read when nothing samples
    params = experiment.guided(params, state, config.eval.use_ema)
  sample_results = experiment.sample_evaluator.run(family.sample, params, state.model_state,
                                                   family.sample_labels)
  return {**results, **{f"eval/{name}": value for name, value in sample_results.items()}}


def eval_protocol(experiment: Experiment, step: int) -> dict[str, Any]:
  """What a reader needs to compare an evaluation: data, split, sample counts, seeds, code version,
  the convention of each likelihood metric and, with eval.sample_metrics, how samples, reference
  statistics and feature extractors were made (the experiment's SampleMetricsEvaluator)."""
  config = experiment.config
  protocol = {
    "checkpoint_step": step,
    "dataset": config.data.name,
    "split": config.data.eval_split,
    "num_examples": config.eval.num_examples or "all",
    "preprocessing": {k: config.data[k] for k in ("binarize", "dequantize", "image_size", "value_range")},
    "eval": config.eval.to_dict(),
    "family": config.family,
    "model": config.model.to_dict(),
    "genjax_version": genjax.__version__,
    "likelihood_conventions": experiment.family.metric_conventions(),
  }
  if config.eval.sample_metrics:
    protocol["sample_metrics"] = experiment.sample_evaluator.protocol()
    guide_step = experiment.family.guide_step
    if guide_step is not None:  # training samples unguided until the guide step is passed
      guided = experiment.guided_at(step, config.eval.use_ema)
      protocol["sample_metrics"]["autoguided"] = (
        f"yes: guided by step {guide_step}'s parameters" if guided
        else f"no: the guide step {guide_step} was not earlier or not saved"
      )
  return protocol


def write_eval_json(workdir: epath.Path, step: int, results: dict[str, float],
                    protocol: dict[str, Any]) -> epath.Path:
  """<workdir>/eval_<step>.json: {"step", "metrics", "protocol"} (written by process 0)."""
  path = workdir / f"eval_{step}.json"
  if jax.process_index() == 0:
    path.write_text(json.dumps({"step": step, "metrics": results, "protocol": protocol}, indent=2))
  return path


def write_image_grids(experiment: Experiment, state: TrainState, step: int, writer, seed: int,
                      tag: str = "") -> list[epath.Path]:
  """PNG grids (samples/<name>_<step><tag>.png) and TensorBoard images of the family's image sets."""
  config = experiment.config
  local = next(iter(eval_batches(
    config.data, parallel.local_batch_size(config.eval.batch_size, "eval.batch_size"),
    num_examples=config.eval.num_examples, data_seed=config.seed, noise_seed=config.eval.seed,
  )))
  batch = parallel.global_batch(experiment.mesh, local)
  grids = experiment.image_grids(
    experiment.sample_params(state), state.model_state, batch, jax.random.key(seed)
  )
  paths, pictures = [], {}
  for name, values in jax.device_get(grids).items():
    picture = images.render(np.asarray(values), config.data.value_range, config.sampling.grid_columns)
    pictures[name] = picture[None].astype(np.float32) / 255.0
    if jax.process_index() == 0:
      paths.append(images.save_png(experiment.workdir / "samples" / f"{name}_{step:07d}{tag}.png", picture))
  writer.write_images(step, pictures)
  return paths


# --- training -------------------------------------------------------------------------------------


class PreemptionWatcher:
  """Notices SIGTERM (how Cloud TPU/GCE announce preemption) so the loop can checkpoint and exit.

  With several processes the step to stop at is agreed through jax's preemption sync point.
  """

  def __init__(self):
    self.requested = False
    self._previous = None
    if jax.process_count() == 1:
      try:
        self._previous = signal.signal(signal.SIGTERM, self._handle)
      except ValueError:  # not the main thread: leave signals alone
        self._previous = None

  def _handle(self, signum, frame):
    logging.warning("SIGTERM received: saving a checkpoint at the current step, then exiting.")
    self.requested = True

  def should_stop(self, step: int) -> bool:
    """At a step boundary: whether to save and exit now (the same answer on every process)."""
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils

      return multihost_utils.reached_preemption_sync_point(step)
    return self.requested

  def requested_since_step(self) -> bool:
    """After an evaluation or a sampling: whether a SIGTERM came meanwhile. With several
    processes the agreement needs a step number, so they stop at the next step's sync point."""
    return self.requested if jax.process_count() == 1 else False

  def close(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


class TrainingClock:
  """Says when training.max_train_minutes of this invocation's training have passed.

  Checked at log steps only; with several processes process 0's clock decides for all of them,
  so every process stops at the same step.
  """

  def __init__(self, max_minutes: float):
    self.max_seconds = 60.0 * max_minutes
    self.start = time.monotonic()

  def out_of_time(self) -> bool:
    if self.max_seconds <= 0:
      return False
    expired = time.monotonic() - self.start >= self.max_seconds
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils

      expired = bool(multihost_utils.broadcast_one_to_all(np.array(expired)))
    return expired


@jax.jit
def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree) if jnp.issubdtype(leaf.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _average_metrics(pending: list[dict[str, jax.Array]]) -> dict[str, float]:
  """Per-step metrics -> their mean over the steps, except names ending in `_max`: their maximum."""
  stacked = jax.device_get(pending)
  reduce = lambda name: np.max if name.endswith("_max") else np.mean
  return {name: float(reduce(name)([m[name] for m in stacked])) for name in stacked[0]}


def _check_config(config: ml_collections.ConfigDict) -> None:
  training = config.training
  for key in ("num_train_steps", "log_every", "checkpoint_every"):
    if training[key] <= 0:
      raise ValueError(f"training.{key} must be positive, got {training[key]}.")
  if training.best_mode not in ("min", "max"):
    raise ValueError(f"training.best_mode must be 'min' or 'max', got {training.best_mode!r}.")
  check_renamed_keys(config)
  get_family(config.family)  # an unknown family lists the valid ones


def _warn_on_config_change(saved: dict, step: int, config: ml_collections.ConfigDict) -> None:
  """Logs every key of `config` that differs from `saved`, the config the step was written with."""
  current = json.loads(config.to_json())
  changed = [
    f"{section}.{key}: {saved.get(section, {}).get(key)!r} -> {value!r}"
    for section, values in current.items() if isinstance(values, dict)
    for key, value in values.items() if saved.get(section, {}).get(key) != value
  ]
  if changed:
    logging.warning("Resuming step %d with a changed config: %s", step, "; ".join(changed))


def _is_due(step: int, every: int, final: bool = False) -> bool:
  """Whether a periodic action runs at `step`: every `every` steps (0: never) and at the end."""
  return final or (every > 0 and step % every == 0)


def _summarize_and_check(experiment: Experiment, state: TrainState, pending: list, step: int, writer) -> None:
  """Averages the train metrics since the last summary, halts on NaN/inf or divergence, then
  writes them. Every checkpoint is taken after this check, so none holds an unchecked state."""
  config, checkpointer = experiment.config, experiment.checkpointer
  summary = _average_metrics(pending) if pending else {}
  bad = [name for name, value in summary.items() if not np.isfinite(value)]
  if config.training.halt_on_nonfinite and (bad or not bool(_all_finite(state.params))):
    checkpointer.wait()
    what = f"metrics {', '.join(bad)}" if bad else "the parameters"
    raise NonFiniteError(
      f"Training stopped at step {step}: {what} became NaN/inf (averaged over steps since the last "
      f"log). The last good checkpoint (step {checkpointer.latest_step()}) in {checkpointer.directory} "
      "is kept. Lower optim.lr, set optim.grad_clip_norm (a new optimizer state: in a new "
      "--workdir), or check the data, then run again."
    )
  problem = experiment.family.check_training(summary) if summary else None
  if problem:
    checkpointer.wait()
    raise DivergedError(
      f"Training stopped at step {step}: {problem}. The last good checkpoint (step "
      f"{checkpointer.latest_step()}) in {checkpointer.directory} is kept."
    )
  if summary:
    writer.write_scalars(step, {f"train/{k}": v for k, v in summary.items()})


def _evaluate_and_record(experiment: Experiment, state: TrainState, step: int, writer) -> dict[str, float]:
  """Evaluates `state` (already saved at `step`), writes the metrics and eval_<step>.json, and
  hands them to the checkpointer's keep-best policy."""
  results = evaluate_state(experiment, state)
  writer.write_scalars(step, results)
  write_eval_json(experiment.workdir, step, results, eval_protocol(experiment, step))
  experiment.checkpointer.record_metrics(step, _strip(results))
  return results


def _log_schedule_change(saved: dict, step: int, config: ml_collections.ConfigDict) -> None:
  """When a finished run continues with a larger training.num_train_steps, the learning-rate
  schedule is rebuilt over the new horizon; says what that does to the rate at this step."""
  saved_steps = saved.get("training", {}).get("num_train_steps")
  current = config.training.num_train_steps
  if saved_steps is None or saved_steps == current:
    return
  saved_optim = ml_collections.ConfigDict(saved.get("optim", config.optim.to_dict()))
  updates = step // max(config.optim.accumulate_steps, 1)
  old_lr = float(make_schedule(saved_optim, saved_steps)(updates))
  new_lr = float(make_schedule(config.optim, current)(updates))
  logging.warning(
    "training.num_train_steps changed from %d to %d: the learning-rate schedule now spans %d steps, "
    "so at step %d the rate is %.4g (it was %.4g under the old horizon).",
    saved_steps, current, current, step, new_lr, old_lr,
  )


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: epath.PathLike) -> dict[str, float]:
  """Trains to training.num_train_steps (resuming the workdir's latest checkpoint), evaluates, samples.

  Each step: train, then (when due) summarize and check the metrics, save, evaluate, sample, in
  that order, so a preemption during a long evaluation never loses the trained steps. A SIGTERM
  is honoured at the next step boundary and again after an evaluation or a sampling.
  Returns the final evaluation metrics plus "step" (and "preempted" when stopped by SIGTERM).
  Raises DivergedError when the family's check_training hook objects to the logged metrics,
  and NonFiniteError when the loss or the parameters stop being finite; no checkpoint is
  written from such a state.
  """
  _check_config(config)
  get_family(config.family).prepare(config, workdir, train=True)
  training = config.training
  local_batch = parallel.local_batch_size(training.batch_size)
  parallel.local_batch_size(config.eval.batch_size, "eval.batch_size")
  data = TrainData(config, local_batch)
  experiment = Experiment(config, workdir, data.info)
  checkpointer = experiment.checkpointer
  writer = make_writer(experiment.workdir, config)

  if checkpointer.latest_step() is not None:
    state, step = experiment.restore(data.iterator)
    saved_config = checkpointer.restored_config(step)  # read once, for both reports
    _warn_on_config_change(saved_config, step, config)
    _log_schedule_change(saved_config, step, config)
    logging.info("Resumed from the checkpoint at step %d.", step)
    if config.init_from:
      logging.info("config.init_from is not used: this workdir resumes its own checkpoint.")
  else:
    state, step = initial_state(experiment), 0
    writer.write_hparams({k: v for k, v in _flat(config.to_dict()).items()})
  if step >= training.num_train_steps:
    logging.info("Step %d >= training.num_train_steps=%d: nothing to train.", step, training.num_train_steps)

  report = periodic_actions.ReportProgress(num_train_steps=training.num_train_steps, writer=writer,
                                           every_steps=training.log_every, every_secs=None)
  preemption = PreemptionWatcher()
  clock = TrainingClock(training.max_train_minutes)
  pending: list[dict[str, jax.Array]] = []
  results: dict[str, float] = {}
  evaluated_step = None
  try:
    while step < training.num_train_steps:
      batch = parallel.global_batch(experiment.mesh, next(data))
      state, metrics = experiment.train_step(state, batch)
      if pending:  # at most two steps in flight, so a SIGTERM is honoured within about one step
        jax.block_until_ready(pending[-1])
      pending.append(metrics)
      step += 1
      report(step)
      stopping = preemption.should_stop(step)
      log_due = _is_due(step, training.log_every)
      final = step == training.num_train_steps
      if log_due and not final and clock.out_of_time():
        logging.warning("training.max_train_minutes=%g reached at step %d: saving and evaluating now; "
                        "run the same command (or raise the limit) to continue.", training.max_train_minutes, step)
        final = True
      evaluate_due = not stopping and _is_due(step, training.eval_every, final)
      save_due = (stopping or evaluate_due or _is_due(step, training.checkpoint_every, final)
                  or step == experiment.family.guide_step)
      if log_due or save_due:
        _summarize_and_check(experiment, state, pending, step, writer)
        pending = []
      if save_due:
        checkpointer.save(step, state, data.iterator, config)
      if evaluate_due:
        results = _evaluate_and_record(experiment, state, step, writer)
        evaluated_step = step
        stopping = preemption.requested_since_step()
      if not stopping and not final and _is_due(step, training.sample_every):
        write_image_grids(experiment, state, step, writer, config.sampling.seed)
        stopping = preemption.requested_since_step()
      if stopping:
        checkpointer.wait()
        logging.warning("Preempted: checkpoint saved at step %d; run the same command to resume.", step)
        return {"step": step, "preempted": True}
      if final:
        break

    if evaluated_step != step:  # nothing left to train: evaluate the restored state
      results = _evaluate_and_record(experiment, state, step, writer)
    write_image_grids(experiment, state, step, writer, config.sampling.seed)
    writer.flush()
    return {"step": step, **results}
  finally:
    preemption.close()
    checkpointer.close()


def _strip(results: dict[str, float]) -> dict[str, float]:
  """eval/<name> -> <name>, the names training.keep_best_by refers to."""
  return {name.removeprefix("eval/"): value for name, value in results.items()}


def _flat(tree: dict, prefix: str = "") -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flat(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
  return flat


# --- the other modes ------------------------------------------------------------------------------


def restore_for_inference(config, workdir: epath.PathLike, step: int | None) -> tuple[Experiment, TrainState, int]:
  """The experiment with a read-only checkpointer (nothing is moved, deleted or written) and the
  restored state of `step` (default: the latest)."""
  _check_config(config)
  experiment = Experiment(config, workdir, dataset_info(config.data), read_only=True)
  if experiment.checkpointer.latest_step() is None:
    raise FileNotFoundError(
      f"No checkpoint in {experiment.checkpointer.directory}; train first with --mode=train."
    )
  state, step = experiment.restore(step=step)
  return experiment, state, step


def evaluate(config: ml_collections.ConfigDict, workdir: epath.PathLike, step: int | None = None) -> dict[str, float]:
  """Evaluates a checkpoint; writes metrics.jsonl, TensorBoard and eval_<step>.json."""
  experiment, state, step = restore_for_inference(config, workdir, step)
  try:
    results = evaluate_state(experiment, state)
    writer = make_writer(experiment.workdir, config)
    writer.write_scalars(step, results)
    writer.flush()
    write_eval_json(experiment.workdir, step, results, eval_protocol(experiment, step))
    return {"step": step, **results}
  finally:
    experiment.checkpointer.close()


def export_merged(config: ml_collections.ConfigDict, workdir: epath.PathLike,
                  step: int | None = None) -> epath.Path:
  """Writes <workdir>/merged: the LoRA run's checkpoint `step` (default: the latest) as a run of the
  same config with model.lora_rank=0, whose params and EMA are the merged kernels (genjax.lora) and
  whose optimizer state starts fresh. Sample, evaluate or fine-tune it like any run:
  --workdir=<workdir>/merged --config.model.lora_rank=0. Returns that workdir."""
  _check_config(config)
  if not lora.enabled(config.model):
    raise ValueError("--mode=export merges LoRA adapters; this config has model.lora_rank=0.")
  data = TrainData(config, parallel.local_batch_size(config.training.batch_size))
  experiment = Experiment(config, workdir, data.info, read_only=True)
  state, step = experiment.restore(data.iterator, step)
  plain = ml_collections.ConfigDict(config.to_dict())
  plain.model.lora_rank, plain.init_from = 0, ""
  target = Experiment(plain, experiment.workdir / "merged", data.info)
  factor = lora.scale(config.model)
  optimizer = target.family.optimizer

  def merged_state(state: TrainState) -> TrainState:
    params, ema_params = lora.merge(state.params, factor), lora.merge(state.ema_params, factor)
    fresh = create_train_state(params, state.model_state, optimizer, state.rng)
    return fresh.replace(step=state.step, ema_params=ema_params)

  merged = jax.jit(merged_state, out_shardings=parallel.replicated(experiment.mesh))(state)
  try:
    target.checkpointer.save(step, merged, data.iterator, plain)
    target.checkpointer.wait()
  finally:
    target.checkpointer.close()
    experiment.checkpointer.close()
  logging.info("Merged LoRA weights of step %d written to %s.", step, target.workdir)
  return target.workdir


def sample(config: ml_collections.ConfigDict, workdir: epath.PathLike, step: int | None = None) -> list[epath.Path]:
  """Writes new grids (seed sampling.seed) and sampling.num_samples samples to
  samples/samples_<step>_seed<seed><family.guide_tag>.npz, drawn sampling.batch_size at a time
  (batch i with the key fold_in(key(seed), i)) and streamed to the file, so memory stays bounded
  for any count."""
  experiment, state, step = restore_for_inference(config, workdir, step)
  try:
    sampling = config.sampling
    if sampling.num_samples <= 0 or sampling.batch_size <= 0:
      raise ValueError("sampling.num_samples and sampling.batch_size must be positive, got "
                       f"{sampling.num_samples} and {sampling.batch_size}.")
    writer = make_writer(experiment.workdir, config)
    tag = f"_seed{sampling.seed}{experiment.family.guide_tag}"
    paths = write_image_grids(experiment, state, step, writer, sampling.seed, tag=tag)
    params = experiment.sample_params(state)
    key = jax.random.key(sampling.seed)

    def batches():
      for index in range(math.ceil(sampling.num_samples / sampling.batch_size)):
        drawn = experiment.sample_fn(params, state.model_state, jax.random.fold_in(key, index),
                                     sampling.batch_size)
        yield np.asarray(jax.device_get(drawn))[: sampling.num_samples - index * sampling.batch_size]

    path = experiment.workdir / "samples" / f"samples_{step:07d}{tag}.npz"
    if jax.process_index() == 0:
      write_npz_stream(path, "samples", sampling.num_samples, batches(), step=step, seed=sampling.seed)
      paths.append(path)
    else:
      for _ in batches():  # every process takes part in the (sharded) computation
        pass
    writer.flush()
    return paths
  finally:
    experiment.checkpointer.close()


def project(config: ml_collections.ConfigDict, workdir: epath.PathLike, step: int | None = None) -> list[epath.Path]:
  """Projects every image of config.projection.target (an image file or a folder of them, fitted
  to the model's shape by datasets.load_images) into the latent space of the checkpoint's sampling
  generator, projection.batch_size targets at a time (the family's `project`, e.g. StyleGAN2's
  W+), and writes to <workdir>/projections/<step>/:
    progress.png       a row per target: the target, then the image after each snapshot;
    projections.npz    names, targets, images (data.value_range), ws, distances [N, num_steps]
                       and each noise map as noise/<layer>;
    projections.json   each target's final pixel MSE and PSNR (dB) on [0, 1] pixels."""
  experiment, state, step = restore_for_inference(config, workdir, step)
  try:
    family = experiment.family
    if not hasattr(family, "project"):
      raise ValueError(f"--mode=project needs a family that projects images (stylegan2); "
                       f"family {config.family!r} has none.")
    section = config.projection
    if not section.target:
      raise ValueError("--mode=project needs --config.projection.target=<an image file or a folder of images>.")
    if section.batch_size < 1:
      raise ValueError(f"projection.batch_size must be >= 1, got {section.batch_size}.")
    names, pixels = load_images(section.target, family.example_shape)
    low, high = config.data.value_range
    targets = low + (high - low) * pixels.astype(np.float32) / 255.0
    count, size = len(names), min(section.batch_size, len(names))
    padded = np.concatenate([targets, np.repeat(targets[-1:], -count % size, axis=0)])
    project_fn = jax.jit(family.project, out_shardings=parallel.replicated(experiment.mesh))
    params, key = experiment.sample_params(state), jax.random.key(section.seed)
    chunks = []
    for start in range(0, count, size):
      logging.info("Projecting targets %d-%d of %d.", start + 1, min(start + size, count), count)
      chunk = project_fn(params, state.model_state, jnp.asarray(padded[start:start + size]),
                         jax.random.fold_in(key, start))
      chunks.append(jax.device_get(chunk))
    result = jax.tree.map(lambda *parts: np.concatenate(parts)[:count], *chunks)
    unit = lambda x: np.clip(images.to_unit_range(x, (low, high)), 0.0, 1.0)
    mse = np.mean(np.square(unit(result.image) - unit(targets)), axis=(1, 2, 3))
    folder = experiment.workdir / "projections" / f"{step:07d}"
    paths = []
    if jax.process_index() == 0:
      rows = np.concatenate([targets[:, None], result.snapshots], axis=1)
      picture = images.render(rows.reshape(-1, *targets.shape[1:]), (low, high), rows.shape[1])
      paths.append(images.save_png(folder / "progress.png", picture))
      arrays = {"names": np.asarray(names), "targets": targets, "images": result.image,
                "ws": result.ws, "distances": result.distances,
                **{f"noise/{layer}": value for layer, value in result.noise.items()}}
      with (folder / "projections.npz").open("wb") as file:
        np.savez(file, **arrays)
      report = {name: {"mse": float(error), "psnr_db": float(10 * np.log10(1.0 / max(error, 1e-12)))}
                for name, error in zip(names, mse, strict=True)}
      (folder / "projections.json").write_text(json.dumps(
        {"step": step, "space": section.space, "num_steps": section.num_steps, "targets": report},
        indent=2))
      paths += [folder / "projections.npz", folder / "projections.json"]
    return paths
  finally:
    experiment.checkpointer.close()


def write_npz_stream(path: epath.Path, name: str, count: int, batches, **scalars) -> None:
  """Writes an .npz whose array `name` is the concatenation of `batches` ([n_i, ...] arrays, n_i
  summing to `count`) without holding them all in memory, plus the given scalars as 0-d arrays."""
  import zipfile

  class WriteOnly:  # remote files (gs://) may not tell their position; zipfile then streams
    def __init__(self, file):
      self.file, self.flush = file, file.flush

    def write(self, data) -> int:
      self.file.write(data)
      return len(data)

  path.parent.mkdir(parents=True, exist_ok=True)
  with path.open("wb") as file, zipfile.ZipFile(WriteOnly(file), "w", zipfile.ZIP_DEFLATED) as archive:
    with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
      written = 0
      for batch in batches:
        if written == 0:
          header = {"descr": np.lib.format.dtype_to_descr(batch.dtype), "fortran_order": False,
                    "shape": (count, *batch.shape[1:])}
          np.lib.format.write_array_header_2_0(member, header)
        member.write(np.ascontiguousarray(batch).tobytes())
        written += batch.shape[0]
      if written != count:
        raise RuntimeError(f"wrote {written} of {count} rows of {name} to {path}")
    for key, value in scalars.items():
      with archive.open(f"{key}.npy", "w") as member:
        np.lib.format.write_array(member, np.asarray(value))


def summary(config: ml_collections.ConfigDict) -> str:
  """The parameter table of each network and a last line `total_params=<N>`; trains nothing."""
  _check_config(config)
  info = dataset_info(config.data)
  family = get_family(config.family)(config, info, parallel.make_mesh())
  batch = dummy_batch(family.example_shape)
  params, _ = jax.eval_shape(functools.partial(family.init, batch=batch), jax.random.key(0))
  lines, total = [], 0
  for name, group in family.parameter_groups(params).items():
    count = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(group))
    total += count
    table = parameter_overview.get_parameter_overview(group, include_stats=False)
    lines += [f"{name}: {count:,} parameters", table]
  lines.append(f"total_params={total}")
  if lora.enabled(config.model):
    adapters, _ = lora.trainable_fraction(params)
    lines.append(f"lora_trainable_params={adapters} ({adapters / total:.2%} of the parameters)")
  return "\n".join(lines)


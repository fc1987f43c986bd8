"""Checkpoints through orbax: train state + data-iterator state + config snapshot, async and atomic.

Layout: <workdir>/checkpoints/<step>/{state, data, config}; the workdir may be local or remote
(`gs://...`), see genjax.paths. orbax writes each step into a temporary folder and renames it when
complete, so an interrupted save never shows up as a step.

Restoring tells two failures apart, and every process takes the same decision:
  * mismatch: the step is readable but holds a different state than this config builds (another
    network size, a `:tiny` config pointed at a full workdir, `optim.grad_clip_norm` added). This is
    a `CheckpointMismatchError` naming the first differing parameter path with both shapes;
    nothing is moved.
  * unreadable: its files cannot be read (truncated or corrupt bytes). In train mode the step is
    moved aside to <workdir>/checkpoints_unreadable/ with a warning and the previous step is used;
    a read-only checkpointer (eval and sample modes) raises `CheckpointUnreadableError` instead and
    never moves, deletes or writes anything.
"""

from __future__ import annotations

import json
import time
from typing import Any

import grain
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from orbax.checkpoint import checkpoint_managers

from genjax.paths import as_path

_READABLE, _MISMATCH, _UNREADABLE = 0, 1, 2
# Old steps are first renamed into checkpoints/<this>/ (atomic on local disks), then removed: a kill
# during orbax's file-by-file deletion left a listed step that could not be restored.
_TO_DELETE = "deleting"


class CheckpointMismatchError(ValueError):
  """A readable checkpoint holds a state of another structure or shape than this config builds."""


class CheckpointUnreadableError(RuntimeError):
  """A checkpoint's files cannot be read, and this checkpointer may not set the step aside."""


class _IteratorSnapshot:
  """The data iterator's state frozen at save time (async saves write it later)."""

  def __init__(self, iterator):
    self._state = json.dumps(iterator.get_state(), indent=2).encode()

  def get_state(self) -> bytes:
    return self._state


def _state_signature(abstract_state: Any) -> dict[str, tuple[tuple[int, ...], str]]:
  """{orbax parameter name: (shape, dtype)} of a state as orbax stores it (PRNG keys as key data)."""
  signature = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(abstract_state)[0]:
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      leaf = jax.eval_shape(jax.random.key_data, leaf)
    name = ".".join(str(getattr(key, "key", getattr(key, "name", getattr(key, "idx", key)))) for key in path)
    signature[name] = (tuple(leaf.shape), np.dtype(leaf.dtype).name)
  return signature


def _saved_signature(metadata_tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
  leaves = jax.tree.leaves(metadata_tree, is_leaf=lambda x: hasattr(x, "shape") and hasattr(x, "name"))
  return {leaf.name: (tuple(leaf.shape), np.dtype(leaf.dtype).name) for leaf in leaves}


def describe_mismatch(saved: dict, expected: dict) -> str | None:
  """The first difference between two {name: (shape, dtype)} signatures, in words, or None."""
  for name, (shape, dtype) in expected.items():
    if name not in saved:
      missing = [n for n in expected if n not in saved]
      return f"this config has `{name}` (shape {shape}), which the checkpoint lacks ({len(missing)} such)"
    if saved[name] != (shape, dtype):
      return (f"`{name}` is {saved[name][1]}{list(saved[name][0])} in the checkpoint but "
              f"{dtype}{list(shape)} in this config")
  extra = [name for name in saved if name not in expected]
  if extra:
    return f"the checkpoint has `{extra[0]}` (shape {saved[extra[0]][0]}), which this config lacks ({len(extra)} such)"
  return None


def _agree(local_outcome: int) -> int:
  """The worst outcome over all processes, so every process takes the same decision."""
  if jax.process_count() == 1:
    return local_outcome
  from jax.experimental import multihost_utils

  return int(np.max(multihost_utils.process_allgather(np.array(local_outcome, np.int32))))


class _BestRecorded(checkpoint_managers.PreservationPolicy):
  """Preserves the step with the best recorded value of one metric (none without records).

  Steps are saved before they are evaluated, so their metrics come later through
  `Checkpointer.record_metrics` and live in <workdir>/checkpoint_metrics.json, not in orbax.
  """

  def __init__(self, metric: str, sign: float, recorded: dict[int, dict[str, float]]):
    self.metric, self.sign, self.recorded = metric, sign, recorded

  def best_step(self, steps) -> int | None:
    scored = [(self.sign * self.recorded[step][self.metric], step)
              for step in steps if self.metric in self.recorded.get(step, {})]
    return max(scored)[1] if scored else None

  def should_preserve(self, checkpoints, *, context) -> list[bool]:
    best = self.best_step([info.step for info in checkpoints])
    return [info.step == best for info in checkpoints]


class Checkpointer:
  """Keeps the last `keep` steps, the steps in `preserve_steps` and, optionally, the best step by
  an eval metric.

  `read_only=True` (evaluation, sampling) opens the folder without creating, cleaning or moving
  anything; `save` is then an error.
  """

  def __init__(
    self,
    workdir: str | epath.PathLike,
    keep: int = 3,
    best_metric: str = "",
    best_mode: str = "min",
    async_save: bool = True,
    read_only: bool = False,
    preserve_steps: tuple[int, ...] = (),
  ):
    self.directory = as_path(workdir) / "checkpoints"
    self.read_only = read_only
    self._metrics_path = self.directory.parent / "checkpoint_metrics.json"
    self.recorded_metrics: dict[int, dict[str, float]] = (
      {int(step): values for step, values in json.loads(self._metrics_path.read_text()).items()}
      if self._metrics_path.exists() else {}
    )
    self._options = dict(keep=keep, best_metric=best_metric, best_mode=best_mode, async_save=async_save,
                         preserve_steps=tuple(preserve_steps))
    self.manager = self._make_manager()

  def _make_manager(self) -> ocp.CheckpointManager:
    keep, best_metric = self._options["keep"], self._options["best_metric"]
    policies = [checkpoint_managers.LatestN(keep)]
    if self._options["preserve_steps"]:
      policies.append(checkpoint_managers.CustomSteps(list(self._options["preserve_steps"])))
    if best_metric:
      sign = 1.0 if self._options["best_mode"] == "max" else -1.0
      self._best = _BestRecorded(best_metric, sign, self.recorded_metrics)
      policies.append(self._best)
    options = ocp.CheckpointManagerOptions(
      preservation_policy=checkpoint_managers.AnyPreservationPolicy(policies),
      enable_async_checkpointing=self._options["async_save"] and not self.read_only,
      cleanup_tmp_directories=not self.read_only,
      todelete_subdir=_TO_DELETE,
      create=not self.read_only,
      read_only=self.read_only,
    )
    return ocp.CheckpointManager(
      self.directory,
      item_names=("state", "data", "config"),
      item_handlers={
        "state": ocp.StandardCheckpointHandler(),
        "data": grain.checkpoint.CheckpointHandler(),
        "config": ocp.JsonCheckpointHandler(),
      },
      options=options,
    )

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def save(
    self,
    step: int,
    state: Any,
    data_iterator,
    config: ml_collections.ConfigDict,
    metrics: dict[str, float] | None = None,
  ) -> None:
    """Starts an (async) save of `state` at `step`; `metrics` (or a later `record_metrics`)
    feed the keep-best policy."""
    if self.read_only:
      raise RuntimeError(f"{self.directory} was opened read-only; it takes no new checkpoints.")
    if metrics is not None:
      self.record_metrics(step, metrics)
    if step in self.manager.all_steps():
      return
    self._remove_deleted_steps()
    args = ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      data=grain.checkpoint.CheckpointSave(_IteratorSnapshot(data_iterator)),
      config=ocp.args.JsonSave(config.to_dict()),
    )
    self.manager.save(step, args=args, force=True)

  def record_metrics(self, step: int, metrics: dict[str, float]) -> None:
    """Evaluation results of a saved (or about to be saved) step, for training.keep_best_by."""
    self.recorded_metrics[step] = {name: float(value) for name, value in metrics.items()}
    if self.read_only:
      return
    if jax.process_index() == 0:  # written aside, then renamed: a kill never leaves half a file
      partial = self._metrics_path.with_name(self._metrics_path.name + ".tmp")
      partial.write_text(json.dumps(self.recorded_metrics, indent=1))
      partial.replace(self._metrics_path)
    if self._options["best_metric"]:  # orbax prunes at saves only; this step may now be the best
      self.manager.wait_until_finished()
      steps = sorted(self.manager.all_steps())
      keep = {*steps[-self._options["keep"] :], self._best.best_step(steps), *self._options["preserve_steps"]}
      for old in steps:
        if old not in keep:
          self.manager.delete(old)

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def restore(self, abstract_state: Any, data_iterator=None, step: int | None = None) -> tuple[Any, int]:
    """Restores `step` (default: the newest readable one) into the shapes/shardings of abstract_state.

    The data iterator, when given, is set to continue after the saved batch.
    Raises CheckpointMismatchError when the step holds another state than abstract_state,
    CheckpointUnreadableError when a step's files are damaged and this checkpointer may not set it
    aside (read-only, or `step` asked for explicitly), and FileNotFoundError when no step is left.
    """
    steps = [step] if step is not None else sorted(self.manager.all_steps(), reverse=True)
    if not steps:
      raise FileNotFoundError(f"No checkpoint in {self.directory}.")
    expected = _state_signature(abstract_state)
    for candidate in steps:
      restored, outcome, detail = None, _READABLE, ""
      try:
        metadata = self.manager.item_metadata(candidate)["state"]
        difference = describe_mismatch(_saved_signature(metadata.tree), expected)
        if difference:
          outcome, detail = _MISMATCH, difference
      except Exception as error:  # noqa: BLE001 - unreadable metadata means damaged files
        outcome, detail = _UNREADABLE, f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
      if _agree(outcome) == _READABLE:
        items = {"state": ocp.args.StandardRestore(abstract_state)}
        if data_iterator is not None:
          items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        try:
          restored = self.manager.restore(candidate, args=ocp.args.Composite(**items))
        except Exception as error:  # noqa: BLE001 - the structure matched, so the bytes are bad
          outcome, detail = _UNREADABLE, f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
      agreed = _agree(outcome)
      if agreed == _READABLE:
        return restored["state"], candidate
      if agreed == _MISMATCH:
        raise CheckpointMismatchError(
          f"The checkpoint at step {candidate} in {self.directory} does not fit this config: "
          f"{detail or 'another process found a different state'}. The checkpoints are left as they "
          "are. Train this config in a new --workdir (add --config.init_from="
          f"{self.directory.parent} to start it from these weights where they fit), or run the "
          f"config the checkpoint was written with (saved in {self.directory / str(candidate) / 'config'})."
        )
      if self.read_only or step is not None:
        raise CheckpointUnreadableError(
          f"Checkpoint step {candidate} in {self.directory} is unreadable ({detail or 'on another process'}). "
          "Nothing was moved. Evaluate or sample an earlier step with --step=N, or run --mode=train, "
          "which sets damaged steps aside and resumes from the newest readable one."
        )
      self._set_aside(candidate, detail)
    raise FileNotFoundError(f"No readable checkpoint in {self.directory}.")

  def _remove_deleted_steps(self) -> None:
    """Removes the steps orbax renamed into checkpoints/deleting/, once no save is in flight."""
    self.manager.wait_until_finished()  # orbax's save would wait for the previous one too
    if jax.process_index() == 0 and (self.directory / _TO_DELETE).exists():
      (self.directory / _TO_DELETE).rmtree()

  def restored_config(self, step: int) -> dict:
    return self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]

  def _set_aside(self, step: int, detail: str) -> None:
    aside = self.directory.parent / "checkpoints_unreadable" / f"{step}-{int(time.time())}"
    logging.warning("Checkpoint step %d is unreadable (%s); moving it to %s and using the previous step.",
                    step, detail or "on another process", aside)
    if jax.process_index() == 0:
      aside.parent.mkdir(parents=True, exist_ok=True)
      (self.directory / str(step)).rename(aside)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils

      multihost_utils.sync_global_devices(f"genjax_set_aside_{step}")
    self.manager.close()
    self.manager = self._make_manager()

  def close(self) -> None:
    if not self.read_only:
      self._remove_deleted_steps()
    self.manager.wait_until_finished()
    self.manager.close()

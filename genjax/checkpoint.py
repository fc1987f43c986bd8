"""Checkpoints through orbax: train state + data-iterator state + config snapshot, async and atomic.

Layout: <workdir>/checkpoints/<step>/{state, data, config}. orbax writes each step into a temporary
folder and renames it when complete, so an interrupted save never shows up as a step. A step that is
complete but unreadable (a damaged disk, a truncated file) is moved aside to
<workdir>/checkpoints_unreadable/ with a warning, and the previous step is used.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import grain
import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint import checkpoint_managers


class _IteratorSnapshot:
  """The data iterator's state frozen at save time (async saves write it later)."""

  def __init__(self, iterator):
    self._state = json.dumps(iterator.get_state(), indent=2).encode()

  def get_state(self) -> bytes:
    return self._state


class Checkpointer:
  """Keeps the last `keep` steps and, optionally, the best step by an eval metric."""

  def __init__(
    self,
    workdir: str | Path,
    keep: int = 3,
    best_metric: str = "",
    best_mode: str = "min",
    async_save: bool = True,
  ):
    self.directory = Path(workdir).absolute() / "checkpoints"
    self._options = dict(keep=keep, best_metric=best_metric, best_mode=best_mode, async_save=async_save)
    self.manager = self._make_manager()

  def _make_manager(self) -> ocp.CheckpointManager:
    keep, best_metric = self._options["keep"], self._options["best_metric"]
    policies = [checkpoint_managers.LatestN(keep)]
    if best_metric:
      sign = 1.0 if self._options["best_mode"] == "max" else -1.0
      policies.append(
        checkpoint_managers.BestN(
          get_metric_fn=lambda metrics: sign * float(metrics.get(best_metric, float("-inf"))),
          n=1,
          keep_checkpoints_without_metrics=False,
        )
      )
    options = ocp.CheckpointManagerOptions(
      preservation_policy=checkpoint_managers.AnyPreservationPolicy(policies),
      enable_async_checkpointing=self._options["async_save"],
      cleanup_tmp_directories=True,
      create=True,
    )
    return ocp.CheckpointManager(
      self.directory,
      item_names=("state", "data", "config"),
      item_handlers={"data": grain.checkpoint.CheckpointHandler()},
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
    """Starts an (async) save of `state` at `step`; `metrics` feed the keep-best policy."""
    if step in self.manager.all_steps():
      return
    args = ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      data=grain.checkpoint.CheckpointSave(_IteratorSnapshot(data_iterator)),
      config=ocp.args.JsonSave(config.to_dict()),
    )
    self.manager.save(step, args=args, metrics=metrics, force=True)

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def restore(self, abstract_state: Any, data_iterator=None, step: int | None = None) -> tuple[Any, int]:
    """Restores `step` (default: the newest readable one) into the shapes/shardings of abstract_state.

    The data iterator, when given, is set to continue after the saved batch.
    Raises FileNotFoundError when there is no readable checkpoint.
    """
    steps = [step] if step is not None else sorted(self.manager.all_steps(), reverse=True)
    if not steps:
      raise FileNotFoundError(f"No checkpoint in {self.directory}.")
    for candidate in steps:
      items = {"state": ocp.args.StandardRestore(abstract_state)}
      if data_iterator is not None:
        items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
      try:
        restored = self.manager.restore(candidate, args=ocp.args.Composite(**items))
      except Exception as error:
        if step is not None:
          raise RuntimeError(f"Checkpoint step {step} in {self.directory} is unreadable: {error}") from error
        self._set_aside(candidate, error)
        continue
      return restored["state"], candidate
    raise FileNotFoundError(f"No readable checkpoint in {self.directory}.")

  def restored_config(self, step: int) -> dict:
    return self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]

  def _set_aside(self, step: int, error: Exception) -> None:
    aside = self.directory.parent / "checkpoints_unreadable" / f"{step}-{int(time.time())}"
    logging.warning(
      "Checkpoint step %d is unreadable (%s: %s); moving it to %s and using the previous step.",
      step, type(error).__name__, str(error).splitlines()[0][:300], aside,
    )
    if jax.process_index() == 0:
      aside.parent.mkdir(parents=True, exist_ok=True)
      shutil.move(str(self.directory / str(step)), str(aside))
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils

      multihost_utils.sync_global_devices(f"genjax_set_aside_{step}")
    self.manager.close()
    self.manager = self._make_manager()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()

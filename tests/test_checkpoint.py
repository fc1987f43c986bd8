"""Restore tells a mismatched network from damaged files, and never moves what it may not."""

import grain
import jax
import numpy as np
import pytest

from genjax.checkpoint import (
  Checkpointer,
  CheckpointMismatchError,
  CheckpointUnreadableError,
  describe_mismatch,
)
from genjax.config import base_config
from genjax.trainer import evaluate, sample, train_and_evaluate

SHORT = {"optim.schedule": "constant", "training.log_every": 10, "training.checkpoint_every": 10,
         "training.num_train_steps": 20, "eval.num_examples": 100, "eval.iwae_samples": 10,
         "eval.iwae_chunk": 10, "training.async_checkpoints": False}


def save_steps(directory, states: dict[int, dict]) -> None:
  iterator = iter(grain.MapDataset.range(10).to_iter_dataset())
  checkpointer = Checkpointer(directory, keep=10, async_save=False)
  for step, state in states.items():
    checkpointer.save(step, state, iterator, base_config())
  checkpointer.close()


def listing(directory) -> list[str]:
  return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def damage(step_dir) -> None:
  for path in (step_dir / "state").rglob("*"):
    if path.is_file():
      path.write_bytes(b"not a checkpoint")


def abstract(**shapes):
  return {name: jax.ShapeDtypeStruct(shape, np.float32) for name, shape in shapes.items()}


def test_a_changed_shape_names_the_parameter_and_moves_nothing(tmp_path):
  save_steps(tmp_path, {1: {"w": np.ones(3, np.float32)}, 2: {"w": np.ones(3, np.float32)}})
  before = listing(tmp_path)
  checkpointer = Checkpointer(tmp_path)
  with pytest.raises(CheckpointMismatchError, match=r"`w` is float32\[3\] in the checkpoint but float32\[4\]"):
    checkpointer.restore(abstract(w=(4,)))
  checkpointer.close()
  assert listing(tmp_path) == before  # every step still in place, nothing set aside


def test_a_changed_structure_is_named():
  saved = {"params.w": ((3,), "float32")}
  assert "this config has `params.v`" in describe_mismatch(saved, {**saved, "params.v": ((2,), "float32")})
  assert "the checkpoint has `params.w`" in describe_mismatch(saved, {})
  assert describe_mismatch(saved, dict(saved)) is None


def test_damaged_bytes_are_set_aside_in_train_mode_only(tmp_path):
  save_steps(tmp_path, {1: {"w": np.full(3, 1, np.float32)}, 2: {"w": np.full(3, 2, np.float32)}})
  damage(tmp_path / "checkpoints" / "2")
  before = listing(tmp_path)
  read_only = Checkpointer(tmp_path, read_only=True)
  with pytest.raises(CheckpointUnreadableError, match="step 2 .* unreadable.*Nothing was moved"):
    read_only.restore(abstract(w=(3,)))
  read_only.close()
  assert listing(tmp_path) == before
  training = Checkpointer(tmp_path)
  state, step = training.restore(abstract(w=(3,)))
  training.close()
  assert step == 1 and np.all(state["w"] == 1)
  assert [p.name.split("-")[0] for p in (tmp_path / "checkpoints_unreadable").iterdir()] == ["2"]


def test_read_only_checkpointer_refuses_to_save(tmp_path):
  save_steps(tmp_path, {1: {"w": np.ones(3, np.float32)}})
  checkpointer = Checkpointer(tmp_path, read_only=True)
  with pytest.raises(RuntimeError, match="read-only"):
    checkpointer.save(2, {"w": np.ones(3, np.float32)}, None, base_config())
  checkpointer.close()


@pytest.mark.slow
def test_runs_with_another_network_or_optimizer_fail_clearly_and_keep_every_checkpoint(load, tmp_path):
  train_and_evaluate(load("vae_mnist.py:tiny", **SHORT), tmp_path)
  before = listing(tmp_path / "checkpoints")
  wider = load("vae_mnist.py:tiny", **{**SHORT, "model.hidden": (300, 200), "training.num_train_steps": 30})
  with pytest.raises(CheckpointMismatchError, match=r"step 20 .*`params\.decoder\.Dense_1\.bias` is float32\[200\] in the checkpoint but float32\[300\].*new --workdir"):
    train_and_evaluate(wider, tmp_path)
  clipped = load("vae_mnist.py:tiny", **{**SHORT, "optim.grad_clip_norm": 1.0, "training.num_train_steps": 30})
  with pytest.raises(CheckpointMismatchError, match="opt_state"):
    train_and_evaluate(clipped, tmp_path)
  with pytest.raises(CheckpointMismatchError):
    evaluate(wider, tmp_path)
  with pytest.raises(CheckpointMismatchError):
    sample(wider, tmp_path)
  assert listing(tmp_path / "checkpoints") == before
  assert not (tmp_path / "checkpoints_unreadable").exists()
  damage(tmp_path / "checkpoints" / "20")
  config = load("vae_mnist.py:tiny", **SHORT)
  with pytest.raises(CheckpointUnreadableError):
    evaluate(config, tmp_path)
  with pytest.raises(CheckpointUnreadableError):
    sample(config, tmp_path)
  assert not (tmp_path / "checkpoints_unreadable").exists()
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["10", "20"]


@pytest.mark.slow
def test_continuing_past_the_end_names_the_learning_rate_change(load, tmp_path, caplog):
  """A cosine run of 20 steps continued to 40 rebuilds the schedule over 40 steps: at step 20 the
  rate is 1e-3 * (1 + cos(pi / 2)) / 2 = 5e-4 instead of the old horizon's 0 (end_lr_factor 0)."""
  overrides = {**SHORT, "optim.schedule": "cosine", "optim.end_lr_factor": 0.0, "optim.lr": 1e-3}
  train_and_evaluate(load("vae_mnist.py:tiny", **overrides), tmp_path)
  longer = load("vae_mnist.py:tiny", **{**overrides, "training.num_train_steps": 40})
  assert train_and_evaluate(longer, tmp_path)["step"] == 40
  assert "num_train_steps changed from 20 to 40" in caplog.text
  assert "at step 20 the rate is 0.0005 (it was 0 under the old horizon)" in caplog.text

"""The generic runner on the tiny VAE with real MNIST: learning, exact resume, checkpoints, NaNs,
preemption and the command-line modes."""

import json
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from conftest import REPO, run_cli

from genjax.checkpoint import Checkpointer
from genjax.datasets import dataset_info
from genjax.trainer import Experiment, NonFiniteError, evaluate_state, train_and_evaluate
from genjax.writers import read_metrics

SHORT = {  # a short run whose eval is cheap; constant lr so the schedule does not depend on the length
  "optim.schedule": "constant", "training.log_every": 10, "training.checkpoint_every": 20,
  "eval.num_examples": 200, "eval.iwae_samples": 20, "eval.iwae_chunk": 20,
  "training.async_checkpoints": False,
}


def restored(config, workdir, step=None):
  experiment = Experiment(config, workdir, dataset_info(config.data))
  state, step = experiment.restore(step=step)
  experiment.checkpointer.close()
  return state, step


def assert_same_tree(a, b):
  def raw(leaf):
    return jax.random.key_data(leaf) if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key) else leaf

  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(raw(x)), np.asarray(raw(y)))


def test_tiny_vae_learns_and_writes_its_outputs(load, tmp_path):
  config = load("vae_mnist.py:tiny")
  experiment = Experiment(config, tmp_path / "init", dataset_info(config.data))
  before = evaluate_state(experiment, experiment.init_state())
  experiment.checkpointer.close()
  after = train_and_evaluate(config, tmp_path / "run")
  assert after["step"] == 300
  assert before["eval/neg_elbo"] > 500  # a random decoder: ~log(2) nats per pixel
  assert after["eval/neg_elbo"] < before["eval/neg_elbo"] - 250, (before, after)
  assert after["eval/nll_iwae"] <= after["eval/neg_elbo"]  # the IWAE bound is tighter than the ELBO
  records = read_metrics(tmp_path / "run")
  losses = [r["train/loss"] for r in records if "train/loss" in r]
  assert len(losses) == 6 and losses[-1] < losses[0]
  assert any("steps_per_sec" in r for r in records)
  assert any(r.get("eval/neg_elbo") == after["eval/neg_elbo"] for r in records)
  for name in ("samples", "reconstructions", "interpolations"):
    assert (tmp_path / "run" / "samples" / f"{name}_0000300.png").is_file()
  assert list((tmp_path / "run").glob("events.out.tfevents.*"))
  saved = json.loads((tmp_path / "run" / "eval_300.json").read_text())
  assert saved["protocol"]["split"] == "test" and saved["protocol"]["eval"]["iwae_samples"] == 100


def test_resume_is_bitwise_exact(load, tmp_path):
  straight = train_and_evaluate(load("vae_mnist.py:tiny", **SHORT, **{"training.num_train_steps": 40}),
                                tmp_path / "straight")
  half = load("vae_mnist.py:tiny", **SHORT, **{"training.num_train_steps": 20})
  train_and_evaluate(half, tmp_path / "split")
  full = load("vae_mnist.py:tiny", **SHORT, **{"training.num_train_steps": 40})
  resumed = train_and_evaluate(full, tmp_path / "split")  # a larger num_train_steps continues the run
  state_a, _ = restored(full, tmp_path / "straight")
  state_b, _ = restored(full, tmp_path / "split")
  assert_same_tree(state_a, state_b)  # params, EMA, optimizer state, step and RNG key
  data_state = "checkpoints/40/data/process_0-of-1.json"
  assert (tmp_path / "straight" / data_state).read_text() == (tmp_path / "split" / data_state).read_text()
  assert straight["eval/neg_elbo"] == resumed["eval/neg_elbo"]


def test_max_train_minutes_ends_at_a_log_step_and_the_same_command_continues(load, tmp_path):
  """A time budget ends training like num_train_steps would (evaluated, saved, sampled) at the
  first log step past it; the same command then resumes, exactly as an uninterrupted run."""
  timed = load("vae_mnist.py:tiny", **SHORT, **{"training.num_train_steps": 40,
                                                "training.max_train_minutes": 1e-6})
  first = train_and_evaluate(timed, tmp_path / "timed")
  assert first["step"] == 10 and "eval/neg_elbo" in first  # the first log step
  assert (tmp_path / "timed" / "eval_10.json").is_file()
  assert (tmp_path / "timed" / "samples" / "samples_0000010.png").is_file()
  untimed = load("vae_mnist.py:tiny", **SHORT, **{"training.num_train_steps": 40})
  assert train_and_evaluate(untimed, tmp_path / "timed")["step"] == 40
  train_and_evaluate(untimed, tmp_path / "straight")
  assert_same_tree(restored(untimed, tmp_path / "timed")[0], restored(untimed, tmp_path / "straight")[0])


def test_unreadable_latest_checkpoint_falls_back_to_the_previous_one(load, tmp_path, caplog):
  overrides = {**SHORT, "training.num_train_steps": 40}
  train_and_evaluate(load("vae_mnist.py:tiny", **overrides), tmp_path / "run")
  for path in (tmp_path / "run" / "checkpoints" / "40" / "state").rglob("*"):
    if path.is_file():
      path.write_bytes(b"not a checkpoint")
  longer = load("vae_mnist.py:tiny", **{**overrides, "training.num_train_steps": 60})
  result = train_and_evaluate(longer, tmp_path / "run")
  assert result["step"] == 60
  assert "unreadable" in caplog.text and "previous step" in caplog.text
  assert [p.name.split("-")[0] for p in (tmp_path / "run" / "checkpoints_unreadable").iterdir()] == ["40"]
  train_and_evaluate(longer, tmp_path / "reference")
  assert_same_tree(restored(longer, tmp_path / "run")[0], restored(longer, tmp_path / "reference")[0])


def test_nan_stops_training_and_keeps_the_last_good_checkpoint(load, tmp_path):
  config = load("vae_mnist.py:tiny", **{**SHORT, "optim.name": "sgd", "optim.momentum": 0.0,
                                         "optim.lr": 1e5, "training.checkpoint_every": 1,
                                         "training.log_every": 1, "training.num_train_steps": 50})
  with pytest.raises(NonFiniteError, match=r"Training stopped at step (\d+)") as error:
    train_and_evaluate(config, tmp_path)
  failed_at = int(str(error.value).split("step ")[1].split(":")[0])
  checkpointer = Checkpointer(tmp_path)
  kept = checkpointer.latest_step()
  checkpointer.close()
  assert kept is not None and kept < failed_at
  assert f"last good checkpoint (step {kept})" in str(error.value)
  state, _ = restored(config, tmp_path)
  assert all(np.all(np.isfinite(np.asarray(leaf))) for leaf in jax.tree.leaves(state.params))


def test_keeps_the_last_n_and_the_best_checkpoint(tmp_path):
  import grain

  iterator = iter(grain.MapDataset.range(10).to_iter_dataset())
  checkpointer = Checkpointer(tmp_path, keep=2, best_metric="nll", best_mode="min", async_save=False)
  from genjax.config import base_config

  for step, nll in zip(range(1, 7), [5.0, 1.0, 4.0, 3.0, 6.0, 7.0]):
    checkpointer.save(step, {"w": np.full(3, step, np.float32)}, iterator, base_config(), {"nll": nll})
  checkpointer.wait()
  assert sorted(checkpointer.all_steps()) == [2, 5, 6]
  state, step = checkpointer.restore({"w": jax.ShapeDtypeStruct((3,), np.float32)})
  assert step == 6 and np.all(state["w"] == 6)
  checkpointer.close()


@pytest.mark.slow
def test_command_line_modes(data_env, tmp_path):
  config = ["--config=configs/vae_mnist.py:tiny", f"--workdir={tmp_path}",
            "--config.training.num_train_steps=60", "--config.training.checkpoint_every=30",
            "--config.eval.num_examples=200", "--config.eval.iwae_samples=10",
            "--config.eval.iwae_chunk=10"]
  train = run_cli(config, data_env)
  assert train.returncode == 0, train.stderr[-3000:]
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["30", "60"]
  evaluation = run_cli([*config, "--mode=eval"], data_env)
  assert evaluation.returncode == 0, evaluation.stderr[-3000:]
  result = json.loads((tmp_path / "eval_60.json").read_text())
  assert result["step"] == 60 and 80 < result["metrics"]["eval/neg_elbo"] < 400
  sampled = run_cli([*config, "--mode=sample", "--config.sampling.seed=7"], data_env)
  assert sampled.returncode == 0, sampled.stderr[-3000:]
  assert (tmp_path / "samples" / "samples_0000060_seed7.png").is_file()
  samples = np.load(tmp_path / "samples" / "samples_0000060_seed7.npz")["samples"]
  assert samples.shape == (64, 28, 28, 1) and 0 <= samples.min() and samples.max() <= 1
  summary = run_cli(["--config=configs/vae_mnist.py", "--mode=summary"], data_env)
  assert summary.returncode == 0 and summary.stdout.strip().splitlines()[-1] == "total_params=425284"
  missing = run_cli(["--config=configs/vae_mnist.py:tiny", f"--workdir={tmp_path / 'empty'}",
                     "--mode=eval"], data_env)
  assert missing.returncode == 1 and "No checkpoint" in missing.stderr and "--mode=train" in missing.stderr


@pytest.mark.slow
def test_sigterm_checkpoints_and_the_resumed_run_matches_a_straight_one(data_env, tmp_path, load):
  args = ["--config=configs/vae_mnist.py:tiny", "--config.optim.schedule=constant",
          "--config.training.checkpoint_every=100000", "--config.training.log_every=10",
          "--config.eval.num_examples=100", "--config.eval.iwae_samples=10",
          "--config.eval.iwae_chunk=10"]
  workdir = tmp_path / "preempted"
  process = subprocess.Popen(
    [sys.executable, "-m", "genjax.main", *args, f"--workdir={workdir}",
     "--config.training.num_train_steps=100000"],
    env=data_env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  deadline = time.time() + 240
  while not any("train/loss" in r for r in read_metrics(workdir)) and time.time() < deadline:
    time.sleep(0.5)
  process.send_signal(signal.SIGTERM)
  output, _ = process.communicate(timeout=120)
  assert process.returncode == 0, output[-3000:]
  assert "Preempted: checkpoint saved at step" in output
  stopped_at = int(output.split("Preempted: checkpoint saved at step ")[1].split(";")[0])
  assert 10 <= stopped_at < 100000
  target = stopped_at + 15
  resumed = run_cli([*args, f"--workdir={workdir}", f"--config.training.num_train_steps={target}"],
                    data_env)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  straight = run_cli([*args, f"--workdir={tmp_path / 'straight'}",
                      f"--config.training.num_train_steps={target}"], data_env)
  assert straight.returncode == 0, straight.stderr[-3000:]
  config = load("vae_mnist.py:tiny")
  assert_same_tree(restored(config, workdir)[0], restored(config, tmp_path / "straight")[0])


@pytest.mark.slow
def test_conv_vae_on_grey_levels_learns_and_keeps_its_best_checkpoint(load, tmp_path):
  config = load("conv_vae_mnist.py:tiny", **{"training.keep_checkpoints": 1})
  experiment = Experiment(config, tmp_path / "init", dataset_info(config.data))
  before = evaluate_state(experiment, experiment.init_state())
  experiment.checkpointer.close()
  after = train_and_evaluate(config, tmp_path / "run")
  assert after["eval/neg_elbo"] < before["eval/neg_elbo"] - 300, (before, after)
  evals = [r for r in read_metrics(tmp_path / "run") if "eval/neg_elbo" in r]
  assert [r["step"] for r in evals] == [100, 200]
  best = min(evals, key=lambda r: r["eval/neg_elbo"])["step"]
  checkpointer = Checkpointer(tmp_path / "run", keep=1, best_metric="neg_elbo")
  assert set(checkpointer.all_steps()) == {200, best}  # the latest one and the best by neg_elbo
  checkpointer.close()

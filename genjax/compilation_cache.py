"""JAX's persistent compilation cache, on by default, and how much compiling a process did.

A restarted run (preemption, a resumed job, the same config again) would otherwise compile every
step function again: minutes for the larger configs on a CPU, and a cost every preemptible TPU
restart pays. With the cache on, XLA executables are written to a folder keyed by the program,
the devices and the JAX/XLA versions, and a later process with the same program loads them.

The folder: `--compilation_cache=<dir>` (genjax.main), else $GENJAX_COMPILATION_CACHE, else
~/.cache/genjax/jax_compilation/<host CPU tag>; "none" turns the cache off. XLA:CPU compiles for
the host's instruction set, so the default folder is split by CPU model and features
(`host_cpu_tag`): a home directory shared by machines with different CPUs never hands one of them
code built for the other. A folder you name is used as it is. Python callers (a notebook calling
`trainer.train_and_evaluate`) get the same default when their first `Experiment` is built, unless
they set jax_compilation_cache_dir themselves. A `gs://` folder works too (JAX
reads and writes it through etils). Only compilations taking at least
$JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS (JAX's default: 1 s) are stored, so the folder holds
the step functions, not every small op.
"""

from __future__ import annotations

import hashlib
import os
import platform
import threading
from dataclasses import dataclass

import jax
from jax import monitoring
from jax.experimental.compilation_cache import compilation_cache as jax_compilation_cache

DEFAULT_DIR = "~/.cache/genjax/jax_compilation"
ENV_VAR = "GENJAX_COMPILATION_CACHE"
DISABLED = "none"

_BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"
_CACHE_MISS_EVENT = "/jax/compilation_cache/cache_misses"


def host_cpu_tag() -> str:
  """12 hex digits naming this host's CPU: a hash of the machine type and /proc/cpuinfo's model
  name and feature flags (of the first processor; the machine type alone where there is none)."""
  described = platform.machine()
  try:
    with open("/proc/cpuinfo") as cpuinfo:
      first = cpuinfo.read().split("\n\n", 1)[0]
    described += "".join(line for line in first.splitlines()
                         if line.startswith(("model name", "flags", "Features", "CPU part")))
  except OSError:
    pass
  return hashlib.sha256(described.encode()).hexdigest()[:12]


def resolve_cache_dir(flag_value: str | None = None) -> str | None:
  """The cache folder: the flag's value, else $GENJAX_COMPILATION_CACHE, else
  DEFAULT_DIR/<host_cpu_tag()> (user-expanded); None when the chosen value is "none"."""
  value = flag_value or os.environ.get(ENV_VAR) or f"{DEFAULT_DIR}/{host_cpu_tag()}"
  if value.strip().lower() == DISABLED:
    return None
  return value if "://" in value else os.path.abspath(os.path.expanduser(value))


_chosen = False  # whether this process has called `enable` (with a folder or with None)


def enable(directory: str | None) -> None:
  """Turns the persistent cache on in `directory` (None: leaves it off); counting
  (`compile_stats`) starts here too. Programs compiled before the call are not stored."""
  global _chosen
  _chosen = True
  _CompileStats.get()
  if directory is None or jax.config.jax_compilation_cache_dir == directory:
    return
  jax.config.update("jax_compilation_cache_dir", directory)
  # JAX decides at its first compilation whether the cache is used: let it decide again.
  jax_compilation_cache.reset_cache()


def enable_default() -> None:
  """`enable(resolve_cache_dir())` unless this process already chose (the command line's
  --compilation_cache, an earlier call) or set jax_compilation_cache_dir itself: Python and
  notebook users, who call the trainer directly, get the restarts the command line gets."""
  if not _chosen and jax.config.jax_compilation_cache_dir is None:
    enable(resolve_cache_dir())


@dataclass
class CompileStats:
  """What this process compiled since `enable`: seconds in XLA compilation (including loading
  from the cache), and the persistent cache's hits and misses."""

  compile_seconds: float = 0.0
  compilations: int = 0
  cache_hits: int = 0
  cache_misses: int = 0

  def describe(self) -> str:
    return (f"{self.compilations} XLA compilations took {self.compile_seconds:.1f} s; persistent "
            f"compilation cache: {self.cache_hits} hits, {self.cache_misses} misses")


class _CompileStats:
  """The process-wide listener behind `compile_stats` (JAX's monitoring listeners cannot be
  removed, so there is exactly one)."""

  _instance: _CompileStats | None = None

  def __init__(self):
    self.stats = CompileStats()
    self.lock = threading.Lock()
    monitoring.register_event_listener(self.on_event)
    monitoring.register_event_duration_secs_listener(self.on_duration)

  @classmethod
  def get(cls) -> _CompileStats:
    if cls._instance is None:
      cls._instance = cls()
    return cls._instance

  def on_event(self, event: str, **_) -> None:
    with self.lock:
      if event == _CACHE_HIT_EVENT:
        self.stats.cache_hits += 1
      elif event == _CACHE_MISS_EVENT:
        self.stats.cache_misses += 1

  def on_duration(self, event: str, seconds: float, **_) -> None:
    if event == _BACKEND_COMPILE_EVENT:
      with self.lock:
        self.stats.compile_seconds += seconds
        self.stats.compilations += 1


def compile_stats() -> CompileStats:
  """A copy of the counts since `enable` (zeros if it was never called)."""
  if _CompileStats._instance is None:
    return CompileStats()
  with _CompileStats._instance.lock:
    return CompileStats(**vars(_CompileStats._instance.stats))

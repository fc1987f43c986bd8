"""Devices, hosts and shardings: one `Mesh` code path from a CPU to a TPU pod.

The mesh has a single `data` axis over all devices of all processes. Batches are sharded along
their leading axis on it; parameters and optimizer state are replicated.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def initialize_distributed(
  coordinator_address: str = "", num_processes: int = 0, process_id: int = -1
) -> None:
  """Starts `jax.distributed` when launched as several processes.

  Arguments win over the environment (GENJAX_COORDINATOR, GENJAX_NUM_PROCESSES, GENJAX_PROCESS_ID).
  With nothing given, a single process runs as is; on Cloud TPU pods `jax.distributed.initialize()`
  discovers the topology itself when GENJAX_DISTRIBUTED=auto.
  """
  coordinator_address = coordinator_address or os.environ.get("GENJAX_COORDINATOR", "")
  num_processes = num_processes or int(os.environ.get("GENJAX_NUM_PROCESSES", "0"))
  if process_id < 0:
    process_id = int(os.environ.get("GENJAX_PROCESS_ID", "-1"))
  if coordinator_address:
    if num_processes <= 0 or process_id < 0:
      raise ValueError(
        "A multi-process launch needs --coordinator_address, --num_processes and --process_id "
        "(or GENJAX_COORDINATOR, GENJAX_NUM_PROCESSES, GENJAX_PROCESS_ID)."
      )
    # Cross-process collectives on CPU devices need gloo; GPU/TPU backends ignore this setting.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address, num_processes=num_processes, process_id=process_id)
  elif os.environ.get("GENJAX_DISTRIBUTED") == "auto":
    jax.distributed.initialize()


def make_mesh() -> Mesh:
  """A 1-D mesh over every device of every process, its axis named `data`."""
  return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over the `data` axis."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def local_batch_size(global_batch_size: int, what: str = "training.batch_size") -> int:
  """The per-process share of a global batch; it must divide over all devices.

  Raises a ValueError that names the nearest valid batch sizes otherwise.
  """
  devices = jax.device_count()
  if global_batch_size <= 0 or global_batch_size % devices:
    lower = max(devices, global_batch_size // devices * devices)
    raise ValueError(
      f"{what}={global_batch_size} does not divide over the {devices} devices "
      f"({jax.process_count()} process(es) x {jax.local_device_count()} local). Use a multiple of "
      f"{devices}, e.g. --config.{what}={lower} or {lower + devices}."
    )
  return global_batch_size // jax.process_count()


def global_batch(mesh: Mesh, local_batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
  """Assembles each process's local numpy batch into globally sharded jax.Arrays."""
  sharding = batch_sharded(mesh)
  return {
    key: jax.make_array_from_process_local_data(sharding, value) for key, value in local_batch.items()
  }


def to_host(tree):
  """Fetches a (replicated or sharded) pytree to numpy on every process."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)
  return jax.device_get(tree)

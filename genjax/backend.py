"""Every choice genjax makes for one backend only: XLA:CPU's flags and its convolution formulations.

GPU and TPU keep XLA's own ops and default flags: the flags below are XLA:CPU's (`xla_cpu_*`,
read by the CPU backend alone), and `uses_matmul_formulations` is False off the CPU.

XLA:CPU flags (`XLA_CPU_FLAGS`), set when genjax is imported (`configure_xla_flags`):
- `--xla_cpu_experimental_ynn_fusion_type=reduce`: YNNPACK for reductions only, not for dots,
  convolutions or elementwise fusions. jaxlib 0.10 also hands dots and convolutions to YNNPACK by
  default; on an earlier 2-core AMD EPYC (43-59 GFLOP/s float32 matmul) that made a 3x3
  convolution at 32x32x64, batch 64, 2x slower forward than PyTorch and lax's kernel gradient 12x
  slower, and the `ddpm_mnist` train step 22.4 s against 14.6 s with XLA's own (Eigen)
  convolutions. On a 2-core AMD EPYC with AVX-512 (440 GFLOP/s, 2026-12-04), YNNPACK's
  reductions alone (BatchNorm's statistics, above all) made the `dcgan_mnist` step 10% faster
  (139 -> 125 ms), `sr3_mnist` 14%, `cgan_mnist` 7%, `wgan_gp_mnist` 4% and the MNIST
  classifier's features 3.1x, and left the UNet, VAE and StyleGAN2 steps within 2%; there the full
  default still made `ddpm_mnist` 1.7x slower. The README's Speed section has the commands
  (`scripts/benchmark.py --profile` times a step by XLA operation). YNNPACK is the only kernel
  library this XLA:CPU hands work to: jaxlib 0.10.2 compiles the same program under the oneDNN and
  XNNPACK fusion flags (`scripts/benchmark.py`'s library_calls), and YNNPACK's convolutions made
  the `ddpm_mnist_fast` step 1.3-1.45x slower.
A flag the user already gives in XLA_FLAGS wins over genjax's value of it.
"""

from __future__ import annotations

import os

import jax
from absl import logging

XLA_CPU_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=reduce",)


def configure_xla_flags(environ=os.environ) -> tuple[str, ...]:
  """Add each of XLA_CPU_FLAGS that XLA_FLAGS does not already set (by name) to XLA_FLAGS, and
  return the added ones. XLA reads XLA_FLAGS when the first backend starts, so this must run
  before any JAX computation; afterwards it warns and changes nothing."""
  given = environ.get("XLA_FLAGS", "").split()
  given_names = {flag.split("=", 1)[0] for flag in given}
  added = tuple(flag for flag in XLA_CPU_FLAGS if flag.split("=", 1)[0] not in given_names)
  if not added:
    return ()
  from jax._src import xla_bridge  # no public API says whether a backend has started

  if xla_bridge.backends_are_initialized():
    logging.warning(
      "genjax was imported after JAX started its backend, so XLA:CPU runs without %s (slower "
      "convolutions and reductions on CPU). Import genjax before running any JAX computation, or "
      "put the flags in XLA_FLAGS yourself.", " ".join(added))
    return ()
  environ["XLA_FLAGS"] = " ".join([*given, *added])
  return added


def uses_matmul_formulations() -> bool:
  """genjax.models.conv's decision, made when a layer is traced: its matmul formulations of strided
  and transposed convolutions on XLA:CPU (jax.default_backend() == "cpu") only."""
  return jax.default_backend() == "cpu"

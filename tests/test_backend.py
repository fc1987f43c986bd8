"""genjax.backend: importing genjax sets XLA:CPU's flags before JAX starts, keeps the user's own
value of a flag, and the compiled CPU programs then hand reductions, and only reductions, to
YNNPACK."""

import json
import subprocess
import sys

from genjax import backend

PROBE = """
import json, os, genjax, jax, jax.numpy as jnp
x, w = jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 4, 4))
conv = jax.jit(lambda x, w: jax.lax.conv_general_dilated(
  x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
dense = jax.jit(lambda a: jnp.tanh(a @ a)).lower(jnp.ones((64, 64)))
reduction = jax.jit(lambda a: jnp.sum(a, axis=(0, 1, 2))).lower(jnp.ones((64, 16, 16, 64)))
hlo = conv.lower(x, w).compile().as_text() + dense.compile().as_text()
print(json.dumps({"xla_flags": os.environ["XLA_FLAGS"], "ynn": "ynn" in hlo,
                  "ynn_reduction": "ynn" in reduction.compile().as_text(),
                  "devices": jax.device_count()}))
"""


def _probe(xla_flags: str | None) -> dict:
  env = {"PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu"}
  if xla_flags is not None:
    env["XLA_FLAGS"] = xla_flags
  result = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                          check=True)
  return json.loads(result.stdout.strip().splitlines()[-1])


def test_importing_genjax_keeps_ynnpack_to_reductions_and_keeps_other_flags():
  probe = _probe("--xla_force_host_platform_device_count=2")
  assert probe["xla_flags"].split() == ["--xla_force_host_platform_device_count=2",
                                        *backend.XLA_CPU_FLAGS]
  assert probe["devices"] == 2
  assert not probe["ynn"]  # convolutions and dots are XLA's own
  assert probe["ynn_reduction"]


def test_a_users_own_value_of_a_flag_wins():
  probe = _probe("--xla_cpu_experimental_ynn_fusion_type=dot")
  assert probe["xla_flags"] == "--xla_cpu_experimental_ynn_fusion_type=dot"
  assert probe["ynn"]  # the user's YNNPACK dot fusion is compiled
  assert not probe["ynn_reduction"]  # and genjax's reduction fusion is not added


def test_too_late_a_call_changes_nothing_and_says_so(caplog):
  import jax.numpy as jnp

  jnp.ones(2).block_until_ready()  # the backend has started
  environ = {"XLA_FLAGS": ""}
  assert backend.configure_xla_flags(environ) == ()
  assert environ == {"XLA_FLAGS": ""}
  assert "imported after JAX started its backend" in caplog.text


LIBRARY_CALLS_PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
import jax, jax.numpy as jnp
from benchmark import library_calls  # defines absl flags: its own process, not the test's
reduction = jax.jit(lambda a: jnp.sum(jnp.tanh(a), axis=(0, 1, 2)))
dense = jax.jit(lambda a: jnp.tanh(a @ a))
custom = ('  %custom-call.3 = f32[8,8]{1,0} custom-call(f32[8,8]{1,0} %p), '
          'custom_call_target="__onednn$matmul", backend_config=""')
print(json.dumps([library_calls(reduction.lower(jnp.ones((8, 16, 16, 64))).compile().as_text()),
                  library_calls(dense.lower(jnp.ones((64, 64))).compile().as_text()),
                  library_calls("ENTRY %main {\\n" + custom + "\\n}")]))
"""


def test_benchmark_library_calls_say_what_the_compiled_program_hands_to_ynnpack():
  """scripts/benchmark.py's library_calls: genjax's flags give YNNPACK the reduction and not the
  matmul; a custom call is counted under its target."""
  from conftest import REPO

  env = {"PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu"}
  result = subprocess.run([sys.executable, "-c", LIBRARY_CALLS_PROBE, str(REPO / "scripts")],
                          env=env, capture_output=True, text=True, check=True)
  reduction, dense, custom = json.loads(result.stdout.strip().splitlines()[-1])
  assert reduction == {"__ynn_fusion": {"reduce": 1}}
  assert dense == {}
  assert custom == {"__onednn$matmul": {"custom-call": 1}}

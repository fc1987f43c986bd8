"""scripts/sampler_error.py: with the exact Gaussian score, the second-order DPM-Solver++ needs
fewer network evaluations than DDIM for a smaller error."""

import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
from sampler_error import sampler_errors


def test_dpm_solver_beats_ddim_with_half_the_evaluations():
  rows = list(sampler_errors("vp", dim=16, count=5000, nfe_targets=[10, 20], seed=0,
                             samplers=("ddim", "dpm_solver")))
  error = {(r["sampler"], r["nfe"]): r["frechet_distance"] for r in rows}
  floor = error[("data", 0)]
  assert floor < 0.01  # 5000 exact samples
  assert error[("ddim", 10)] > error[("ddim", 20)] > 2 * floor  # first order: visible at 20 NFE
  assert error[("dpm_solver", 10)] < 0.25 * error[("ddim", 20)]
  assert error[("dpm_solver", 10)] < 5 * floor

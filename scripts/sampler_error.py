"""Each sampler's error against its network evaluations (NFE), with the exact score of Gaussian data.

  python scripts/sampler_error.py [--process=vp] [--dim=16] [--count=20000] [--nfe=10,20,50,100]

The data are N(mu, Sigma) in --dim dimensions with an image-like 1/k spectrum
(genjax.diffusion.gaussian.image_like_gaussian); every sampler is driven by the closed-form noise
prediction, so the only error left is the sampler's own. The error is the Frechet distance
(squared, as FID) between the --count samples' mean and covariance and the data's; with the same
prior noise seed for every sampler. The floor from drawing --count exact samples is printed as the
"data" row. One JSON line per (sampler, NFE), then a table. Higher-order samplers (dpm_solver,
heun, ode) should reach a given error with fewer evaluations than ddim or ancestral.
"""

from __future__ import annotations

import json

import jax
import numpy as np
from absl import app, flags

from genjax.diffusion.gaussian import gaussian_eps, image_like_gaussian
from genjax.diffusion.processes import make_process
from genjax.diffusion.samplers import make_sampler, network_evaluations
from genjax.evaluation.frechet import frechet_distance
from genjax.families import family_config

_PROCESS = flags.DEFINE_string("process", "vp", "diffusion.process: ddpm, vp, subvp, ve or edm.")
_DIM = flags.DEFINE_integer("dim", 16, "Data dimension.")
_COUNT = flags.DEFINE_integer("count", 20000, "Samples per (sampler, NFE).")
_NFE = flags.DEFINE_list("nfe", ["10", "20", "50", "100"], "Target network evaluations per sample.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the data's mean/covariance and of the samplers.")

# sampler name -> (sampling settings, steps for a target NFE)
SAMPLER_SETTINGS = {
  "ancestral": ({}, lambda nfe: nfe),
  "ddim": ({"eta": 0.0}, lambda nfe: nfe),
  "dpm_solver": ({}, lambda nfe: nfe),
  "heun": ({"churn": 0.0}, lambda nfe: (nfe + 1) // 2),
  "ode": ({"adaptive": False, "ode_solver": "heun"}, lambda nfe: (nfe - 1) // 2 + 1),
  "pc": ({"corrector_steps": 1}, lambda nfe: (nfe - 1) // 2 + 1),
}


def sampler_errors(process_name: str, dim: int, count: int, nfe_targets: list[int], seed: int,
                   samplers: tuple[str, ...] = tuple(SAMPLER_SETTINGS)):
  """Yields rows {sampler, nfe, frechet_distance} (and a 'data' row: the sampling floor)."""
  config = family_config("diffusion")
  config.diffusion.process = process_name
  process = make_process(config.diffusion)
  mean, cov = image_like_gaussian(dim, seed)
  eps = gaussian_eps(process, mean, cov)

  def distance(samples: np.ndarray) -> float:
    samples = np.asarray(samples, np.float64)
    return float(frechet_distance(samples.mean(0), np.cov(samples.T), mean, cov))

  exact = np.random.default_rng(seed).multivariate_normal(mean, cov, size=count)
  yield {"sampler": "data", "nfe": 0, "frechet_distance": distance(exact)}
  for name in samplers:
    settings, steps_for = SAMPLER_SETTINGS[name]
    for target in nfe_targets:
      sampling = config.sampling.copy_and_resolve_references()
      sampling.update(settings)
      sampling.num_steps = max(steps_for(target), 2)
      try:
        sampler = make_sampler(name, process, sampling)
      except ValueError:  # e.g. a continuous-only sampler with the discrete ddpm process
        break
      samples = jax.jit(lambda rng, sampler=sampler: sampler(eps, rng, (count, dim)))(
        jax.random.key(seed)
      )
      yield {"sampler": name, "nfe": network_evaluations(name, sampling),
             "frechet_distance": distance(samples)}


def main(argv):
  del argv
  rows = []
  nfe_targets = [int(n) for n in _NFE.value]
  for row in sampler_errors(_PROCESS.value, _DIM.value, _COUNT.value, nfe_targets, _SEED.value):
    row.update(process=_PROCESS.value, dim=_DIM.value, count=_COUNT.value)
    print(json.dumps(row), flush=True)
    rows.append(row)
  print(f"\nFrechet distance to N(mu, Sigma), process {_PROCESS.value}, dim {_DIM.value}:")
  for name in dict.fromkeys(r["sampler"] for r in rows):
    cells = ", ".join(f"NFE {r['nfe']}: {r['frechet_distance']:.4f}" for r in rows if r["sampler"] == name)
    print(f"  {name:>10}  {cells}")


if __name__ == "__main__":
  app.run(main)

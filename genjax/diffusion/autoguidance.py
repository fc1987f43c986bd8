"""Autoguidance: a denoiser guided by a worse version of itself (Karras et al. 2024, "Guiding a
Diffusion Model with a Bad Version of Itself").

With the sampled network F and a guide network F_guide (here: an earlier checkpoint of the same
run, so the same architecture, trained less), every network evaluation becomes

    F_w(x, t) = (1 + w) F(x, t) - w F_guide(x, t),        w = sampling.autoguidance >= 0,

the classifier-free-guidance form with the guide in place of the unconditional model (Karras et
al.'s weight is 1 + w; w = 0 is the unguided network). D, eps, v and the score are affine in the
network output with coefficients that do not depend on it (genjax.diffusion.objectives.Denoiser),
so extrapolating the outputs extrapolates each of them the same way, eps_w = (1 + w) eps - w
eps_guide included, and every sampler, edit and restoration that evaluates the network is guided.
Each evaluation costs two network calls.

`Autoguided` carries both parameter sets and the weight as one pytree: the runner hands it to the
family's sampling hooks in place of the parameters (genjax.trainer.Experiment.sample_params), so
compiled samplers take it as an argument and a new weight needs no recompilation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.struct
import jax


@flax.struct.dataclass
class Autoguided:
  """model: the sampled parameters; guide: the guide's (same structure); weight: w, a scalar."""

  model: Any
  guide: Any
  weight: jax.Array


def extrapolated(network: Callable[..., jax.Array], guide: Callable[..., jax.Array],
                 weight: jax.Array) -> Callable[..., jax.Array]:
  """(args) -> (1 + w) network(args) - w guide(args), for two networks of the same signature."""

  def apply(*args):
    return (1.0 + weight) * network(*args) - weight * guide(*args)

  return apply

"""Min-SNR-gamma loss weights (diffusion.min_snr_gamma, genjax.diffusion.objectives): each weighted
loss equals min(SNR, gamma) |x_0_hat - x_0|^2 computed from the network's x_0 estimate directly."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from genjax.diffusion import objectives
from genjax.diffusion.processes import broadcast_per_example, make_process
from genjax.families import family_config


def diffusion_settings(**overrides) -> ml_collections.ConfigDict:
  """The diffusion family's default `diffusion` settings with `overrides`."""
  settings = family_config("diffusion").diffusion
  settings.update(overrides)
  return settings


def stand_in_network(x, c_noise):
  """A fixed, t-dependent, nonlinear stand-in for a denoising network: [B, 4] -> [B, 4]."""
  weights = jnp.asarray(np.random.default_rng(0).normal(size=(4, 4)), jnp.float32) / 2
  return jnp.tanh(x @ weights) * (1.0 + 0.001 * c_noise[:, None])


@pytest.mark.parametrize(
  "process, objective", [("ddpm", "eps"), ("ddpm", "v"), ("vp", "eps"), ("vp", "v"), ("vp", "dsm")]
)
def test_min_snr_losses_are_the_clipped_snr_weighted_x0_error(process, objective):
  gamma = 5.0
  config = diffusion_settings(process=process, objective=objective, min_snr_gamma=gamma)
  proc = make_process(config)
  objectives.check_objective(proc, config)
  denoiser = objectives.Denoiser(proc, objective)
  x0 = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, size=(64, 4)), jnp.float32)
  # times spread from nearly clean (SNR in the thousands) to pure noise (SNR ~ 0)
  if proc.discrete:
    t = jnp.linspace(0, proc.t_max, 64).astype(jnp.int32)
  else:
    t = jnp.linspace(proc.t_min, proc.t_max, 64)
  rng = jax.random.key(3)
  loss = objectives.per_example_loss(denoiser, stand_in_network, x0, rng, config, t=t)

  # the same draw of noise as per_example_loss, then x_0_hat from eps_hat as every sampler does
  noise = jax.random.normal(jax.random.split(rng)[1], x0.shape)
  alpha, sigma = (broadcast_per_example(v, x0) for v in proc.marginal(t))
  xt = alpha * x0 + sigma * noise
  eps_hat = denoiser.eps(stand_in_network, xt, t)
  x0_hat = (xt - sigma * eps_hat) / alpha
  snr = (alpha[:, 0] / sigma[:, 0]) ** 2
  expected = jnp.minimum(snr, gamma) * jnp.mean((x0_hat - x0) ** 2, axis=1)
  np.testing.assert_allclose(loss, expected, rtol=2e-3, atol=1e-7)
  assert float(snr.max()) > 100 * gamma and float(snr.min()) < gamma / 100  # both sides of the clip

  # against the plain objective (gamma = 0): steps with SNR <= gamma keep the weight 1 (eps, dsm)
  # or SNR / (SNR + 1) (v); the clipped ones weigh less
  plain = objectives.per_example_loss(
    denoiser,
    stand_in_network,
    x0,
    rng,
    diffusion_settings(process=process, objective=objective),
    t=t,
  )
  clipped = snr > gamma
  assert not np.allclose(loss[clipped], plain[clipped], rtol=1e-2)
  divisor = snr + 1 if objective == "v" else snr
  np.testing.assert_allclose(
    loss[~clipped], plain[~clipped] * snr[~clipped] / divisor[~clipped], rtol=1e-4
  )


@pytest.mark.parametrize(
  "overrides, message",
  [
    ({"min_snr_gamma": -1.0}, "must be >= 0"),
    ({"process": "edm", "objective": "edm", "min_snr_gamma": 5.0}, "Set diffusion.min_snr_gamma=0"),
    (
      {"process": "vp", "objective": "dsm", "likelihood_weighting": True, "min_snr_gamma": 5.0},
      "Set diffusion.min_snr_gamma=0",
    ),
  ],
)
def test_min_snr_settings_that_make_no_sense_are_refused(overrides, message):
  config = diffusion_settings(**overrides)
  with pytest.raises(ValueError, match=message):
    objectives.check_objective(make_process(config), config)

"""Adversarial losses on discriminator logits, selected by `model.loss`.

Every loss takes the discriminator's raw outputs d_real = D(x) [B] and d_fake = D(G(z)) [B] and
returns batch means. With sigma the logistic function and softplus(t) = log(1 + e^t):

  minimax          (Goodfellow et al. 2014)  L_D = -log sigma(d_real) - log(1 - sigma(d_fake))
                                             L_G = log(1 - sigma(d_fake))             (saturating)
  non_saturating   (Goodfellow et al. 2014)  L_D as minimax, L_G = -log sigma(d_fake)
  least_squares    (Mao et al. 2017, a=0, b=c=1)
                                             L_D = (d_real - 1)^2 / 2 + d_fake^2 / 2
                                             L_G = (d_fake - 1)^2 / 2
  wasserstein      (Arjovsky et al. 2017)    L_D = d_fake - d_real, L_G = -d_fake
                                             (needs a Lipschitz critic: gradient penalty or SN)
  hinge            (Lim & Ye 2017; Miyato et al. 2018)
                                             L_D = relu(1 - d_real) + relu(1 + d_fake)
                                             L_G = -d_fake
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from genjax.registry import Registry


class AdversarialLoss(NamedTuple):
  """discriminator(d_real [B], d_fake [B]) -> scalar; generator(d_fake [B]) -> scalar."""

  discriminator: callable
  generator: callable


LOSSES: Registry[AdversarialLoss] = Registry("GAN loss")


def _logistic_discriminator(d_real: jax.Array, d_fake: jax.Array) -> jax.Array:
  # -log sigma(t) = softplus(-t) and -log(1 - sigma(t)) = softplus(t), computed stably.
  return jnp.mean(jax.nn.softplus(-d_real) + jax.nn.softplus(d_fake))


LOSSES.register("minimax")(
  AdversarialLoss(
    discriminator=_logistic_discriminator,
    generator=lambda d_fake: jnp.mean(-jax.nn.softplus(d_fake)),
  )
)

LOSSES.register("non_saturating")(
  AdversarialLoss(
    discriminator=_logistic_discriminator,
    generator=lambda d_fake: jnp.mean(jax.nn.softplus(-d_fake)),
  )
)

LOSSES.register("least_squares")(
  AdversarialLoss(
    discriminator=lambda d_real, d_fake: jnp.mean(0.5 * (d_real - 1.0) ** 2 + 0.5 * d_fake**2),
    generator=lambda d_fake: jnp.mean(0.5 * (d_fake - 1.0) ** 2),
  )
)

LOSSES.register("wasserstein")(
  AdversarialLoss(
    discriminator=lambda d_real, d_fake: jnp.mean(d_fake - d_real),
    generator=lambda d_fake: -jnp.mean(d_fake),
  )
)

LOSSES.register("hinge")(
  AdversarialLoss(
    discriminator=lambda d_real, d_fake: jnp.mean(
      jax.nn.relu(1.0 - d_real) + jax.nn.relu(1.0 + d_fake)
    ),
    generator=lambda d_fake: -jnp.mean(d_fake),
  )
)

"""genjax: generative image models (VAEs, GANs, score-based diffusion) in JAX/Flax.

Not related to the probabilistic-programming package published on PyPI as `genjax`.
"""

__version__ = "0.1.0"

from genjax.backend import configure_xla_flags

configure_xla_flags()  # XLA:CPU's flags (genjax.backend), before any JAX computation starts

"""genjax: generative image models (VAEs, GANs, score-based diffusion) in JAX/Flax.

Not related to the probabilistic-programming package published on PyPI as `genjax`.
"""

__version__ = "0.1.0"

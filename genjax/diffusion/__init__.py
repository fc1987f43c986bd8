"""Score-based diffusion: processes, objectives, samplers, likelihoods and controllable
generation."""

"""VAE math: observation likelihoods p(x|z), the Gaussian KL, the IWAE bound, and the config keys."""

"""The one-stochastic-layer VAE of Burda et al. 2016 (IWAE paper, Table 1, k=1: test NLL 86.76 nats).

784-200-200 tanh encoder to 50 Gaussian latents, the mirrored decoder with Bernoulli outputs, trained
with Adam on dynamically binarized MNIST. Evaluated on the MNIST test set (binarized once with
eval.seed) by the negative ELBO and the importance-weighted NLL estimate with k = 5000.

  python -m genjax.main --config=configs/vae_mnist.py --workdir=/tmp/vae_mnist
  python -m genjax.main --config=configs/vae_mnist.py:quick --workdir=/tmp/vae_quick # ~5 min on CPU
  python -m genjax.main --config=configs/vae_mnist.py:tiny --workdir=/tmp/vae_tiny   # ~1 min on CPU

Expected (README results table): test NLL (IWAE, k=5000) <= 88 nats after the 30-minute run on a
2-core CPU; the paper reports 86.76 after 3280 epochs.
"""

from genjax.families import family_config


def get_config(arg: str = ""):
  # The family defaults are this model: 784-200-200-50 tanh MLPs, Bernoulli p(x|z), dynamic
  # binarization, beta = 1, IWAE with k = 5000 in chunks of 500.
  config = family_config("vae")
  config.data.name = "mnist"

  config.optim.name = "adam"
  config.optim.lr = 1e-3
  config.optim.b2 = 0.999
  config.optim.eps = 1e-4
  config.optim.schedule = "cosine"
  config.optim.end_lr_factor = 0.05

  training = config.training
  training.batch_size = 100
  training.num_train_steps = 300_000
  training.log_every = 1000
  training.checkpoint_every = 20_000

  config.eval.batch_size = 100

  if arg == "quick":  # the README's first run: ~20 epochs, IWAE with k=500 on the whole test set
    training.num_train_steps = 12_000
    training.checkpoint_every = 4000
    config.eval.iwae_samples = 500
  elif arg == "tiny":
    training.num_train_steps = 300
    training.log_every = 50
    training.checkpoint_every = 150
    config.eval.num_examples = 1000
    config.eval.iwae_samples = 100
    config.eval.iwae_chunk = 50
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use 'quick', 'tiny' or nothing.")
  return config

"""A class-conditional DCGAN on MNIST (32x32): conditional batch norm in G, projection D.

The nets of dcgan_mnist.py made class-conditional as in Miyato & Koyama 2018: every batch norm of G
takes a per-class gain and bias, and D adds <embed(y), phi(x)> to its logit, phi(x) the flattened
4x4x256 features. Spectral normalization on D and the hinge loss (the cGAN setting of that paper),
Adam 2e-4 (b1 0.5, b2 0.999), batch 64, EMA 0.999 of G. D sees real digits with their labels and
fakes generated for the same labels; G updates draw labels uniformly.

  python -m genjax.main --config=configs/cgan_mnist.py --workdir=/tmp/cgan_mnist
  python -m genjax.main --config=configs/cgan_mnist.py:tiny --workdir=/tmp/cgan_tiny  # ~1 min

Expected: samples/class_conditional_<step>.png shows row k drawing digit k after the 10,000-step run
(wall time in the README results table once measured); the tiny run only shows blobs.
"""

from genjax.families.gan import gan_base_config


def get_config(arg: str = ""):
  config = gan_base_config()
  config.data.name = "mnist"
  config.data.image_size = 32
  config.data.value_range = (-1.0, 1.0)

  model = config.model
  model.name = "cdcgan_projection_mnist"
  model.network = "dcgan"
  model.conditional = True
  model.latent_dim = 100
  model.g_features = (256, 128, 64)
  model.d_features = (64, 128, 256)
  model.g_norm = "batch"
  model.d_norm = "none"
  model.spectral_norm = True
  model.loss = "hinge"

  config.optim.lr = 2e-4
  config.optim.d_lr = 2e-4
  config.optim.b1 = 0.5
  config.optim.b2 = 0.999
  config.optim.ema_decay = 0.999

  training = config.training
  training.batch_size = 64
  training.num_train_steps = 10_000
  training.log_every = 200
  training.checkpoint_every = 2_000
  training.sample_every = 1_000
  training.max_d_loss = 100.0

  config.eval.batch_size = 500
  config.eval.num_examples = 10_000
  config.sampling.num_samples = 64

  if arg == "tiny":
    model.g_features = (64, 32, 16)
    model.d_features = (16, 32, 64)
    training.num_train_steps = 300
    training.log_every = 50
    training.checkpoint_every = 150
    training.sample_every = 0
    config.optim.ema_decay = 0.99
    config.eval.num_examples = 1_000
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use 'tiny' or nothing.")
  return config

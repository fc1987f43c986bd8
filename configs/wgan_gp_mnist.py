"""WGAN-GP (Gulrajani et al. 2017) on MNIST zero-padded to 32x32, with the nets of dcgan_mnist.py.

G as in dcgan_mnist.py (1,066,881 parameters); the critic is the same D without batch norm (a
gradient penalty needs examples that do not interact; 660,929 parameters). Wasserstein loss,
gradient penalty 10, 5 critic updates per generator update, Adam 1e-4 (b1 0.5, b2 0.9, as in the
paper's MNIST code) for both, 64 images per update: training.batch_size = 5 x 64 = 320 real images
per step, each critic update on its own 64. EMA 0.999 of G.

  python -m genjax.main --config=configs/wgan_gp_mnist.py --workdir=/tmp/wgan_gp_mnist
  python -m genjax.main --config=configs/wgan_gp_mnist.py:tiny --workdir=/tmp/wgan_gp_tiny  # ~1 min

Expected: recognizable digits in samples/samples_<step>.png after the 5,000-step run (wall time
in the README results table once measured); train/d_adversarial (minus the critic's Wasserstein
estimate) shrinking towards 0.
"""

from genjax.families.gan import gan_base_config


def get_config(arg: str = ""):
  config = gan_base_config()
  config.data.name = "mnist"
  config.data.image_size = 32
  config.data.value_range = (-1.0, 1.0)

  model = config.model
  model.name = "wgan_gp_mnist"
  model.network = "dcgan"
  model.latent_dim = 100
  model.g_features = (256, 128, 64)
  model.d_features = (64, 128, 256)
  model.g_norm = "batch"
  model.d_norm = "none"
  model.loss = "wasserstein"
  model.gradient_penalty = 10.0
  model.n_critic = 5

  config.optim.lr = 1e-4
  config.optim.d_lr = 1e-4
  config.optim.b1 = 0.5
  config.optim.b2 = 0.9
  config.optim.ema_decay = 0.999

  training = config.training
  training.batch_size = 5 * 64
  training.num_train_steps = 5_000
  training.log_every = 100
  training.checkpoint_every = 1_000
  training.sample_every = 500
  training.max_d_loss = 1_000.0

  config.eval.batch_size = 500
  config.eval.num_examples = 10_000
  config.sampling.num_samples = 64

  if arg == "tiny":
    model.g_features = (64, 32, 16)
    model.d_features = (16, 32, 64)
    training.batch_size = 5 * 32
    training.num_train_steps = 100
    training.log_every = 25
    training.checkpoint_every = 50
    training.sample_every = 0
    config.optim.ema_decay = 0.99
    config.eval.num_examples = 1_000
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use 'tiny' or nothing.")
  return config

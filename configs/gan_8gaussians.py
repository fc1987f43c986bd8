"""A GAN on the ring of 8 Gaussians (radius 2, std 0.02): the mode-collapse benchmark of Metz et
al. 2017 (unrolled GANs) and Srivastava et al. 2017 (VEEGAN).

MLP G (z = 16 -> 128 -> 128 -> 2, ReLU) and D (2 -> 128 -> 128 -> 1, leaky ReLU), hinge loss with
a gradient penalty (weight 1) on D, Adam (lr 1e-3, b1 0.5, b2 0.99) for both, batch 256, EMA 0.99
of G for evaluation. (In our runs the non-saturating loss with R1 covered only 4-5 of the 8 modes
after the same 4,000 steps; this choice covers all 8.) Evaluated as in the papers on 2,500
generated points, by the sample metric raw_modes (genjax.evaluation.mode_coverage, with the
mixture from the dataset's DatasetInfo): high_quality = fraction within 3 std of a mode,
modes_covered = modes that receive at least 1/5 of their share of the high-quality points.

  python -m genjax.main --config=configs/gan_8gaussians.py --workdir=/tmp/gan_8gaussians
  python -m genjax.main --config=configs/gan_8gaussians.py:tiny --workdir=/tmp/gan_8g_tiny  # ~1 min

Expected: eval/raw_modes_covered = 8 and eval/raw_high_quality > 0.5 after the tiny run (tests check this);
samples/samples_<step>.png shows the generated density.
"""

from genjax.families import family_config


def get_config(arg: str = ""):
  config = family_config("gan")
  config.data.name = "8gaussians"

  model = config.model
  model.network = "mlp"
  model.latent_dim = 16
  model.g_features = (128, 128)
  model.d_features = (128, 128)
  model.loss = "hinge"
  model.gradient_penalty = 1.0

  config.optim.lr = 1e-3
  config.optim.d_lr = 1e-3
  config.optim.b1 = 0.5
  config.optim.b2 = 0.99
  config.optim.ema_decay = 0.99

  training = config.training
  training.batch_size = 256
  training.num_train_steps = 20_000
  training.log_every = 500
  training.checkpoint_every = 5_000
  training.sample_every = 2_000
  training.max_d_loss = 50.0

  config.eval.batch_size = 2_500
  config.eval.num_examples = 2_500
  config.eval.sample_metrics = ("raw_modes",)  # mode coverage of 2,500 samples, as in the papers
  config.eval.num_samples = 2_500
  config.eval.sample_batch_size = 1_000  # divides over 1, 2, 4 or 8 devices
  config.sampling.grid_size = 2_500

  if arg == "tiny":
    training.num_train_steps = 4_000
    training.checkpoint_every = 2_000
    training.sample_every = 0
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use 'tiny' or nothing.")
  return config

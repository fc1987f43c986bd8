"""A GAN on 1,000 MNIST images: no augmentation, DiffAugment and ADA, from scratch or from a
generator pre-trained on the other 59,000 images.

The DCGAN of dcgan_mnist.py (non-saturating loss, Adam 2e-4, batch 64) trains on a fixed random
1,000 of the 60,000 training images (data.train_examples, data.subset_seed 0) for 1,000 steps,
64 passes over them: the discriminator memorises them. model.augment chooses what D sees:
"none", "diffaugment" (color, translation, cutout) or "ada" (the "bgc" pipeline; p steered so
that r_t = E[sign D(real)] stays at 0.6, adjusted every 4 D updates; model.ada_kimg = 100 lets p
move from 0 to 1 in 100k images, i.e. within this short run, where the paper's 500k is sized for
runs of millions). Logged every 100 steps: d_real_sign (r_t, the overfitting signal, for every
choice), ada_p. Evaluation: MNIST FID of 5,000 EMA-generator samples against all 10,000 test
images (not the 1,000 training images, which D and G may have memorised).

  # the comparison (model.augment = none / diffaugment / ada):
  python -m genjax.main --config=configs/finetune_gan_mnist.py \
      --workdir=workdirs/ft_gan/ada --config.model.augment=ada
  # pre-train on the other 59,000 images:
  python -m genjax.main --config=configs/finetune_gan_mnist.py:pretrain \
      --workdir=workdirs/ft_gan/pretrain
  # the comparison again, with G initialised from the pre-trained generator (D starts fresh):
  python -m genjax.main --config=configs/finetune_gan_mnist.py \
      --workdir=workdirs/ft_gan/transfer_ada --config.model.augment=ada \
      --config.init_from=workdirs/ft_gan/pretrain

Measured: see the README results table (rows finetune_gan_mnist.py) and scripts/plot_metrics.py
for the r_t plot.
"""

from genjax.families import family_config


def get_config(arg: str = ""):
  config = family_config("gan")
  config.data.name = "mnist"
  config.data.image_size = 32
  config.data.train_examples = 1000  # the limited-data set; pretrain takes the other 59,000

  model = config.model
  model.augment = "none"
  model.ada_kimg = 100.0
  config.optim.ema_decay = 0.999
  config.init_include = "^generator/"  # with init_from: take G only, D starts fresh

  training = config.training
  training.batch_size = 64
  training.num_train_steps = 1000
  training.log_every = 100
  training.checkpoint_every = 500
  training.max_d_loss = 100.0

  ev = config.eval
  ev.num_examples = 1000
  ev.sample_metrics = ("mnist_fid",)
  ev.num_samples = 5000
  ev.reference_split = "test"

  parts = arg.split(",") if arg else []
  if "pretrain" in parts:
    config.data.subset_complement = True
    training.num_train_steps = 1500
  if "tiny" in parts:  # seconds: the test of the whole path
    model.g_features, model.d_features = (32, 16, 8), (8, 16, 32)
    training.num_train_steps, training.log_every, training.checkpoint_every = 4, 2, 4
    training.batch_size = 16
    sampling = config.sampling
    sampling.grid_size, sampling.standing_stats_samples = 16, 16
    ev.num_examples, ev.batch_size, ev.num_samples, ev.sample_batch_size = 32, 32, 100, 50
  unknown = set(parts) - {"pretrain", "tiny"}
  if unknown:
    raise ValueError(f"Unknown config argument(s) {sorted(unknown)}; use pretrain and/or tiny.")
  return config

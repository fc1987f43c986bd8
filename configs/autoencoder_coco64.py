"""Stage 1 of text-to-image on COCO: a KL-regularized conv autoencoder, 64x64x3 -> 16x16x4 (f = 4).

The MNIST autoencoder (configs/autoencoder_mnist.py, model.network="conv_spatial") widened for
natural images: conv_channels (64, 128), GroupNorm of 32 groups, a discretized Gaussian p(x|z) on
the 256 levels, beta 1e-4 (latent diffusion's KL-f4 uses 1e-6 with a perceptual and GAN loss we do
not have; a larger KL weight keeps the latents' scale near 1). Images: tfds coco_captions (Karpathy
splits), centre-cropped and resized to 64x64. Parameters: tests/test_text2img.py checks the count
stated in configs/text2img_coco.py.

  python -m genjax.main --config=configs/autoencoder_coco64.py --workdir=workdirs/autoencoder_coco64
  python -m genjax.main --config=configs/autoencoder_coco64.py:tiny --workdir=/tmp/ae_coco_tiny

Ready for TPU/GPU; not trained here (COCO is not on this machine). :tiny trains on the generated
`synthetic_images` (16x16x3, coloured blobs) with the same network at widths (16, 32).
"""

from genjax.families import family_config


def get_config(arg: str = ""):
  config = family_config("vae")
  config.data.name = "coco_captions"
  config.data.train_split = "train"
  config.data.eval_split = "val"
  config.data.image_size = 64
  config.data.binarize = "none"
  config.data.random_flip = True

  model = config.model
  model.network = "conv_spatial"
  model.conv_channels = (64, 128)
  model.norm_groups = 32
  model.latent_channels = 4
  model.likelihood = "discretized_gaussian"
  model.beta = 1e-4

  config.optim.lr = 2e-4
  config.optim.schedule = "cosine"
  config.optim.warmup_steps = 1000
  config.optim.end_lr_factor = 0.05
  config.optim.ema_decay = 0.999

  training = config.training
  training.batch_size = 128
  training.num_train_steps = 100_000
  training.log_every = 500
  training.checkpoint_every = 5000

  config.eval.batch_size = 500
  config.eval.iwae_samples = 0
  config.eval.autoencoder_metrics = True

  if arg == "tiny":
    config.data.name = "synthetic_images"
    config.data.synthetic_shape = (16, 16, 3)
    config.data.num_examples = 512
    config.data.image_size = 0
    config.data.random_flip = False
    model.conv_channels = (16, 32)
    model.norm_groups = 8
    training.batch_size = 16
    training.num_train_steps = 8
    training.log_every = 4
    training.checkpoint_every = 8
    config.optim.warmup_steps = 2
    config.sampling.grid_size = 16
    config.eval.num_examples = 64
    config.eval.batch_size = 32
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use 'tiny' or nothing.")
  return config

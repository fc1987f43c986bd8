"""Text-to-image on COCO at 64x64: the MNIST text2img recipe at TPU scale.

Stage 1: configs/autoencoder_coco64.py (64x64x3 -> 16x16x4, trained first in
<workdir>/autoencoder). Stage 2: DiT-S/2 (width 384, depth 12, 6 heads, patch 2: 64 latent tokens)
with cross-attention to the 32 MiniLM token states of one of each image's human captions
(tfds coco_captions, Karpathy splits; data.captions="coco"), the pooled caption added to the
time embedding, 10% of the captions dropped to the empty prompt. DDPM's 1000 linear-beta steps,
epsilon loss, AdamW 1e-4, batch 256; samples with 20-step DPM-Solver++(2M), guidance 3; FID of
10,000 samples (the eight COCO_PROMPTS in turn) against the training images.

Parameters (tests/test_text2img.py): denoiser 39,727,888 (the DiT-S/2 trunk and 12
cross-attention layers), frozen autoencoder 1,690,894; the frozen MiniLM text encoder has 22.7M
more.

  python -m genjax.main --config=configs/text2img_coco.py --workdir=gs://bucket/text2img_coco
  python -m genjax.main --config=configs/text2img_coco.py:tiny --workdir=/tmp/t2i_coco_tiny

Not trained here (COCO is not on this machine): no result yet. :tiny trains both stages on
generated 16x16 coloured blobs captioned by colour and position ("a green blob in row 2,
column 3", data.captions="synthetic_blobs").
"""

from genjax.families import family_config


def get_config(arg: str = ""):
  config = family_config("text2img")
  data = config.data
  data.name = "coco_captions"
  data.train_split = "train"
  data.eval_split = "val"
  data.image_size = 64
  data.binarize = "none"
  data.random_flip = True  # the autoencoder's setting; flips keep a caption true ("left" aside)
  data.captions = "coco"
  data.caption_length = 32

  config.autoencoder.config = "autoencoder_coco64.py:tiny" if arg == "tiny" else "autoencoder_coco64.py"

  model = config.model
  model.network = "dit"
  model.patch = 2
  model.hidden_size = 384
  model.depth = 12
  model.heads = 6
  model.mlp_ratio = 4.0

  config.text.prompt_dropout = 0.1
  config.optim.name = "adamw"
  config.optim.lr = 1e-4
  config.optim.weight_decay = 0.0
  config.optim.warmup_steps = 5000
  config.optim.ema_decay = 0.9999

  training = config.training
  training.batch_size = 256
  training.num_train_steps = 400_000
  training.log_every = 500
  training.checkpoint_every = 5000
  training.eval_every = 50_000
  training.sample_every = 10_000

  sampling = config.sampling
  sampling.sampler = "dpm_solver"
  sampling.num_steps = 20
  sampling.guidance = 3.0
  sampling.grid_size = 64
  sampling.grid_columns = 8

  config.eval.batch_size = 256
  config.eval.sample_metrics = ("inception_fid",)
  config.eval.num_samples = 10_000

  if arg == "tiny":
    data.name = "synthetic_images"
    data.synthetic_shape = (16, 16, 3)
    data.num_examples = 512
    data.image_size = 0
    data.random_flip = False
    data.captions = "synthetic_blobs"
    data.caption_length = 16
    model.hidden_size = 32
    model.depth = 1
    model.heads = 2
    config.optim.warmup_steps = 2
    training.batch_size = 16
    training.num_train_steps = 6
    training.log_every = 3
    training.checkpoint_every = 3
    training.eval_every = 6
    training.sample_every = 6
    sampling.num_steps = 4
    sampling.grid_size = 20
    sampling.grid_columns = 10
    config.eval.num_examples = 64
    config.eval.batch_size = 32
    config.eval.sample_metrics = ()
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use 'tiny' or nothing.")
  return config

"""Text-to-image on MNIST: captions with digit, thickness, slant and size -> latent DiT -> digits.

Both stages in one command. Stage 1 is configs/autoencoder_mnist.py (28x28 -> 7x7x4 latents,
trained first in <workdir>/autoencoder when it has not finished there). Stage 2 is a DiT with
patch 1 (49 latent tokens), width 192, depth 4, 3 heads, cross-attention to the 24 MiniLM token
states of the caption and the pooled caption added to the time embedding; DDPM's 1000 linear-beta
steps, epsilon loss, 10% of the captions dropped to the empty prompt (classifier-free guidance).
Captions (genjax.text.captions, seed config.seed): the training split is described with the
training templates and phrasings, the test split only with the held-out ones. Samples: 20-step
DPM-Solver++(2M), guidance 3.

  python -m genjax.main --config=configs/text2img_mnist.py --workdir=workdirs/text2img_mnist
  python -m genjax.main --config=configs/text2img_mnist.py --workdir=workdirs/text2img_mnist \\
      --mode=generate --prompt="a thick seven" --num=16 --guidance=3
  python -m genjax.main --config=configs/text2img_mnist.py:tiny --workdir=/tmp/t2i_tiny  # ~2 min

The first run also encodes the 33,286 distinct training captions and 5,956 test captions once
(2.5 min; cached under ~/.cache/genjax/text). Denoiser: 3,791,236 parameters.

Expected (measured on the shared 2-core AMD CPU, beside the test suite: stage 1 13 min; stage 2
3,200 steps in 46 min at 1.0-1.8 steps/s, then 5 min of evaluation): eval/loss 0.0791 on the
test captions (held-out phrasings); of 2,000 samples for the ten default held-out prompts (one per
digit), the MNIST classifier finds the requested digit in 98.35%; MNIST FID 39.6 (vs the 60,000
training images). With 10 held-out prompts per digit: 97.5% (96.95% at guidance 2); with prompts
that also state attributes, 93.0% at best. More (guidance sweep, attribute control, speed): README, Results, and
scripts/text2img_eval.py. scripts/benchmark.py needs --config.autoencoder.workdir=<stage 1>.
"""

from genjax.families import family_config


def get_config(arg: str = ""):
  config = family_config("text2img")
  config.data.name = "mnist"
  config.data.binarize = "none"
  config.data.value_range = (0.0, 1.0)  # the autoencoder's pixels
  config.data.captions = "mnist_attributes"
  config.data.caption_length = 24  # the longest MNIST caption has 21 tokens

  config.autoencoder.config = "autoencoder_mnist.py:tiny" if arg == "tiny" else "autoencoder_mnist.py"

  model = config.model
  model.network = "dit"
  model.patch = 1
  model.hidden_size = 192
  model.depth = 4
  model.heads = 3
  model.mlp_ratio = 4.0

  config.text.prompt_dropout = 0.1
  config.optim.lr = 3e-4
  config.optim.warmup_steps = 200
  config.optim.ema_decay = 0.999

  training = config.training
  training.batch_size = 64
  training.num_train_steps = 3200
  training.log_every = 100
  training.checkpoint_every = 500
  training.eval_every = 3200
  training.sample_every = 1000

  sampling = config.sampling
  sampling.sampler = "dpm_solver"
  sampling.num_steps = 20
  sampling.guidance = 3.0
  sampling.grid_size = 100
  sampling.grid_columns = 10

  config.eval.batch_size = 500
  config.eval.sample_metrics = ("mnist_accuracy", "mnist_fid")
  config.eval.num_samples = 2000

  if arg == "tiny":
    config.data.train_split = "train[:512]"  # 512 captions to encode, not 60,000
    config.data.eval_split = "test[:200]"
    model.hidden_size = 32
    model.depth = 1
    model.heads = 2
    training.batch_size = 16
    training.num_train_steps = 6
    training.log_every = 3
    training.checkpoint_every = 3
    training.eval_every = 6
    training.sample_every = 6
    config.optim.warmup_steps = 2
    sampling.num_steps = 4
    sampling.grid_size = 20
    config.eval.num_examples = 100
    config.eval.batch_size = 50
    config.eval.sample_metrics = ("mnist_accuracy",)
    config.eval.num_samples = 40
    config.eval.sample_batch_size = 20
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use 'tiny' or nothing.")
  return config

"""A small DDPM on native 28x28 MNIST, pixels in [-1, 1]: the prior of the restoration benchmark.

The prior that `--mode=restore` (genjax.restore) uses to denoise, inpaint and super-resolve MNIST
digits. Unpadded, so 2x and 4x downsampling (14x14, 7x7) align with the digit (the 32x32
ddpm_mnist config pads by 2 pixels, half a pixel at 4x). UNet with channels 32/64/64 (channel_mult
1, 2, 2), 1 residual block per level, attention at 7x7, dropout 0.1 (1,112,801 parameters); 1000
linear-beta steps, epsilon loss; batch 32, Adam 5e-4 (warmup 200), EMA 0.999. Samples: DDIM with
eta 1 (ancestral) on 50 of the 1000 steps. A train step takes 1.1 s on the 2-core AMD CPU alone
(2.2 s at batch 64: `python scripts/benchmark.py --config=configs/ddpm_mnist28.py
--only=train_step`).

  # the benchmark's prior: 50 min on the 2-core CPU (1,200 steps beside other jobs)
  python -m genjax.main --config=configs/ddpm_mnist28.py --workdir=workdirs/ddpm_mnist28 \
      --config.training.max_train_minutes=50
  # ~1 min, the pipeline only:
  python -m genjax.main --config=configs/ddpm_mnist28.py:tiny --workdir=/tmp/ddpm_mnist28_tiny
  # restore a folder of noisy digits with it:
  python -m genjax.main --config=configs/ddpm_mnist28.py --workdir=workdirs/ddpm_mnist28 \
      --mode=restore --task=denoise --noise_sigma=0.2 --input=my_digits/

Measured (README, Results): eval/bpd_vlb 2.37 after 1,200 steps; the restoration benchmark. On the
2-core AMD EPYC with AVX-512 a step takes 0.26 s: 30 minutes gave 6,800 steps, 2.13 bits/dim and
Inception FID 16.6 (1,000 samples vs 1,000 test images).
"""

from pathlib import Path

from genjax.config import config_from_file


def get_config(arg: str = ""):
  # ddpm_mnist's process, loss, optimizer and :tiny, on unpadded 28x28 with a narrower UNet.
  config = config_from_file(Path(__file__).with_name("ddpm_mnist.py"), arg)
  config.data.image_size = 0  # native 28x28

  config.optim.lr = 5e-4
  config.optim.ema_decay = 0.999
  model = config.model
  model.attention_resolutions = (14,) if arg == "tiny" else (7,)
  if arg != "tiny":
    model.channels = 32
    model.num_res_blocks = 1
    model.norm_groups = 8
    config.optim.warmup_steps = 200
    config.training.batch_size = 32
    config.training.log_every = 100
    config.training.checkpoint_every = 500
    config.eval.num_examples = 500

  sampling = config.sampling
  sampling.sampler = "ddim"
  sampling.eta = 1.0
  sampling.inpaint_resample = 1
  return config

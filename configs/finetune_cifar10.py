"""Fine-tune DDPM's CIFAR-10 model on TPU/GPU: from an unconditional pre-trained checkpoint to a
class-conditional model with classifier-free guidance, on 10% of the training images.

The network is ddpm_cifar10.py's UNet (35.7M parameters) plus a class embedding (10 classes + the
"no label" row), the one new parameter: config.init_from loads every other parameter from the
pre-trained run's EMA weights (the load table goes to <workdir>/init_from.json). Data: a fixed 5,000
of the 50,000 training images (data.train_examples, seed 0), random flips; label dropout 0.1;
Adam 5e-5 with 500 warmup steps, gradient clipping at 1, EMA 0.9995, batch 128, 50k steps.
Samples: guided (w = 1) DDIM, 100 steps. Eval: Inception FID of 10,000 samples against the test
split (the data the fine-tuned model did not see), and the classifier-free guided samples' labels
are not checked (no CIFAR-10 classifier ships with genjax).

":lora" trains LoRA adapters (rank 16) on every dense layer, incl. attention, instead of all the
weights; the class embedding, new, trains with them (model.lora_also_train).

  # pre-train (or reuse) the unconditional model:
  python -m genjax.main --config=configs/ddpm_cifar10.py --workdir=gs://<bucket>/ddpm_cifar10
  # fine-tune from it:
  python -m genjax.main --config=configs/finetune_cifar10.py --workdir=gs://<bucket>/ft_cifar10 \
      --config.init_from=gs://<bucket>/ddpm_cifar10
  python -m genjax.main --config=configs/finetune_cifar10.py:lora --workdir=gs://<bucket>/ft_lora \
      --config.init_from=gs://<bucket>/ddpm_cifar10
  python -m genjax.main --config=configs/finetune_cifar10.py --mode=summary   # 35,751,939 params
  python -m genjax.main --config=configs/finetune_cifar10.py:tiny --workdir=/tmp/ft_cifar_tiny

Not run here (no CIFAR-10 on this project's machines and no pre-trained CIFAR-10 checkpoint):
tests/test_finetune_configs.py builds the network and checks its parameter counts.
"""

from pathlib import Path

from genjax.config import config_from_file

PRETRAINED = "gs://<bucket>/ddpm_cifar10"  # replace, or pass --config.init_from


def get_config(arg: str = ""):
  config = config_from_file(Path(__file__).with_name("ddpm_cifar10.py"), "")
  config.init_from = PRETRAINED
  config.data.train_examples = 5000

  config.model.num_classes = 10
  config.diffusion.label_dropout = 0.1

  config.optim.lr = 5e-5
  config.optim.warmup_steps = 500
  config.optim.ema_decay = 0.9995

  training = config.training
  training.num_train_steps = 50_000
  training.checkpoint_every = 5_000

  sampling = config.sampling
  sampling.sampler = "ddim"
  sampling.num_steps = 100
  sampling.guidance = 1.0

  ev = config.eval
  ev.likelihood = "none"  # the bound is not defined for the guided model; FID is the measure
  ev.sample_metrics = ("inception_fid",)
  ev.num_samples = 10_000
  ev.reference_split = "test"

  if arg in ("lora", "lora,tiny", "tiny"):
    pass
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use 'lora', 'tiny' or nothing.")
  if "tiny" in arg:  # synthetic images, a small UNet, no pre-trained run: the pipeline only
    config.init_from = ""
    config.data.name = "synthetic_images"
    config.data.num_examples = 512
    config.data.train_examples = 128
    model = config.model
    model.channels, model.channel_mult, model.num_res_blocks, model.norm_groups = 16, (1, 2), 1, 8
    config.optim.warmup_steps = 0
    training.batch_size, training.num_train_steps = 16, 20
    training.log_every, training.checkpoint_every = 10, 20
    sampling.num_steps, sampling.grid_size, sampling.edit_num_steps = 10, 16, 10
    ev.batch_size, ev.num_examples, ev.sample_metrics = 32, 32, ()
  if "lora" in arg:
    config.model.lora_rank = 16
    config.model.lora_alpha = 16.0
    config.optim.lr = 1e-4
    config.model.lora_also_train = "^Embed_"  # the new class embedding trains with the adapters
  return config

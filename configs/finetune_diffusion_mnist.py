"""Pre-train, then fine-tune with little data: class-conditional DDPM on MNIST digits.

Pre-training sees digits 0-4 only (all 30,596 training images); fine-tuning sees digits 5-9 with
1% of their training images (300, a fixed subset: data.train_examples, data.subset_seed). The
comparison trains the same network on the same 300 images from scratch, for the same steps.
Both are measured on digits 5-9: MNIST FID of 500 DDIM samples (labels cycling through 5-9)
against the 4,861 test images of 5-9, and the MNIST classifier's accuracy on the requested labels.

The network is a small class-conditional UNet sized for a 2-core CPU (16/32 channels at 28x28 and
14x14, one residual block per level, no attention, 165k parameters: 1.5 s per step of 64 images;
10 classes + the "no label" row, label dropout 0.1): its class table has rows for all ten digits
from the start, so fine-tuning loads every parameter (rows 5-9 were never trained). Pre-training
runs 12 minutes; fine-tuning and training from scratch run 300 steps each (about 7.5 minutes),
with guided (w = 1) DDIM sampling of 25 steps.

  # pre-train on 0-4 (training.max_train_minutes bounds it on a CPU):
  python -m genjax.main --config=configs/finetune_diffusion_mnist.py:pretrain \
      --workdir=workdirs/ft_diffusion/pretrain
  # fine-tune on 300 images of 5-9, from the pre-trained EMA weights:
  python -m genjax.main --config=configs/finetune_diffusion_mnist.py:finetune \
      --workdir=workdirs/ft_diffusion/finetune --config.init_from=workdirs/ft_diffusion/pretrain
  # the same 300 images from scratch:
  python -m genjax.main --config=configs/finetune_diffusion_mnist.py:scratch \
      --workdir=workdirs/ft_diffusion/scratch
  # LoRA instead of full fine-tuning (adapters on every dense layer, incl. attention):
  python -m genjax.main --config=configs/finetune_diffusion_mnist.py:finetune \
      --workdir=workdirs/ft_diffusion/lora --config.init_from=workdirs/ft_diffusion/pretrain \
      --config.model.lora_rank=8

Measured: see the README results table (rows finetune_diffusion_mnist.py).
"""

from genjax.families import family_config

PRETRAIN_CLASSES = (0, 1, 2, 3, 4)
FINETUNE_CLASSES = (5, 6, 7, 8, 9)


def get_config(arg: str = "finetune"):
  config = family_config("diffusion")
  config.data.name = "mnist"
  config.data.image_size = 0  # native 28x28: 14x14 after the one downsampling

  model = config.model
  model.num_classes = 10
  model.channels = 16
  model.channel_mult = (1, 2)
  model.num_res_blocks = 1
  model.attention_resolutions = ()
  model.norm_groups = 8
  config.diffusion.label_dropout = 0.1

  config.optim.lr = 1e-3
  config.optim.grad_clip_norm = 1.0
  config.optim.ema_decay = 0.995

  training = config.training
  training.batch_size = 64
  training.log_every = 100
  training.checkpoint_every = 500

  sampling = config.sampling
  sampling.sampler = "ddim"
  sampling.num_steps = 25
  sampling.guidance = 1.0
  sampling.edit_num_steps = 10

  ev = config.eval
  ev.likelihood = "none"
  ev.num_examples = 1000
  ev.sample_metrics = ("mnist_fid", "mnist_accuracy")
  ev.num_samples = 500
  ev.sample_batch_size = 250
  ev.reference_split = "test"

  parts = arg.split(",") if arg else []
  unknown = set(parts) - {"pretrain", "finetune", "scratch", "tiny"}
  if unknown:
    raise ValueError(
      f"Unknown config argument(s) {sorted(unknown)}; use one of pretrain, finetune, scratch, "
      "optionally with tiny (e.g. 'finetune,tiny')."
    )
  if not {"pretrain", "scratch"} & set(parts):
    parts.append("finetune")  # the default part
  if "pretrain" in parts:
    config.data.classes = PRETRAIN_CLASSES
    training.num_train_steps = 100_000  # the CPU run ends on training.max_train_minutes
    training.max_train_minutes = 12.0
  else:
    config.data.classes = FINETUNE_CLASSES
    config.data.train_examples = 300
    training.num_train_steps = 300
    if "finetune" in parts:
      config.optim.lr = 5e-4  # a smaller step than pre-training, from the pre-trained weights
    else:
      config.optim.warmup_steps = 50
  if "tiny" in parts:  # seconds: the test of the whole path
    model.channels, model.norm_groups = 8, 4
    training.batch_size, training.num_train_steps = 16, 4
    training.log_every, training.checkpoint_every = 2, 4
    sampling.num_steps, sampling.grid_size, sampling.edit_num_steps = 4, 16, 4
    ev.num_examples, ev.batch_size = 32, 32
    ev.num_samples, ev.sample_batch_size = 100, 50
  return config

"""The fine-tuning configs build: parameter counts of the CIFAR-10 TPU config (full and LoRA), and
which parameters the LoRA variant trains."""

import functools

import jax
import numpy as np
import pytest

from genjax import lora, parallel
from genjax.datasets import dataset_info
from genjax.families import get_family
from genjax.finetune import _flat
from genjax.optim import FROZEN, TRAINABLE, group_labels
from genjax.trainer import dummy_batch, summary


@pytest.mark.slow
def test_cifar10_finetune_config_is_ddpm_plus_a_class_embedding(load):
  config = load("finetune_cifar10.py")
  assert config.init_from and config.data.train_examples == 5000 and config.model.num_classes == 10
  lines = summary(config).splitlines()
  assert lines[-1] == f"total_params={35_746_307 + 11 * 512}"  # DDPM's UNet + 10 classes + "no label"


@pytest.mark.slow
def test_cifar10_lora_variant_trains_the_adapters_and_the_new_class_embedding(load):
  config = load("finetune_cifar10.py:lora")
  assert summary(config).splitlines()[-1].startswith("lora_trainable_params=483328 (1.33%")
  family = get_family("diffusion")(config, dataset_info(config.data), parallel.make_mesh())
  params, _ = jax.eval_shape(functools.partial(family.init, batch=dummy_batch(family.example_shape)),
                             jax.random.key(0))
  optim = lora.optim_config(config)
  labels = _flat(group_labels(params, optim.freeze, optim.lr_multipliers))
  trainable = {path for path, label in labels.items() if label == TRAINABLE}
  assert {path for path in trainable if not path.endswith(("lora_a", "lora_b"))} == {"Embed_0/embedding"}
  assert sum(np.prod(_flat(params)[p].shape) for p in trainable) == 483_328 + 11 * 512
  assert all(labels[p] == FROZEN for p in labels if p.endswith("kernel"))


def test_mnist_demonstration_configs_build(load):
  for name in ("finetune_diffusion_mnist.py:pretrain", "finetune_diffusion_mnist.py:finetune",
               "finetune_diffusion_mnist.py:scratch"):
    assert summary(load(name)).splitlines()[-1] == "total_params=164689", name
  pretrain, limited = load("finetune_gan_mnist.py:pretrain"), load("finetune_gan_mnist.py")
  assert pretrain.data.subset_complement and not limited.data.subset_complement
  assert summary(pretrain).splitlines()[-1] == summary(limited).splitlines()[-1]

"""The PyTorch reference networks (scripts/torch_networks.py) match genjax's parameter shapes.

Skipped without torch (an optional dependency). Builds the networks only; nothing is timed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import torch_networks
import torch_reference

from genjax import parallel
from genjax.datasets import dataset_info
from genjax.families import get_family


def _genjax_parameter_sizes(config) -> tuple[tuple[int, ...], dict[str, list[int]]]:
  """(example shape, group -> sorted sizes of the parameter leaves), from shapes only."""
  family = get_family(config.family)(config, dataset_info(config.data), parallel.make_mesh())
  shape = family.example_shape
  batch = {"x": jax.ShapeDtypeStruct((2, *shape), np.float32),
           "label": jax.ShapeDtypeStruct((2,), np.int32)}
  params, _ = jax.eval_shape(family.init, jax.random.key(0), batch)
  groups = family.parameter_groups(params)
  return tuple(shape), {name: sorted(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))
                        for name, tree in groups.items()}


@pytest.mark.parametrize("name, expected", [
  ("dcgan_mnist", {"generator": 1_066_881, "discriminator": 661_313}),
  ("wgan_gp_mnist", {"generator": 1_066_881, "discriminator": 660_929}),
  ("ddpm_mnist", {"model": 6_469_889}),
])
def test_torch_networks_have_genjax_parameter_shapes(load, name, expected):
  config = load(f"{name}.py")
  assert name in torch_reference.REFERENCES
  shape, genjax_sizes = _genjax_parameter_sizes(config)
  assert {group: sum(sizes) for group, sizes in genjax_sizes.items()} == expected
  networks = torch_networks.build_networks(config, shape)
  torch_sizes = {group: sorted(p.numel() for p in module.parameters())
                 for group, module in networks.items()}
  # Same multiset of tensor sizes, not only the same total.
  assert torch_sizes == genjax_sizes
  assert {group: torch_networks.parameter_count(module) for group, module in networks.items()} \
      == expected


def test_torch_networks_map_to_the_right_shapes(load):
  gan = load("dcgan_mnist.py")
  networks = torch_networks.build_networks(gan, (32, 32, 1))
  images = networks["generator"](torch.randn(3, gan.model.latent_dim))
  assert images.shape == (3, 1, 32, 32) and images.abs().max() <= 1.0
  assert networks["discriminator"](images).shape == (3,)
  unet = torch_networks.build_networks(load("ddpm_mnist.py"), (32, 32, 1))["model"].eval()
  x = torch.randn(2, 1, 32, 32)
  # conv_out is zero-initialized, as in genjax: the untrained network predicts eps_hat = 0.
  assert torch.equal(unet(x, torch.tensor([0.0, 999.0])), torch.zeros_like(x))


def test_unsupported_options_raise_clear_errors(load):
  config = load("dcgan_mnist.py", **{"model.spectral_norm": True})
  with pytest.raises(ValueError, match="spectral_norm"):
    torch_networks.build_networks(config, (32, 32, 1))
  config = load("ddpm_mnist.py", **{"model.resblock": "biggan"})
  with pytest.raises(ValueError, match="resblock"):
    torch_networks.build_networks(config, (32, 32, 1))

"""The diffusion transformer and text cross-attention (genjax.models.dit, genjax.models.attention,
the UNet's context_dim): shapes, adaLN-Zero identity start, padding invariance, DiT-S/2's
parameter count, and the default UNet's unchanged parameter tree."""

from __future__ import annotations

import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.models.attention import masked_attention
from genjax.models.diffusion import DIFFUSION_NETWORKS
from genjax.models.dit import DiT, DiTBlock
from genjax.models.unet import UNet

TEXT_DIM = 12  # a small stand-in for the sentence encoder's 384
TINY_DIT = {"patch": 2, "hidden_size": 32, "depth": 2, "heads": 4}
TINY_UNET = {"channels": 16, "channel_mult": (1, 2), "num_res_blocks": 1,
             "attention_resolutions": (8,), "groups": 4, "dropout": 0.0}
# sum(out) and sum(|out|) of TINY_UNET on the inputs of the parameter-tree test, computed with
# genjax/models/unet.py as it was before the context_dim option
REFERENCE_SUMS = (74.80921936035156, 100.17974853515625)


def text_labels(key: jax.Array, batch: int, length: int, real: list[int]) -> dict[str, jax.Array]:
  """Random text conditioning: row b has real[b] real tokens followed by padding."""
  tokens_key, pooled_key = jax.random.split(key)
  mask = (jnp.arange(length)[None] < jnp.array(real)[:, None]).astype(jnp.float32)
  return {"tokens": jax.random.normal(tokens_key, (batch, length, TEXT_DIM)), "mask": mask,
          "pooled": jax.random.normal(pooled_key, (batch, TEXT_DIM))}


def pad(text: dict[str, jax.Array], extra: int, key: jax.Array) -> dict[str, jax.Array]:
  """The same prompts with `extra` more padding tokens of random values (mask 0)."""
  batch = text["tokens"].shape[0]
  noise = 10.0 * jax.random.normal(key, (batch, extra, TEXT_DIM))
  return {**text, "tokens": jnp.concatenate([text["tokens"], noise], axis=1),
          "mask": jnp.concatenate([text["mask"], jnp.zeros((batch, extra))], axis=1)}


def perturb(params, scale: float = 0.05, only_zeros: bool = False, seed: int = 7):
  """params + scale * N(0, 1) noise on every leaf (only_zeros: only on the all-zero leaves, i.e.
  the zero-initialised gates, output projections and biases). NumPy's generator: one jax.random
  call per leaf shape would compile a program each."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(
    lambda leaf: leaf if only_zeros and np.any(leaf)
    else leaf + scale * rng.standard_normal(leaf.shape, np.float32),
    params,
  )


def random_params(net, *inputs, scale: float = 0.1, seed: int = 7):
  """Parameters of net's tree filled with scale * N(0, 1) values, without running its (slow to
  compile) initialisers."""
  shapes = jax.eval_shape(net.init, jax.random.key(0), *inputs)["params"]
  return perturb(jax.tree.map(lambda leaf: np.zeros(leaf.shape, np.float32), shapes), scale,
                 seed=seed)


def param_count(params) -> int:
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params))


@pytest.fixture(scope="module")
def text_dit():
  """A tiny text-conditional DiT on [2, 8, 8, 4], its perturbed parameters and inputs."""
  net = DiT(**TINY_DIT, context_dim=TEXT_DIM)
  x = jax.random.normal(jax.random.key(1), (2, 8, 8, 4))
  time = jnp.array([10.0, 700.0])
  text = text_labels(jax.random.key(2), 2, 5, [5, 2])
  params = jax.jit(net.init)(jax.random.key(0), x, time, text)["params"]
  return net, params, perturb(params), x, time, text


def test_dit_returns_the_input_shape_or_out_channels():
  x = jnp.zeros((2, 8, 8, 4))
  out = jax.eval_shape(lambda: DiT(**TINY_DIT).init_with_output(jax.random.key(0), x, jnp.ones(2)))
  assert out[0].shape == (2, 8, 8, 4)
  x = jnp.zeros((2, 32, 32, 3))
  net = DiT(**TINY_DIT, out_channels=6, context_dim=TEXT_DIM)
  text = text_labels(jax.random.key(0), 2, 4, [4, 1])
  out = jax.eval_shape(lambda: net.init_with_output(jax.random.key(0), x, jnp.ones(2), text))
  assert out[0].shape == (2, 32, 32, 6)


def test_dit_starts_as_identity_blocks_and_zero_output_then_depends_on_every_input(text_dit):
  net, params, perturbed, x, time, text = text_dit
  assert not jnp.any(net.apply({"params": params}, x, time, text))
  h = jax.random.normal(jax.random.key(3), (2, 16, TINY_DIT["hidden_size"]))
  c = jax.random.normal(jax.random.key(4), (2, TINY_DIT["hidden_size"]))
  for index in range(TINY_DIT["depth"]):
    block = DiTBlock(TINY_DIT["heads"])
    out = block.apply({"params": params[f"block_{index}"]}, h, c, text["tokens"], text["mask"])
    np.testing.assert_array_equal(out, h)

  base = net.apply({"params": perturbed}, x, time, text)
  changed_token = text["tokens"].at[:, 0].add(1.0)
  variants = {
    "time": (x, time + 5.0, text),
    "tokens": (x, time, {**text, "tokens": changed_token}),
    "pooled": (x, time, {**text, "pooled": text["pooled"] + 1.0}),
  }
  for name, args in variants.items():
    difference = jnp.abs(net.apply({"params": perturbed}, *args) - base).max(axis=(1, 2, 3))
    assert jnp.all(difference > 1e-4), name


def test_class_conditional_dit_uses_the_labels_and_the_null_label():
  num_classes = 10
  net = DiT(**TINY_DIT, num_classes=num_classes)
  x = jax.random.normal(jax.random.key(1), (2, 8, 8, 4))
  time = jnp.array([5.0, 5.0])
  labels = jnp.array([num_classes, 3])  # the null label (classifier-free guidance) and class 3
  params = random_params(net, x, time, labels)
  assert params["class_embedding"]["embedding"].shape == (num_classes + 1, TINY_DIT["hidden_size"])
  out = net.apply({"params": params}, x, time, labels)
  assert jnp.all(jnp.isfinite(out))
  other = net.apply({"params": params}, x, time, jnp.array([2, 3]))
  assert jnp.abs(out[0] - other[0]).max() > 1e-4
  np.testing.assert_array_equal(out[1], other[1])
  with pytest.raises(ValueError, match="integer labels"):
    net.apply({"params": params}, x, time, None)


def test_masked_attention_ignores_padding_and_attends_to_nothing_without_tokens():
  q, k, v = (jax.random.normal(jax.random.key(i), (2, 3, 2, 4)) for i in range(3))
  mask = jnp.array([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
  out = masked_attention(q, k, v, mask)
  np.testing.assert_allclose(out[0], masked_attention(q[:1], k[:1, :2], v[:1, :2])[0], atol=1e-6)
  np.testing.assert_array_equal(out[1], jnp.zeros_like(out[1]))
  gradient = jax.grad(lambda k: masked_attention(q, k, v, mask).sum())(k)
  assert jnp.all(jnp.isfinite(gradient)) and not jnp.any(gradient[1])


def test_dit_output_is_invariant_to_padding_and_finite_for_an_empty_prompt(text_dit):
  net, _, perturbed, x, time, text = text_dit
  base = net.apply({"params": perturbed}, x, time, text)
  padded = net.apply({"params": perturbed}, x, time, pad(text, 4, jax.random.key(5)))
  np.testing.assert_allclose(padded, base, atol=1e-5)
  empty = {**text, "mask": jnp.zeros_like(text["mask"])}
  out = net.apply({"params": perturbed}, x, time, empty)
  assert jnp.all(jnp.isfinite(out))
  np.testing.assert_allclose(
    net.apply({"params": perturbed}, x, time, pad(empty, 3, jax.random.key(6))), out, atol=1e-5
  )


def test_unet_with_context_is_invariant_to_padding_and_uses_the_text():
  net = UNet(**TINY_UNET, context_dim=TEXT_DIM)
  x = jax.random.normal(jax.random.key(1), (2, 16, 16, 3))
  time = jnp.array([10.0, 700.0])
  text = text_labels(jax.random.key(2), 2, 5, [5, 2])
  params = random_params(net, x, time, text)
  # one cross-attention after each self-attention at 8x8: 1 down + 1 middle + 2 up
  assert sum(name.startswith("CrossAttentionBlock") for name in params) == 4
  assert "pooled_embedding" in params
  apply = jax.jit(lambda text: net.apply({"params": params}, x, time, text))
  base = apply(text)
  np.testing.assert_allclose(apply(pad(text, 4, jax.random.key(5))), base, atol=1e-5)
  changed = {**text, "tokens": text["tokens"].at[:, 0].add(1.0)}
  assert jnp.all(jnp.abs(apply(changed) - base).max(axis=(1, 2, 3)) > 1e-4)


def test_default_unet_parameter_tree_and_outputs_are_unchanged_without_context():
  """The tree of UNet() (DDPM's CIFAR-10 network) and a tiny UNet's output, both recorded from the
  UNet before the context_dim option existed: existing checkpoints load and sample as before."""
  params = jax.eval_shape(
    lambda: UNet().init(jax.random.key(0), jnp.ones((1, 32, 32, 3)), jnp.ones(1))
  )["params"]
  paths = [f"{jax.tree_util.keystr(path)} {tuple(leaf.shape)}"
           for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]]
  assert len(paths) == 328 and param_count(params) == 35_746_307
  assert "['AttentionBlock_0']['proj_out']['kernel'] (256, 256)" in paths
  assert "['Dense_1']['kernel'] (512, 512)" in paths
  assert not any("Cross" in path or "pooled" in path for path in paths)
  digest = hashlib.sha256("\n".join(paths).encode()).hexdigest()
  assert digest == "a386ae183d8f89efbd01c08d439d95a9fe8eff21c0ba43168aaa2aff249845a1"

  net = UNet(**TINY_UNET)
  x = jax.random.normal(jax.random.key(1), (2, 16, 16, 3))
  time = jnp.array([3.0, 500.0])
  out = jax.jit(net.apply)({"params": random_params(net, x, time)}, x, time)
  np.testing.assert_allclose([jnp.sum(out), jnp.sum(jnp.abs(out))], REFERENCE_SUMS, rtol=1e-4)


def dit_parameter_count(hidden: int, depth: int, patch: int, in_channels: int,
                        out_channels: int, num_classes: int, mlp_ratio: int = 4,
                        frequency_dim: int = 256) -> int:
  """DiT's parameters tallied layer by layer (weights + biases), as in facebookresearch/DiT."""
  patch_embedding = patch * patch * in_channels * hidden + hidden
  time_mlp = frequency_dim * hidden + hidden + hidden * hidden + hidden
  class_embedding = (num_classes + 1) * hidden  # + 1: the null label
  attention = 4 * (hidden * hidden + hidden)  # q, k, v, out
  mlp = 2 * mlp_ratio * hidden * hidden + mlp_ratio * hidden + hidden
  modulation = hidden * 6 * hidden + 6 * hidden
  final = hidden * 2 * hidden + 2 * hidden + hidden * patch * patch * out_channels
  final += patch * patch * out_channels
  return patch_embedding + time_mlp + class_embedding + depth * (attention + mlp + modulation) + final


def test_dit_s2_has_the_papers_parameter_count():
  """DiT-S/2 on 32x32x4 latents, 1000 classes, 8 output channels (DiT's learned-sigma output
  width, which the paper's count includes): Table 1 of Peebles & Xie lists 33M."""
  net = DiT(patch=2, hidden_size=384, depth=12, heads=6, out_channels=8, num_classes=1000)
  params = jax.eval_shape(
    lambda: net.init(jax.random.key(0), jnp.ones((1, 32, 32, 4)), jnp.ones(1), jnp.zeros(1, int))
  )["params"]
  count = param_count(params)
  print(f"DiT-S/2 parameters: {count:,}")
  assert count == dit_parameter_count(384, 12, 2, 4, 8, 1000) == 32_865_056
  assert abs(count / 33e6 - 1) < 0.01


def test_gradients_reach_the_cross_attention_once_the_zero_initialised_layers_move(text_dit):
  net, params, _, x, time, text = text_dit
  moved = perturb(params, only_zeros=True)

  target = jax.random.normal(jax.random.key(8), x.shape)

  def loss(params):
    return jnp.mean((net.apply({"params": params}, x, time, text) - target) ** 2)

  gradient = jax.jit(jax.grad(loss))
  for name, tree in (("init", params), ("moved", moved)):
    grads = gradient(tree)["block_0"]["cross_attention"]
    norms = {layer: float(jnp.abs(grads[layer]["kernel"]).max()) for layer in grads}
    if name == "init":  # the zero final projection and cross-attention output stop them
      assert not any(norms.values())
    else:
      assert all(np.isfinite(norm) and norm > 0 for norm in norms.values()), norms


def test_registry_builds_the_dit_and_the_text_unet_from_the_diffusion_defaults():
  from genjax.families import family_config

  config = family_config("diffusion")
  config.model.network = "dit"
  net = DIFFUSION_NETWORKS.get("dit")(config.model, 0)
  assert (net.patch, net.hidden_size, net.depth, net.heads, net.context_dim) == (2, 384, 6, 6, 0)
  config.model.context_dim = TEXT_DIM
  unet = DIFFUSION_NETWORKS.get("unet")(config.model, 0)
  dit = DIFFUSION_NETWORKS.get("dit")(config.model, 0)
  assert unet.context_dim == dit.context_dim == TEXT_DIM
  with pytest.raises(ValueError, match="text labels"):
    dit.init(jax.random.key(0), jnp.ones((1, 8, 8, 4)), jnp.ones(1), jnp.zeros(1, int))

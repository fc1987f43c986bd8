"""model.remat (genjax.models.unet.rematerialised): the UNet's residual and attention blocks and
the DiT's transformer blocks under jax.checkpoint keep the parameter tree, the loss and the
gradients (dropout included), and keep fewer residuals for the backward pass (jax's view: XLA:CPU's
compiled memory shows no saving, so no test compiles for it)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from genjax.families import family_config
from genjax.models.diffusion import DIFFUSION_NETWORKS

TEXT_DIM = 8
TINY = {
  "unet": {"channels": 16, "channel_mult": (1,), "num_res_blocks": 1,
           "attention_resolutions": (8,), "norm_groups": 4, "dropout": 0.3},
  "dit": {"patch": 2, "hidden_size": 32, "depth": 2, "heads": 4},
}


def network(name: str, remat: bool, context_dim: int = 0, **overrides):
  """The network model.network = name builds from the diffusion family's config."""
  model = family_config("diffusion").model
  model.update({"network": name, "remat": remat, "context_dim": context_dim, **TINY[name],
                **overrides})
  return DIFFUSION_NETWORKS.get(name)(model, 0)


def inputs(context_dim: int, size: int = 8, batch: int = 2):
  """x [batch, size, size, 3], time [batch] and, with context_dim, text labels (row 1 padded)."""
  keys = jax.random.split(jax.random.key(0), 4)
  x = jax.random.normal(keys[0], (batch, size, size, 3))
  time = jnp.linspace(3.0, 700.0, batch)
  if not context_dim:
    return x, time, None
  mask = (jnp.arange(5)[None] < jnp.array([5] + [2] * (batch - 1))[:, None]).astype(jnp.float32)
  return x, time, {"tokens": jax.random.normal(keys[1], (batch, 5, context_dim)), "mask": mask,
                   "pooled": jax.random.normal(keys[2], (batch, context_dim))}


def random_params(net, args, scale: float = 0.1):
  """net's parameter tree filled with scale * N(0, 1) (the zero-initialised outputs too)."""
  shapes = jax.eval_shape(net.init, jax.random.key(0), *args)["params"]
  rng = np.random.default_rng(7)
  return jax.tree.map(lambda s: scale * rng.standard_normal(s.shape, np.float32), shapes)


def shapes_by_path(net, args) -> dict[str, tuple[int, ...]]:
  tree = jax.eval_shape(net.init, jax.random.key(0), *args)["params"]
  return {path: leaf.shape for path, leaf in traverse_util.flatten_dict(tree, sep="/").items()}


def loss_fn(net, args, dropout_seed: int = 5):
  """params -> mean squared output with train=True and a fixed dropout key."""
  def loss(params):
    out = net.apply({"params": params}, *args, train=True,
                    rngs={"dropout": jax.random.key(dropout_seed)})
    return jnp.mean(out**2)
  return loss


def test_remat_is_a_model_key_off_by_default_and_reaches_the_networks():
  assert family_config("diffusion").model.remat is False
  for name in TINY:
    assert network(name, remat=False).remat is False
    assert network(name, remat=True).remat is True


@pytest.mark.parametrize("name", ["unet", "dit"])
@pytest.mark.parametrize("context_dim", [0, TEXT_DIM])
def test_parameter_tree_is_the_same_with_and_without_remat(name, context_dim):
  args = inputs(context_dim)
  plain = shapes_by_path(network(name, False, context_dim), args)
  remat = shapes_by_path(network(name, True, context_dim), args)
  assert remat == plain
  blocks = ["ResBlock_0/Conv_0/kernel", "AttentionBlock_0/q/kernel"] if name == "unet" else [
    "block_0/mlp_in/kernel"]
  if name == "unet" and context_dim:
    blocks.append("CrossAttentionBlock_0/MultiHeadAttention_0/q/kernel")
  assert set(blocks) <= set(remat), sorted(remat)


@pytest.mark.parametrize("name", ["unet", "dit"])
def test_remat_gives_the_same_loss_and_gradients_with_dropout(name):
  args = inputs(TEXT_DIM)
  plain, remat = network(name, False, TEXT_DIM), network(name, True, TEXT_DIM)
  params = random_params(plain, args)
  loss, grads = jax.jit(jax.value_and_grad(loss_fn(plain, args)))(params)
  # and the loss with another dropout key, in the same program (one compilation less)
  (remat_loss, remat_grads), other_loss = jax.jit(
    lambda p: (jax.value_and_grad(loss_fn(remat, args))(p), loss_fn(remat, args, 6)(p))
  )(params)
  np.testing.assert_allclose(remat_loss, loss, rtol=1e-5)
  flat, remat_flat = (traverse_util.flatten_dict(g, sep="/") for g in (grads, remat_grads))
  assert remat_flat.keys() == flat.keys()
  # An attention key's bias has zero gradient in exact arithmetic (softmax ignores a shift shared
  # by all keys), so its float gradient is rounding noise (~1e-12): the tolerance also scales with
  # the largest gradient of the whole tree, not only with the leaf's own.
  scale = max(float(np.abs(grad).max()) for grad in flat.values())
  for path, grad in flat.items():
    np.testing.assert_allclose(remat_flat[path], grad, rtol=1e-5,
                               atol=1e-5 * float(np.abs(grad).max()) + 1e-8 * scale, err_msg=path)
  if name == "unet":  # the dropout is active: another key gives another loss
    assert abs(float(other_loss) - float(loss)) > 1e-3 * float(loss)


def residual_bytes(loss, params) -> int:
  """Bytes of the residuals jax.vjp keeps for the backward pass (traced, not computed)."""
  residuals = jax.eval_shape(lambda p: jax.tree.leaves(jax.vjp(loss, p)[1]), params)
  return sum(r.size * r.dtype.itemsize for r in residuals)


def top_level_checkpoints(loss, params) -> int:
  """Equations of the gradient's jaxpr that are jax.checkpoint calls."""
  checkpoint = jax.make_jaxpr(jax.checkpoint(jnp.sin))(1.0).eqns[0].primitive
  return sum(eqn.primitive is checkpoint for eqn in jax.make_jaxpr(jax.grad(loss))(params).eqns)


@pytest.mark.parametrize("name", ["unet", "dit"])
def test_remat_rematerialises_the_blocks(name):
  """Each wrapped block is a checkpoint in the gradient (UNet: 1 + 2 + 2 residual blocks, 1 + 1 +
  2 attention blocks, down, middle, up; DiT: its 2 blocks), and the residuals kept for the
  backward pass shrink to under half."""
  args = inputs(0)
  plain, remat = network(name, False), network(name, True)
  params = random_params(plain, args)
  wrapped = 9 if name == "unet" else TINY["dit"]["depth"]
  extra = top_level_checkpoints(loss_fn(remat, args), params) - top_level_checkpoints(
    loss_fn(plain, args), params)
  assert extra == wrapped
  assert residual_bytes(loss_fn(remat, args), params) < 0.5 * residual_bytes(
    loss_fn(plain, args), params)


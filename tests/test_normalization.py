"""genjax.models.normalization.GroupNorm: flax's GroupNorm in fewer passes over the activations."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.models.normalization import GroupNorm

SHAPE = (4, 8, 8, 16)  # [B, H, W, C], 4 groups of 4 channels


def _inputs():
  keys = jax.random.split(jax.random.key(0), 5)
  x = 3.0 * jax.random.normal(keys[0], SHAPE) + jax.random.normal(keys[1], SHAPE[-1:])
  params = {
    "scale": 1.0 + 0.3 * jax.random.normal(keys[2], SHAPE[-1:]),
    "bias": 0.3 * jax.random.normal(keys[3], SHAPE[-1:]),
  }
  cotangent = jax.random.normal(keys[4], SHAPE)
  return x, params, cotangent


def _apply(module):
  return lambda params, x: module.apply({"params": params}, x)


def test_group_norm_equals_flax_in_value_gradients_and_forward_mode():
  """Same parameters (names, shapes, initial values), outputs, reverse-mode gradients with respect
  to x, scale and bias, and Jacobian-vector products (the ODE likelihood's) as flax's GroupNorm."""
  x, params, cotangent = _inputs()
  ours, flax_gn = GroupNorm(num_groups=4), nn.GroupNorm(num_groups=4, epsilon=1e-6)
  initial = ours.init(jax.random.key(1), x)["params"]
  assert jax.tree.map(np.shape, initial) == jax.tree.map(
    np.shape, flax_gn.init(jax.random.key(1), x)["params"]
  )
  np.testing.assert_array_equal(initial["scale"], 1.0)
  np.testing.assert_array_equal(initial["bias"], 0.0)
  got, want = _apply(ours)(params, x), _apply(flax_gn)(params, x)
  assert got.shape == SHAPE
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  # with unit scale and zero bias, each (example, group) comes out with mean 0 and variance 1
  normalized = _apply(ours)({"scale": jnp.ones(16), "bias": jnp.zeros(16)}, x)
  grouped = normalized.reshape(4, 64, 4, 4).transpose(0, 2, 1, 3).reshape(4, 4, -1)
  np.testing.assert_allclose(grouped.mean(-1), 0.0, atol=1e-5)
  np.testing.assert_allclose(grouped.var(-1), 1.0, rtol=1e-4)

  def pullback(function):
    return jax.vjp(function, params, x)[1](cotangent)

  for got, want in zip(
    jax.tree.leaves(pullback(_apply(ours))), jax.tree.leaves(pullback(_apply(flax_gn))), strict=True
  ):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  tangent = jax.random.normal(jax.random.key(7), SHAPE)
  jvps = [
    jax.jvp(lambda v, f=f: f(params, v), (x,), (tangent,))[1]
    for f in (_apply(ours), _apply(flax_gn))
  ]
  np.testing.assert_allclose(jvps[0], jvps[1], rtol=1e-4, atol=1e-4)


def _large_reductions(function, *args) -> int:
  """How many reduce_sum equations of the jaxpr read a whole [B, H, W, C] activation."""
  size = int(np.prod(SHAPE))

  def count(jaxpr) -> int:
    total = 0
    for equation in jaxpr.eqns:
      if equation.primitive.name == "reduce_sum" and equation.invars[0].aval.size == size:
        total += 1
      for sub in jax.core.jaxprs_in_params(equation.params):
        total += count(sub)
    return total

  return count(jax.make_jaxpr(function)(*args).jaxpr)


def test_group_norm_backward_reads_the_activations_fewer_times_than_flax():
  """Forward and reverse mode together reduce whole activations four times (sum x, sum x^2; sum g,
  sum g x per example and channel), flax's formulation more often."""
  x, params, cotangent = _inputs()

  def step(module):
    def forward_and_backward(p, v):
      out, pullback = jax.vjp(_apply(module), p, v)
      return out, pullback(cotangent)

    return forward_and_backward

  ours = _large_reductions(step(GroupNorm(num_groups=4)), params, x)
  theirs = _large_reductions(step(nn.GroupNorm(num_groups=4, epsilon=1e-6)), params, x)
  assert ours == 4 and theirs > ours, (ours, theirs)


def test_group_norm_keeps_bfloat16_and_refuses_channels_that_do_not_split():
  """bfloat16 in, bfloat16 out, statistics in float32 (as flax's force_float32_reductions); a
  channel count the groups do not divide is an error that names the setting."""
  x, params, _ = _inputs()
  half = jax.tree.map(lambda v: v.astype(jnp.bfloat16), params)
  got = _apply(GroupNorm(num_groups=4))(half, x.astype(jnp.bfloat16))
  want = _apply(nn.GroupNorm(num_groups=4, epsilon=1e-6))(half, x.astype(jnp.bfloat16))
  assert got.dtype == want.dtype == jnp.bfloat16
  np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), atol=0.05)
  with pytest.raises(ValueError, match="16 channels do not split into 3 groups.*norm_groups"):
    GroupNorm(num_groups=3).init(jax.random.key(0), x)

"""genjax.models.conv: lax's convolution with a hand-written kernel gradient must equal lax's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.models.conv import Conv, conv_general_dilated

NHWC = ("NHWC", "HWIO", "NHWC")


@pytest.mark.parametrize(
  "batch, size, kernel, strides, padding",
  [
    (8, 8, 3, 1, "SAME"),  # 4-image chunks
    (5, 9, 2, 1, "VALID"),  # odd batch: one image per chunk
    (6, 7, 4, 1, ((2, 1), (1, 2))),  # asymmetric explicit padding
    (4, 8, 3, 2, "SAME"),  # strided: lax's own gradient
    (8, 8, 1, 1, "SAME"),
  ],
)
def test_values_and_gradients_equal_lax(batch, size, kernel, strides, padding):
  x = jax.random.normal(jax.random.key(0), (batch, size, size, 3))
  w = 0.3 * jax.random.normal(jax.random.key(1), (kernel, kernel, 3, 5))

  def loss_and_grads(conv):
    def loss(x, w):
      return jnp.sum(jnp.sin(conv(x, w, (strides, strides), padding, dimension_numbers=NHWC)))

    return jax.value_and_grad(loss, argnums=(0, 1))(x, w)

  (expected_loss, expected_grads) = loss_and_grads(jax.lax.conv_general_dilated)
  (loss, grads) = jax.jit(lambda: loss_and_grads(conv_general_dilated))()
  np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
  for grad, expected in zip(grads, expected_grads):
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-5 * float(jnp.abs(expected).max()))


def test_flax_conv_keeps_its_parameters():
  """Conv is nn.Conv with the fast gradient: same parameter tree, same output as lax."""
  x = jax.random.normal(jax.random.key(1), (4, 6, 6, 2))
  layer = Conv(3, (3, 3))
  params = layer.init(jax.random.key(0), x)
  assert jax.tree.map(jnp.shape, params) == {"params": {"kernel": (3, 3, 2, 3), "bias": (3,)}}
  kernel, bias = params["params"]["kernel"], params["params"]["bias"]
  reference = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=NHWC)
  np.testing.assert_allclose(layer.apply(params, x), reference + bias, rtol=1e-5, atol=1e-6)

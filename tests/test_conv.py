"""genjax.models.conv: its convolutions (hand-written kernel gradient at stride 1, space-to-depth
im2col when strided) must equal lax's in value, gradient and, for the gradient penalty, in the
gradient of an input-gradient norm."""

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
    (4, 8, 3, 2, "SAME"),  # strided, kernel not a multiple of the stride: lax
    (4, 8, 4, 2, "SAME"),  # DCGAN's discriminator convolution: space-to-depth im2col
    (3, 9, 4, 2, ((1, 2), (0, 1))),  # odd size, asymmetric padding
    (2, 9, 2, 2, "VALID"),  # the last row and column are never read
    (2, 12, 6, 3, "SAME"),
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
    np.testing.assert_allclose(
      grad, expected, rtol=1e-4, atol=1e-5 * float(jnp.abs(expected).max())
    )


@pytest.mark.parametrize("size, kernel, strides", [(8, 4, 2), (9, 2, 2), (8, 3, 1)])
def test_gradient_of_the_input_gradient_norm_equals_lax(size, kernel, strides):
  """What WGAN-GP's penalty differentiates: d/dw of ||d/dx sum(f(conv(x, w)))||^2."""
  x = jax.random.normal(jax.random.key(2), (3, size, size, 2))
  w = 0.3 * jax.random.normal(jax.random.key(3), (kernel, kernel, 2, 4))

  def penalty_gradient(conv):
    def penalty(w):
      def critic(x):
        y = conv(x, w, (strides, strides), "SAME", dimension_numbers=NHWC)
        return jnp.sum(jnp.tanh(y) ** 2)

      return jnp.sum(jax.grad(critic)(x) ** 2)

    return jax.value_and_grad(penalty)(w)

  expected_value, expected_grad = penalty_gradient(jax.lax.conv_general_dilated)
  value, grad = jax.jit(lambda: penalty_gradient(conv_general_dilated))()
  np.testing.assert_allclose(value, expected_value, rtol=1e-5)
  np.testing.assert_allclose(
    grad, expected_grad, rtol=1e-4, atol=1e-5 * float(jnp.abs(expected_grad).max())
  )


def test_flax_conv_keeps_its_parameters():
  """Conv is nn.Conv with the fast gradient: same parameter tree, same output as lax."""
  x = jax.random.normal(jax.random.key(1), (4, 6, 6, 2))
  layer = Conv(3, (3, 3))
  params = layer.init(jax.random.key(0), x)
  assert jax.tree.map(jnp.shape, params) == {"params": {"kernel": (3, 3, 2, 3), "bias": (3,)}}
  kernel, bias = params["params"]["kernel"], params["params"]["bias"]
  reference = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=NHWC)
  np.testing.assert_allclose(layer.apply(params, x), reference + bias, rtol=1e-5, atol=1e-6)

"""genjax.models.conv: its convolutions (im2col when strided and differentiated twice, matmuls for
the transposed convolutions) must equal lax's in value, gradient,
forward mode (JVPs) and derivatives of derivatives (the gradient penalty's gradient of an
input-gradient norm, and the other orders of nesting jvp, grad and vmap); on CPU the matmul
formulations are chosen, and forcing lax's (the GPU/TPU path) gives the same numbers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.gan.regularizers import gradient_penalty, r1_penalty
from genjax.models import conv
from genjax.models.conv import (
  Conv,
  conv_general_dilated,
  transposed_conv_4x4,
  transposed_conv_full,
)
from genjax.models.gan import DCGANDiscriminator, DCGANGenerator

NHWC = ("NHWC", "HWIO", "NHWC")


@pytest.mark.parametrize(
  "batch, size, kernel, strides, padding",
  [
    (4, 8, 3, 2, "SAME"),  # kernel not a multiple of the stride: strided patches
    (4, 8, 4, 2, "SAME"),  # DCGAN's discriminator convolution: space-to-depth im2col
    (3, 9, 4, 2, ((1, 2), (0, 1))),  # odd size, asymmetric padding
    (2, 9, 2, 2, "VALID"),  # the last row and column are never read
    (2, 12, 6, 3, "SAME"),
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


@pytest.mark.parametrize("size, kernel, strides", [(8, 4, 2), (9, 2, 2)])
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
  """Conv is nn.Conv computed by conv_general_dilated: same parameter tree, same output as lax."""
  x = jax.random.normal(jax.random.key(1), (4, 6, 6, 2))
  layer = Conv(3, (4, 4), strides=(2, 2))
  params = layer.init(jax.random.key(0), x)
  assert jax.tree.map(jnp.shape, params) == {"params": {"kernel": (4, 4, 2, 3), "bias": (3,)}}
  kernel, bias = params["params"]["kernel"], params["params"]["bias"]
  reference = jax.lax.conv_general_dilated(x, kernel, (2, 2), "SAME", dimension_numbers=NHWC)
  np.testing.assert_allclose(layer.apply(params, x), reference + bias, rtol=1e-5, atol=1e-6)


# (batch, size, kernel, strides): stride 2 with a kernel a multiple of it takes the space-to-depth
# im2col, 3x3 stride 2 (StyleGAN2's discriminator) the strided patches.
DERIVATIVE_SHAPES = [(4, 8, 4, 2), (3, 9, 2, 2), (3, 9, 3, 2)]


@pytest.mark.parametrize("batch, size, kernel, strides", DERIVATIVE_SHAPES)
@pytest.mark.parametrize("perturbed", ["input", "kernel", "both"])
def test_jvp_equals_lax(batch, size, kernel, strides, perturbed):
  """Forward mode (the probability-flow ODE's divergence perturbs the input only): values to
  rtol 1e-5, tangents to rtol 1e-4 with an absolute floor of 1e-5 of their largest entry."""
  keys = jax.random.split(jax.random.key(4), 4)
  x = jax.random.normal(keys[0], (batch, size, size, 3))
  w = 0.3 * jax.random.normal(keys[1], (kernel, kernel, 3, 5))
  dx = jax.random.normal(keys[2], x.shape) if perturbed != "kernel" else jnp.zeros_like(x)
  dw = jax.random.normal(keys[3], w.shape) if perturbed != "input" else jnp.zeros_like(w)

  def jvp(conv):
    def layer(x, w):
      return jnp.sin(conv(x, w, (strides, strides), "SAME", dimension_numbers=NHWC))

    if perturbed == "input":
      return jax.jvp(lambda x: layer(x, w), (x,), (dx,))
    if perturbed == "kernel":
      return jax.jvp(lambda w: layer(x, w), (w,), (dw,))
    return jax.jvp(layer, (x, w), (dx, dw))

  expected_value, expected_tangent = jvp(jax.lax.conv_general_dilated)
  value, tangent = jax.jit(lambda: jvp(conv_general_dilated))()
  np.testing.assert_allclose(value, expected_value, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
    tangent, expected_tangent, rtol=1e-4, atol=1e-5 * float(jnp.abs(expected_tangent).max())
  )
  assert float(jnp.abs(expected_tangent).max()) > 0.1


@pytest.mark.parametrize("batch, size, kernel, strides", DERIVATIVE_SHAPES)
@pytest.mark.parametrize(
  "derivative",
  ["grad_of_kernel_gradient_norm", "jvp_of_grad", "grad_of_jvp", "jvp_of_jvp", "vmap_of_grad"],
)
def test_second_order_derivatives_equal_lax(batch, size, kernel, strides, derivative):
  """Derivatives of derivatives through two convolutions (so the second one's input depends on
  the first kernel), equal to lax's to rtol 1e-4 with an absolute floor of 1e-5 of the largest
  entry: the gradient of a gradient norm over the kernels, forward-over-reverse (Hessian-vector
  products), the gradient of a JVP over the input (what training through the ODE likelihood
  would differentiate), a second JVP, and per-example kernel gradients."""
  keys = jax.random.split(jax.random.key(5), 5)
  x = jax.random.normal(keys[0], (batch, size, size, 2))
  kernels = (
    0.3 * jax.random.normal(keys[1], (kernel, kernel, 2, 3)),
    0.3 * jax.random.normal(keys[2], (kernel, kernel, 3, 2)),
  )
  dx = jax.random.normal(keys[3], x.shape)
  dkernels = tuple(
    jax.random.normal(k, w.shape) for k, w in zip(jax.random.split(keys[4]), kernels)
  )

  def derivative_through(conv):
    def loss(x, kernels):
      h = x
      for w in kernels:
        h = jnp.tanh(conv(h, w, (strides, strides), "SAME", dimension_numbers=NHWC))
      return jnp.sum(h**2)

    kernel_grad = jax.grad(loss, argnums=1)
    input_jvp = lambda x, kernels: jax.jvp(lambda x: loss(x, kernels), (x,), (dx,))[1]
    if derivative == "grad_of_kernel_gradient_norm":
      norm = lambda kernels: sum(jnp.sum(g**2) for g in kernel_grad(x, kernels))
      return jax.grad(norm)(kernels)
    if derivative == "jvp_of_grad":
      return jax.jvp(lambda kernels: kernel_grad(x, kernels), (kernels,), (dkernels,))
    if derivative == "grad_of_jvp":
      return jax.grad(lambda kernels: input_jvp(x, kernels) ** 2)(kernels)
    if derivative == "jvp_of_jvp":
      return jax.jvp(lambda x: input_jvp(x, kernels), (x,), (dx,))
    return jax.vmap(lambda example: kernel_grad(example[None], kernels))(x)

  expected = derivative_through(jax.lax.conv_general_dilated)
  result = jax.jit(lambda: derivative_through(conv_general_dilated))()
  for leaf, expected_leaf in zip(jax.tree.leaves(result), jax.tree.leaves(expected), strict=True):
    np.testing.assert_allclose(
      leaf, expected_leaf, rtol=1e-4, atol=1e-5 * float(jnp.abs(expected_leaf).max())
    )


def _force_lax(monkeypatch) -> None:
  """Makes the GPU/TPU decision (lax's own convolutions) on any backend."""
  monkeypatch.setattr(conv, "uses_matmul_formulations", lambda: False)


def _convolutions(fn, *args) -> int:
  return jax.jit(fn).lower(*args).as_text().count("stablehlo.convolution")


def test_cpu_chooses_the_matmul_formulations():
  """The strided 4x4 and 3x3 convolutions differentiated twice are im2col and the transposed
  convolutions are matmuls: no convolution op left. Differentiated once, the strided one stays lax's, and so does
  every stride-1 convolution (with genjax.backend's XLA flags lax's is the fastest there)."""
  if jax.default_backend() != "cpu":
    pytest.skip("GPU/TPU keep lax's convolutions")
  assert conv.uses_matmul_formulations()
  x = jnp.ones((2, 8, 8, 3))
  strided = lambda x, twice: conv_general_dilated(
    x, jnp.ones((4, 4, 3, 5)), (2, 2), "SAME", dimension_numbers=NHWC, differentiated_twice=twice
  )
  assert _convolutions(lambda x: strided(x, True), x) == 0
  assert _convolutions(lambda x: strided(x, False), x) == 1
  strided_3x3 = lambda x: conv_general_dilated(
    x, jnp.ones((3, 3, 3, 5)), (2, 2), "SAME", dimension_numbers=NHWC
  )
  assert _convolutions(strided_3x3, x) == 0
  assert _convolutions(lambda x: transposed_conv_4x4(x, jnp.ones((4, 4, 3, 5))), x) == 0
  assert _convolutions(lambda x: transposed_conv_full(x, jnp.ones((3, 3, 3, 5))), x) == 0
  stride_one = lambda x: conv_general_dilated(
    x, jnp.ones((3, 3, 3, 5)), (1, 1), "SAME", dimension_numbers=NHWC
  )
  kernel_gradient = (
    jax.jit(
      jax.grad(
        lambda w: jnp.sum(conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC) ** 2)
      )
    )
    .lower(jnp.ones((3, 3, 3, 5)))
    .as_text()
  )
  assert _convolutions(stride_one, x) == 1
  assert kernel_gradient.count("stablehlo.convolution") == 2  # forward and kernel gradient
  assert kernel_gradient.count("stablehlo.dot_general") == 0


def test_forcing_lax_gives_lax_convolutions(monkeypatch):
  _force_lax(monkeypatch)
  x = jnp.ones((2, 8, 8, 3))
  strided = lambda x: conv_general_dilated(
    x, jnp.ones((4, 4, 3, 5)), (2, 2), "SAME", dimension_numbers=NHWC
  )
  assert _convolutions(strided, x) == 1
  assert _convolutions(lambda x: transposed_conv_4x4(x, jnp.ones((4, 4, 3, 5))), x) == 1
  assert _convolutions(lambda x: transposed_conv_full(x, jnp.ones((3, 3, 3, 5))), x) == 1


def test_transposed_conv_full_is_the_definition():
  """out[2i + t, 2j + u] += x[i, j] w[t, u], summed over the input channels, output 2H + 2."""
  x = np.asarray(jax.random.normal(jax.random.key(8), (2, 3, 4, 2)))
  kernel = np.asarray(jax.random.normal(jax.random.key(9), (3, 3, 2, 5)))
  expected = np.zeros((2, 8, 10, 5))
  for i in range(3):
    for j in range(4):
      expected[:, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3] += np.einsum(
        "bc,tucf->btuf", x[:, i, j], kernel
      )
  np.testing.assert_allclose(transposed_conv_full(x, kernel), expected, rtol=1e-5, atol=1e-5)


def _transposed_conv_derivatives(transposed_conv, x, kernel):
  """The value, both gradients, the kernel gradient of an input-gradient norm (what StyleGAN2's
  path length regulariser differentiates) and a forward-mode derivative (Jacobian-vector
  product)."""
  loss = lambda x, kernel: jnp.sum(jnp.sin(transposed_conv(x, kernel)))
  input_gradient_norm = lambda kernel: jnp.sum(jax.grad(loss)(x, kernel) ** 2)
  first = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(x, kernel)
  directions = (jnp.cos(x), jnp.sin(kernel))
  forward = jax.jit(lambda *args: jax.jvp(transposed_conv, args, directions))(x, kernel)
  return first, jax.jit(jax.grad(input_gradient_norm))(kernel), forward


@pytest.mark.parametrize(
  "transposed_conv, kernel_size",
  [(transposed_conv_4x4, 4), (transposed_conv_full, 4), (transposed_conv_full, 3)],
)
def test_transposed_conv_equals_lax_in_value_and_gradients(
  monkeypatch, transposed_conv, kernel_size
):
  x = jax.random.normal(jax.random.key(6), (3, 5, 4, 2))
  kernel = 0.3 * jax.random.normal(jax.random.key(7), (kernel_size, kernel_size, 2, 3))
  expected_shape = (3, 10, 8, 3) if transposed_conv is transposed_conv_4x4 else (3, 12, 10, 3)
  assert transposed_conv(x, kernel).shape == expected_shape
  matmuls = _transposed_conv_derivatives(transposed_conv, x, kernel)
  _force_lax(monkeypatch)
  lax = _transposed_conv_derivatives(transposed_conv, x, kernel)
  for leaf, expected in zip(jax.tree.leaves(matmuls), jax.tree.leaves(lax), strict=True):
    np.testing.assert_allclose(
      leaf, expected, rtol=1e-5, atol=1e-5 * float(jnp.abs(expected).max())
    )


def _regularized_dcgan_step(regularizer: str):
  """The loss and parameter gradients of a tiny DCGAN pair under WGAN-GP's gradient penalty or
  R1 (no batch norm in D: its examples must not interact)."""
  generator = DCGANGenerator((8, 4), (8, 8, 1))
  critic = DCGANDiscriminator((4, 8), norm="none", differentiated_twice=True)
  keys = jax.random.split(jax.random.key(8), 5)
  z = jax.random.normal(keys[0], (4, 6))
  real = jnp.tanh(jax.random.normal(keys[1], (4, 8, 8, 1)))
  g_params = generator.init(keys[2], z)["params"]
  d_params = critic.init(keys[3], real)["params"]

  def loss(params):
    g_params, d_params = params
    fake, _ = generator.apply({"params": g_params}, z, mutable=["batch_stats"])
    d = lambda x: critic.apply({"params": d_params}, x)
    if regularizer == "gradient_penalty":
      eps = jax.random.uniform(keys[4], (4,))
      return jnp.mean(d(fake)) - jnp.mean(d(real)) + 10.0 * gradient_penalty(d, real, fake, eps)
    return jnp.mean(jax.nn.softplus(-d(real))) + 5.0 * r1_penalty(d, real) + jnp.mean(d(fake))

  return jax.jit(jax.value_and_grad(loss))((g_params, d_params))


@pytest.mark.parametrize("regularizer", ["gradient_penalty", "r1"])
def test_regularized_dcgan_step_equals_lax(monkeypatch, regularizer):
  """WGAN-GP and R1 differentiate D's input gradient through the im2col convolutions and G's
  matmul transposed convolutions: the same loss and gradients as with lax's convolutions."""
  matmuls = _regularized_dcgan_step(regularizer)
  _force_lax(monkeypatch)
  lax = _regularized_dcgan_step(regularizer)
  for leaf, expected in zip(jax.tree.leaves(matmuls), jax.tree.leaves(lax), strict=True):
    np.testing.assert_allclose(
      leaf, expected, rtol=1e-4, atol=1e-5 * float(jnp.abs(expected).max())
    )


def test_conv_kernels_script_times_every_shape_it_is_given():
  """scripts/conv_kernels.py (the README's kernel-by-kernel comparison with PyTorch): one row
  per shape with its forward and forward-and-gradients times; the torch columns where torch is
  installed in this environment."""
  import json
  import subprocess
  import sys

  from conftest import REPO

  command = [sys.executable, str(REPO / "scripts" / "conv_kernels.py"),
             "--shapes=2x4x3x5,1x6x2x2", "--repeats=2"]
  try:
    import torch

    command.append(f"--reference_python={sys.executable}")
  except ImportError:
    torch = None
  result = subprocess.run(command, check=True, capture_output=True, text=True)
  header, *rows = [json.loads(line) for line in result.stdout.strip().splitlines()]
  assert header["xla_matmul_gflops"] > 0
  assert [row["shape"] for row in rows] == ["2x4x3x5", "1x6x2x2"]
  for row in rows:
    assert row["xla_forward_ms"] > 0 and row["xla_forward_and_gradients_ms"] > 0
    if torch is not None:
      assert row["xla_vs_torch_forward"] == row["torch_forward_ms"] / row["xla_forward_ms"]

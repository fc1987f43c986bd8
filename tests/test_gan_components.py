"""GAN losses, regularizers, DiffAugment, the transposed convolution and spectral normalization,
each against values computed by hand or by an independent reference (numpy loops, SVD)."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.gan.diffaugment import diff_augment, parse_policy
from genjax.gan.losses import LOSSES
from genjax.gan.regularizers import gradient_penalty, orthogonal_regularization, r1_penalty
from genjax.models.gan import TransposedConv4x4
from genjax.models.spectral_norm import (
  SPECTRAL_COLLECTION,
  spectral_norm_estimates,
  spectral_normalized,
)

D_REAL = jnp.array([2.0, -1.0])
D_FAKE = jnp.array([0.5, -3.0])


def softplus(t: float) -> float:
  return math.log1p(math.exp(t))


def test_every_loss_matches_hand_computed_values():
  # Logistic D loss: batch mean of -log sigma(r) - log(1 - sigma(f)) = softplus(-r) + softplus(f).
  logistic_d = ((softplus(-2.0) + softplus(0.5)) + (softplus(1.0) + softplus(-3.0))) / 2
  expected = {
    "minimax": (logistic_d, (-softplus(0.5) - softplus(-3.0)) / 2),  # mean log(1 - sigma(f))
    "non_saturating": (logistic_d, (softplus(-0.5) + softplus(3.0)) / 2),  # mean -log sigma(f)
    "least_squares": (
      ((0.5 * 1.0 + 0.5 * 0.25) + (0.5 * 4.0 + 0.5 * 9.0)) / 2,
      (0.5 * 0.25 + 0.5 * 16.0) / 2,
    ),
    "wasserstein": (((0.5 - 2.0) + (-3.0 + 1.0)) / 2, -(0.5 - 3.0) / 2),
    "hinge": (((0.0 + 1.5) + (2.0 + 0.0)) / 2, -(0.5 - 3.0) / 2),
  }
  assert set(LOSSES.names()) == set(expected)
  for name, (d_value, g_value) in expected.items():
    loss = LOSSES.get(name)
    np.testing.assert_allclose(loss.discriminator(D_REAL, D_FAKE), d_value, rtol=1e-6, err_msg=name)
    np.testing.assert_allclose(loss.generator(D_FAKE), g_value, rtol=1e-6, err_msg=name)


def test_unknown_loss_lists_the_valid_ones():
  with pytest.raises(
    ValueError, match="Unknown GAN loss 'hinj'.*Did you mean 'hinge'.*least_squares, minimax"
  ):
    LOSSES.get("hinj")


def test_gradient_penalty_matches_hand_computation():
  # D(x) = 0.5 * ||x||^2 has grad x, so the penalty is mean_b (||x_hat_b|| - 1)^2 with
  # x_hat = eps * real + (1 - eps) * fake.
  real = jnp.array([[3.0, 0.0], [0.0, 1.0]])
  fake = jnp.array([[1.0, 0.0], [0.0, -1.0]])
  eps = jnp.array([0.5, 0.25])
  # x_hat = [2, 0] (norm 2) and [0, 0.25 - 0.75] = [0, -0.5] (norm 0.5): ((2-1)^2 + (0.5-1)^2) / 2.
  penalty = gradient_penalty(lambda x: 0.5 * jnp.sum(x**2, axis=1), real, fake, eps)
  np.testing.assert_allclose(penalty, (1.0 + 0.25) / 2, rtol=1e-5)
  # A linear critic w.x has gradient w everywhere: (||w|| - 1)^2 = (5 - 1)^2 for w = [3, 4].
  linear = gradient_penalty(lambda x: x @ jnp.array([3.0, 4.0]), real, fake, eps)
  np.testing.assert_allclose(linear, 16.0, rtol=1e-5)
  # Images: the per-example norm runs over all pixels and channels.
  images = jnp.ones((2, 2, 2, 1))
  image_penalty = gradient_penalty(
    lambda x: 0.5 * jnp.sum(x**2, axis=(1, 2, 3)), images, 0 * images, eps
  )
  norms = np.array([0.5, 0.25]) * 2.0  # ||eps * ones(4)|| = 2 eps
  np.testing.assert_allclose(image_penalty, np.mean((norms - 1) ** 2), rtol=1e-5)


def test_r1_penalty_matches_hand_computation():
  # D(x) = sum(x^3) has gradient 3x^2: ||.||^2 = 9 * sum(x^4).
  real = jnp.array([[1.0, 2.0], [0.5, -1.0]])
  expected = (9 * (1 + 16) + 9 * (0.0625 + 1)) / 2
  np.testing.assert_allclose(r1_penalty(lambda x: jnp.sum(x**3, axis=1), real), expected, rtol=1e-6)


def test_orthogonal_regularization_penalizes_only_off_diagonal_kernel_entries():
  kernel = jnp.array([[1.0, 2.0], [3.0, 4.0]])  # W^T W = [[10, 14], [14, 20]]
  params = {
    "Dense_0": {"kernel": kernel, "bias": jnp.ones(2)},
    "gain": {"embedding": jnp.ones((3, 2))},
  }
  np.testing.assert_allclose(orthogonal_regularization(params), 2 * 14.0**2, rtol=1e-6)
  orthonormal = jnp.linalg.qr(jax.random.normal(jax.random.key(0), (6, 6)))[0]
  conv = {"Conv_0": {"kernel": orthonormal.reshape(3, 2, 1, 6) * 3.0}}  # columns stay orthogonal
  np.testing.assert_allclose(orthogonal_regularization(conv), 0.0, atol=1e-8)


def test_diffaugment_is_differentiable_and_each_policy_acts():
  x = jax.random.uniform(jax.random.key(0), (8, 16, 16, 3), minval=-1, maxval=1)
  rng = jax.random.key(1)
  translated = diff_augment(x, rng, ("translation",))
  shifted_out = (
    np.asarray(translated == 0).reshape(8, -1).any(axis=1)
  )  # zeros fill in at the border
  assert shifted_out.sum() >= 4 and translated.shape == x.shape
  cut = diff_augment(x, rng, ("cutout",))
  zero_fraction = np.asarray(cut == 0).reshape(8, -1).mean(axis=1)
  assert np.all(zero_fraction > 0.0) and np.all(
    zero_fraction <= 0.25 + 1e-6
  )  # an 8x8 square at most
  coloured = diff_augment(x, rng, ("color",))
  assert not np.allclose(coloured, x)
  # Gradients flow through the whole policy to the input.
  grad = jax.grad(lambda x: diff_augment(x, rng, parse_policy("color,translation,cutout")).sum())(x)
  assert np.abs(np.asarray(grad)).sum() > 0
  with pytest.raises(
    ValueError, match="Unknown DiffAugment policy 'colour'.*color, cutout, translation"
  ):
    parse_policy("colour,translation")


@pytest.mark.parametrize("features", [1, 5])
def test_transposed_conv_matches_the_definition(features):
  """out[2i + k - 1] += x[i] w[k] per axis (PyTorch ConvTranspose2d(4, 2, 1)), by numpy loops."""
  x = np.asarray(jax.random.normal(jax.random.key(0), (2, 3, 4, 2)))
  layer = TransposedConv4x4(features, use_bias=False)
  params = layer.init(jax.random.key(1), x)
  w = np.asarray(params["params"]["kernel"])
  expected = np.zeros((2, 6, 8, features))
  for i in range(3):
    for j in range(4):
      for ki in range(4):
        for kj in range(4):
          row, col = 2 * i + ki - 1, 2 * j + kj - 1
          if 0 <= row < 6 and 0 <= col < 8:
            expected[:, row, col] += x[:, i, j] @ w[ki, kj]
  np.testing.assert_allclose(layer.apply(params, x), expected, rtol=1e-5, atol=1e-5)


class _Normalized(nn.Module):
  layer: nn.Module

  @nn.compact
  def __call__(self, x, update_stats):
    return spectral_normalized(self.layer, True, update_stats)(x)


@pytest.mark.parametrize(
  "layer, shape", [(nn.Dense(7), (5, 11)), (nn.Conv(6, (3, 3)), (2, 5, 5, 4))]
)
def test_spectral_norm_estimate_converges_to_the_top_singular_value(layer, shape):
  model = _Normalized(layer)
  x = jnp.ones(shape)
  variables = model.init(jax.random.key(0), x, update_stats=False)
  assert set(variables) == {"params", SPECTRAL_COLLECTION}  # u is state, not a trainable parameter
  kernel = np.asarray(variables["params"]["layer"]["kernel"])
  top = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
  state = {SPECTRAL_COLLECTION: variables[SPECTRAL_COLLECTION]}
  apply = jax.jit(
    lambda state: model.apply(
      {"params": variables["params"], **state}, x, update_stats=True, mutable=[SPECTRAL_COLLECTION]
    )
  )
  first = None
  for _ in range(60):  # one power iteration per call, as in training
    _, state = apply(state)
    first = first if first is not None else spectral_norm_estimates(state)
  (sigma,) = spectral_norm_estimates(state).values()
  (sigma_after_one,) = first.values()
  assert abs(sigma_after_one - top) > 1e-3 * top  # a random start is not already converged
  np.testing.assert_allclose(sigma, top, rtol=1e-3)
  # The layer computes with W / sigma(W) (the bias is zero at init): outputs scale by 1 / sigma.
  normalized = model.apply({"params": variables["params"], **state}, x, update_stats=False)
  raw = layer.apply({"params": variables["params"]["layer"]}, x)
  np.testing.assert_allclose(normalized, raw / sigma, rtol=1e-4, atol=1e-5)


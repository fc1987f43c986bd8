"""configs/gan_mnist_mlp.py, the classic MLP GAN: its layer shapes, the two losses' generator
gradients, the alternating update order of one GAN train step (reproduced by hand with Adam), and
mode coverage of the same MLP on the 8-Gaussian ring through the real training loop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import parallel, trainer
from genjax.config import flat_keys
from genjax.datasets import dataset_info
from genjax.families import get_family
from genjax.families.gan import GANFamily
from genjax.gan.losses import LOSSES
from genjax.train_state import create_train_state

CONFIG = "gan_mnist_mlp.py"


def _family(config) -> GANFamily:
  return get_family("gan")(config, dataset_info(config.data), parallel.make_mesh())


def _parameter_shapes(family: GANFamily) -> dict[str, dict[str, dict[str, tuple[int, ...]]]]:
  """{network: {layer: {"kernel" | "bias": shape}}} of the family's initial parameters."""
  batch = trainer.dummy_batch(family.example_shape)
  params, _ = jax.eval_shape(lambda rng: family.init(rng, batch), jax.random.key(0))
  return jax.tree.map(lambda leaf: tuple(leaf.shape), params)


def test_networks_are_the_classic_mlp_gan_on_28x28_mnist(load):
  """G: 100 -> 128 (ReLU) -> 784 (tanh) -> 28x28x1; D: 784 -> 128 (ReLU) -> 1 logit."""
  config = load(CONFIG)
  family = _family(config)
  assert family.example_shape == (28, 28, 1)  # native MNIST: data.image_size 0, no zero padding
  assert _parameter_shapes(family) == {
    "generator": {
      "Dense_0": {"kernel": (100, 128), "bias": (128,)},
      "Dense_1": {"kernel": (128, 784), "bias": (784,)},
    },
    "discriminator": {
      "Dense_0": {"kernel": (784, 128), "bias": (128,)},
      "Dense_1": {"kernel": (128, 1), "bias": (1,)},
    },
  }
  lines = trainer.summary(config).splitlines()
  assert f"generator: {100 * 128 + 128 + 128 * 784 + 784:,} parameters" in lines  # 114,064
  assert f"discriminator: {784 * 128 + 128 + 128 + 1:,} parameters" in lines  # 100,609
  assert family.generator.tanh_output and family.discriminator.leaky_slope == 0.0  # ReLU in D

  ring = _family(load(f"{CONFIG}:ring"))
  assert not ring.generator.tanh_output  # points: linear output
  shapes = _parameter_shapes(ring)
  latent_dim = ring.config.model.latent_dim
  assert shapes["generator"]["Dense_0"]["kernel"] == (latent_dim, 128)
  assert shapes["generator"]["Dense_1"]["kernel"] == (128, 2)
  assert shapes["discriminator"]["Dense_0"]["kernel"] == (2, 128)
  assert shapes["discriminator"]["Dense_1"]["kernel"] == (128, 1)
  assert ring.discriminator.leaky_slope == 0.0 and ring.config.model.loss == "non_saturating"


def test_config_variants_and_the_ten_minute_budget(load):
  config = load(CONFIG)
  assert config.model.loss == "non_saturating" and config.training.batch_size == 64
  assert config.training.max_train_minutes == 10.0 and config.training.log_every == 100
  minimax = load(f"{CONFIG}:minimax")
  default_values, minimax_values = _flat_values(config), _flat_values(minimax)
  assert [key for key in default_values if default_values[key] != minimax_values[key]] == [
    "model.loss"
  ]
  assert minimax.model.loss == "minimax"
  assert _flat_values(load(CONFIG, **{"model.loss": "minimax"})) == minimax_values
  with pytest.raises(ValueError, match="Unknown config argument 'small'"):
    load(f"{CONFIG}:small")


def _flat_values(config) -> dict[str, object]:
  """{dotted key: value} of every leaf of a config."""
  values = {}
  for key in flat_keys(config):
    value = config
    for part in key.split("."):
      value = value[part]
    values[key] = value
  return values


def test_minimax_generator_gradient_vanishes_where_the_non_saturating_one_does_not(load):
  """L_G(minimax) = mean log(1 - sigmoid(d)), L_G(non_saturating) = mean -log sigmoid(d); at a
  confident D (d_fake << 0) dL_G/dd_fake is -sigmoid(d) / B (about 0) for minimax and
  -(1 - sigmoid(d)) / B (about -1 / B) for non_saturating; both share L_D."""
  saturating = _family(load(f"{CONFIG}:minimax")).loss_fns
  non_saturating = _family(load(CONFIG)).loss_fns
  assert saturating is LOSSES.get("minimax") and non_saturating is LOSSES.get("non_saturating")

  d_real = jnp.array([2.0, -0.3, 0.7, 5.0])
  d_fake = jnp.array([-3.0, -0.5, 0.0, 1.5])
  sigmoid = jax.nn.sigmoid
  np.testing.assert_allclose(
    saturating.generator(d_fake), jnp.mean(jnp.log(1.0 - sigmoid(d_fake))), rtol=1e-6
  )
  np.testing.assert_allclose(
    non_saturating.generator(d_fake), jnp.mean(-jnp.log(sigmoid(d_fake))), rtol=1e-6
  )
  expected_d_loss = jnp.mean(-jnp.log(sigmoid(d_real)) - jnp.log(1.0 - sigmoid(d_fake)))
  for loss in (saturating, non_saturating):
    np.testing.assert_allclose(loss.discriminator(d_real, d_fake), expected_d_loss, rtol=1e-6)

  confident = jnp.array([-6.0, -8.0, -10.0])  # D(G(z)) = sigmoid(d) between 2.5e-3 and 4.5e-5
  batch = confident.shape[0]
  saturating_grad = jax.grad(saturating.generator)(confident)
  non_saturating_grad = jax.grad(non_saturating.generator)(confident)
  np.testing.assert_allclose(saturating_grad, -sigmoid(confident) / batch, rtol=1e-5)
  np.testing.assert_allclose(non_saturating_grad, -(1.0 - sigmoid(confident)) / batch, rtol=1e-5)
  assert np.all(np.abs(saturating_grad) < 1e-3)  # vanishing: G barely learns from a confident D
  assert np.all(np.abs(non_saturating_grad) > 0.99 / batch)  # the full push towards "real"


def _adam(params, grads, moments, count, lr: float, optim):
  """One Adam update (Kingma & Ba 2015) of a tree with optim.b1, optim.b2, optim.eps, written out:
  count = updates so far + 1; moments = (m, v) trees like params. Returns (params, moments)."""
  b1, b2, eps = optim.b1, optim.b2, optim.eps
  first, second = moments
  first = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, first, grads)
  second = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, second, grads)

  def step(p, m, v):
    m_hat, v_hat = m / (1 - b1**count), v / (1 - b2**count)
    return p - lr * m_hat / (jnp.sqrt(v_hat) + eps)

  return jax.tree.map(step, params, first, second), (first, second)


def test_train_step_updates_d_with_the_old_g_then_g_through_the_new_d(load):
  """Two family train steps == two alternating steps written out by hand: D's Adam step on
  jax.grad of the family's discriminator_loss at the old G, then G's Adam step on jax.grad of its
  generator_loss at the NEW D. The variants that use the old D for G, or the new G for D, differ."""
  batch_size = 8
  config = load(f"{CONFIG}:tiny", **{"training.batch_size": batch_size})
  optim = config.optim
  family = _family(config)
  batches = [
    {
      "x": jax.random.uniform(jax.random.key(seed), (batch_size, 28, 28, 1)),
      "label": jnp.zeros((batch_size,), jnp.int32),
    }
    for seed in (10, 11)
  ]
  params, model_state = jax.jit(family.init)(jax.random.key(0), batches[0])
  assert model_state == {}  # no spectral norm, no ADA: D keeps no state
  state = create_train_state(params, model_state, family.optimizer, jax.random.key(1))
  train_step = jax.jit(family.train_step)

  @jax.jit
  def step_by_hand(networks, moments, count, rng, batch):
    """One alternating step from networks = {"generator", "discriminator"} params and their Adam
    moments, the step's PRNG key split as train_step splits it; also the two wrong variants."""
    g_params, d_params = networks["generator"], networks["discriminator"]
    rng, d_rng, g_rng = jax.random.split(rng, 3)
    (critic_key,) = jax.random.split(d_rng, config.model.n_critic)

    def d_step(g_params):
      d_grads, _ = jax.grad(family.discriminator_loss, has_aux=True)(
        d_params, g_params, model_state, batch, critic_key
      )
      return _adam(d_params, d_grads, moments["discriminator"], count, optim.d_lr, optim)

    def g_step(d_params):
      g_grads, _ = jax.grad(family.generator_loss, has_aux=True)(
        g_params, d_params, model_state, g_rng, batch_size
      )
      return _adam(g_params, g_grads, moments["generator"], count, optim.lr, optim)

    new_d_params, d_moments = d_step(g_params)  # D against the old G
    new_g_params, g_moments = g_step(new_d_params)  # G through the updated D
    variants = {
      "G through the old D": (g_step(d_params)[0], new_g_params),
      "D against the updated G": (d_step(new_g_params)[0], new_d_params),
    }
    networks = {"generator": new_g_params, "discriminator": new_d_params}
    return networks, {"generator": g_moments, "discriminator": d_moments}, rng, variants

  networks = params
  zeros = jax.tree.map(jnp.zeros_like, params)
  moments = {name: (tree, tree) for name, tree in zeros.items()}  # Adam's (m, v), as optax starts
  rng = state.rng
  for count, batch in enumerate(batches, start=1):
    state, _ = train_step(state, batch)
    networks, moments, rng, variants = step_by_hand(networks, moments, count, rng, batch)
    jax.tree.map(
      lambda got, want: np.testing.assert_allclose(got, want, rtol=0, atol=1e-6),
      state.params, networks,
    )
    for name, (wrong, right) in variants.items():
      assert _max_difference(wrong, right) > 1e-5, name


def _max_difference(first, second) -> float:
  """max |first - second| over the leaves of two trees of one structure."""
  differences = jax.tree.map(lambda a, b: jnp.max(jnp.abs(a - b)), first, second)
  return float(max(jax.tree.leaves(differences)))


@pytest.mark.slow  # 3,000 steps: 45-66 s here on 2 shared cores (pyproject: slow = over ~30 s)
def test_ring_mlp_gan_covers_all_8_modes(load, tmp_path):
  """The same MLP (hidden 128, ReLU, non-saturating loss) trained by the real loop on the ring of
  8 Gaussians: raw_modes of 2,500 EMA-generator samples (each mode >= 1/5 of its share of the
  points within 3 std of a mode)."""
  config = load(f"{CONFIG}:ring")
  results = trainer.train_and_evaluate(config, tmp_path)
  assert results["step"] == config.training.num_train_steps
  assert results["eval/raw_modes_covered"] == 8.0
  assert results["eval/raw_high_quality"] > 0.5

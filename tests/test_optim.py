"""Optimizer pieces from the config: schedules, clipping, MultiSteps accumulation and the EMA."""

import jax.numpy as jnp
import numpy as np
import optax

from genjax.config import base_config
from genjax.optim import make_optimizer, make_schedule
from genjax.train_state import apply_updates, ema_decay_at


def optim_config(**values):
  config = base_config().optim
  config.update(values)
  return config


def test_warmup_then_cosine_decay():
  schedule = make_schedule(optim_config(lr=1.0, warmup_steps=10, schedule="cosine",
                                        end_lr_factor=0.1), num_train_steps=110)
  assert float(schedule(0)) == 0.0 and abs(float(schedule(5)) - 0.5) < 1e-6
  assert abs(float(schedule(10)) - 1.0) < 1e-6
  assert abs(float(schedule(60)) - 0.55) < 1e-3  # half way down the cosine: (1 + 0.1) / 2
  assert abs(float(schedule(110)) - 0.1) < 1e-6


def test_accumulation_updates_params_and_ema_every_k_micro_steps():
  optim = optim_config(name="sgd", momentum=0.0, lr=0.1, accumulate_steps=2, ema_decay=0.5)
  optimizer, schedule = make_optimizer(optim, num_train_steps=10)
  assert float(schedule(0)) == 0.1
  params = ema = {"w": jnp.zeros(2)}
  opt_state = optimizer.init(params)
  grads = [{"w": jnp.array([1.0, 2.0])}, {"w": jnp.array([3.0, 0.0])}]
  params, ema, opt_state = apply_updates(params, ema, opt_state, grads[0], optimizer, optim.ema_decay)
  np.testing.assert_array_equal(params["w"], [0.0, 0.0])  # first micro-step: nothing applied
  np.testing.assert_array_equal(ema["w"], [0.0, 0.0])
  params, ema, _ = apply_updates(params, ema, opt_state, grads[1], optimizer, optim.ema_decay)
  np.testing.assert_allclose(params["w"], [-0.2, -0.1])  # lr * mean of the two gradients
  np.testing.assert_allclose(ema["w"], [-0.1, -0.05])  # 0.5 * old + 0.5 * new


def test_global_norm_clipping():
  optimizer, _ = make_optimizer(
    optim_config(name="sgd", momentum=0.0, lr=1.0, grad_clip_norm=1.0), 10
  )
  grads = {"w": jnp.array([3.0, 4.0])}
  updates, _ = optimizer.update(grads, optimizer.init(grads))
  np.testing.assert_allclose(updates["w"], [-0.6, -0.8], rtol=1e-6)
  assert abs(float(optax.global_norm(updates)) - 1.0) < 1e-6


def test_ema_warmup_ramps_the_decay_up_over_updates():
  optim = optim_config(ema_decay=0.999, accumulate_steps=2)
  decays = [float(ema_decay_at(optim, jnp.int32(step))) for step in (0, 1, 2, 18, 100_000)]
  np.testing.assert_allclose(decays, [0.1, 0.1, 2 / 11, 10 / 19, 0.999], rtol=1e-6)
  assert ema_decay_at(optim_config(ema_decay=0.999, ema_warmup="none"), jnp.int32(0)) == 0.999


def test_ema_of_a_short_run_tracks_the_raw_weights():
  """600 SGD updates on a quadratic from w0 = 10 towards 0 with decay 0.999: the ramped EMA ends
  within a few percent of the raw weights; a constant decay still holds 0.999^600 = 55% of w0."""

  def run(warmup: str) -> tuple[float, float]:
    optim = optim_config(name="sgd", momentum=0.0, lr=0.01, ema_decay=0.999, ema_warmup=warmup)
    optimizer, _ = make_optimizer(optim, num_train_steps=600)
    params = ema = {"w": jnp.full(1, 10.0)}
    opt_state = optimizer.init(params)
    for step in range(600):
      grads = {"w": params["w"]}  # d/dw of w^2 / 2
      decay = ema_decay_at(optim, jnp.int32(step))
      params, ema, opt_state = apply_updates(params, ema, opt_state, grads, optimizer, decay)
    return float(params["w"][0]), float(ema["w"][0])

  raw, ramped = run("ramp")
  assert raw < 0.03 and abs(ramped - raw) < 0.05  # 10 * 0.99^600 = 0.024
  _, constant = run("none")
  assert constant > 2.5  # mostly the initial weights


def test_parameter_groups_freeze_and_scale_the_learning_rate_by_path():
  """SGD with lr 1 and clipping: frozen gradients neither move their parameter nor count in the
  clipping norm; a group's multiplier scales its step."""
  optim = optim_config(name="sgd", momentum=0.0, lr=1.0, grad_clip_norm=5.0,
                       freeze=("^frozen/",), lr_multipliers=("^slow/=0.5",))
  optimizer, _ = make_optimizer(optim, num_train_steps=10, path_prefix="")
  params = {"frozen": {"w": jnp.ones(2)}, "slow": {"w": jnp.ones(2)}, "fast": {"w": jnp.ones(2)}}
  grads = {"frozen": {"w": jnp.full(2, 100.0)}, "slow": {"w": jnp.array([3.0, 0.0])},
           "fast": {"w": jnp.array([0.0, 4.0])}}
  params, _, _ = apply_updates(params, params, optimizer.init(params), grads, optimizer, 0.0)
  np.testing.assert_array_equal(params["frozen"]["w"], [1.0, 1.0])
  np.testing.assert_allclose(params["slow"]["w"], [1.0 - 0.5 * 3.0, 1.0])  # norm 5: no clipping
  np.testing.assert_allclose(params["fast"]["w"], [1.0, 1.0 - 4.0])

"""The sr3 family (genjax.families.sr3): the degradation, the configs' sizes, a network that reads
its conditioning, clear errors, and a tiny MNIST run that trains, resumes exactly, writes its
grid and super-resolves 7x7 digits to 28x28."""

from __future__ import annotations

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import MNIST_DIR, REPO
from PIL import Image

from genjax import images, parallel, trainer
from genjax.config import apply_overrides, load_config
from genjax.datasets import dataset_info
from genjax.diffusion.autoguidance import Autoguided
from genjax.families import get_family
from genjax.families.sr3 import downsample
from genjax.input_pipeline import eval_batches


def make_family(config):
  return get_family(config.family)(config, dataset_info(config.data), parallel.make_mesh())


def test_downsample_is_the_block_mean_and_refuses_sizes_it_does_not_divide():
  x = np.random.default_rng(0).normal(size=(2, 8, 12, 3)).astype(np.float32)
  expected = np.zeros((2, 2, 3, 3), np.float32)
  for i in range(2):
    for j in range(3):
      expected[:, i, j] = x[:, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4].mean(axis=(1, 2))
  np.testing.assert_allclose(np.asarray(downsample(jnp.asarray(x), 4)), expected, atol=1e-6)
  tiny = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
  assert np.asarray(downsample(tiny, 2))[0, :, :, 0].tolist() == [[2.5, 4.5], [10.5, 12.5]]
  with pytest.raises(ValueError, match=r"Cannot downsample 28x30 images by 4"):
    downsample(jnp.zeros((1, 28, 30, 1)), 4)


def test_config_sizes_and_shapes(load):
  """The counts in the configs' docstrings, and the imagenet64 network's 6 input / 3 output
  channels on 64x64 with 16x16 inputs (shapes only, nothing computed)."""
  assert trainer.summary(load("sr3_mnist.py")).splitlines()[-1] == "total_params=1113089"
  config = load("sr3_imagenet64.py")
  assert trainer.summary(config).splitlines()[-1] == "total_params=133186051"
  family = make_family(config)
  assert family.scale == 4 and family.example_shape == (64, 64, 3)
  batch = {"x": jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32)}
  params, _ = jax.eval_shape(family.init, jax.random.key(0), batch)
  assert params["Conv_0"]["kernel"].shape == (3, 3, 6, 128)  # x_t and the upsampled input
  low_res = jax.ShapeDtypeStruct((2, 16, 16, 3), jnp.float32)
  eps = jax.eval_shape(
    lambda p, y: family.eps_fn_for(p, y)(jnp.zeros((2, 64, 64, 3)), jnp.full((2,), 5)),
    params,
    low_res,
  )
  assert eps.shape == (2, 64, 64, 3)
  out = jax.eval_shape(family.super_resolve, params, low_res, jax.random.key(0))
  assert out.shape == (2, 64, 64, 3)


def random_params(family, rng: np.random.Generator):
  """Parameters of the family's shapes, drawn in numpy (quicker than compiling the initialisers)
  with no zero-initialised layer: kernels N(0, 1/fan_in), norm scales 1 + N(0, 0.1^2), the rest
  N(0, 0.1^2)."""
  shapes, _ = jax.eval_shape(family.init, jax.random.key(0), {"x": jnp.zeros((1, 28, 28, 1))})

  def draw(path, leaf):
    name, noise = jax.tree_util.keystr(path), rng.normal(size=leaf.shape).astype(np.float32)
    if name.endswith("['kernel']"):
      return jnp.asarray(noise / np.sqrt(np.prod(leaf.shape[:-1])))
    return jnp.asarray((1.0 if name.endswith("['scale']") else 0.0) + 0.1 * noise)

  return jax.tree_util.tree_map_with_path(draw, shapes)


def test_the_network_sees_x_t_and_the_upsampled_low_resolution_image(load):
  """With fixed params, x_t and t, eps_hat changes when low_res changes, not when it is the
  same, and equals the UNet applied to concat([x_t, bicubic(low_res)])."""
  family = make_family(load("sr3_mnist.py:tiny", **{"sampling.clip_denoised": False}))
  rng = np.random.default_rng(0)
  params = random_params(family, rng)
  x_t = jnp.asarray(rng.normal(size=(2, 28, 28, 1)), jnp.float32)
  low_res = jnp.asarray(rng.uniform(-1, 1, size=(2, 7, 7, 1)), jnp.float32)
  other = low_res.at[1].set(-low_res[1])  # example 0 unchanged, example 1 changed
  t = jnp.array([100, 600])
  eps = jax.jit(lambda p, y: family.eps_fn_for(p, y)(x_t, t))
  a, b, again = eps(params, low_res), eps(params, other), eps(params, low_res)
  np.testing.assert_array_equal(a, again)
  np.testing.assert_array_equal(a[0], b[0])
  assert float(jnp.max(jnp.abs(a[1] - b[1]))) > 1e-2
  condition = jax.image.resize(low_res, (2, 28, 28, 1), "bicubic")
  inputs = jnp.concatenate([x_t, condition], -1)
  direct = jax.jit(family.network.apply)({"params": params}, inputs, family.process.network_time(t))
  np.testing.assert_allclose(a, direct, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match=r"super-resolves \[B, 7, 7, 1\] images to 28x28"):
    family.eps_fn_for(params, jnp.zeros((2, 14, 14, 1)))


def test_autoguidance_extrapolates_the_conditioned_network(load):
  """Autoguided params (genjax.diffusion.autoguidance) reach the UNet through the low-resolution
  conditioning: eps = (1 + w) eps_model - w eps_guide for the same x_t and low_res."""
  family = make_family(load("sr3_mnist.py:tiny", **{"sampling.clip_denoised": False}))
  rng = np.random.default_rng(0)
  model, guide = random_params(family, rng), random_params(family, rng)
  x_t = jnp.asarray(rng.normal(size=(2, 28, 28, 1)), jnp.float32)
  low_res = jnp.asarray(rng.uniform(-1, 1, size=(2, 7, 7, 1)), jnp.float32)
  t = jnp.array([100, 600])
  eps = jax.jit(lambda p: family.eps_fn_for(p, low_res)(x_t, t))
  guided = eps(Autoguided(model, guide, jnp.float32(1.5)))
  np.testing.assert_allclose(guided, 2.5 * eps(model) - 1.5 * eps(guide), rtol=1e-4, atol=1e-4)
  assert float(jnp.max(jnp.abs(guided - eps(model)))) > 1e-2


@pytest.mark.parametrize(
  "overrides, message",
  [
    ({"superres.scale": 3}, "superres.scale must be 2 or 4, got 3"),
    ({"data.image_size": 30}, "not divisible by superres.scale=4"),
    ({"superres.upsample": "bilinear"}, "superres.upsample must be 'bicubic' or 'nearest'"),
    ({"model.num_classes": 10}, "model.num_classes must be 0"),
    ({"eval.likelihood": "vlb"}, "set eval.likelihood='none'"),
    ({"eval.sample_metrics": ("mnist_fid",)}, "set eval.sample_metrics=()"),
    ({"model.out_channels": 2}, "leave model.out_channels at 0"),
  ],
)
def test_misconfigurations_are_refused_with_a_clear_message(load, overrides, message):
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
    make_family(load("sr3_mnist.py:tiny", **overrides))


SMALL = {  # a short run: checkpoints at 4 and 8, one eval batch, a one-row grid, 3 sampling steps
  "training.num_train_steps": 8,
  "training.checkpoint_every": 4,
  "training.log_every": 4,
  "training.async_checkpoints": False,
  "eval.num_examples": 32,
  "eval.batch_size": 32,
  "sampling.num_steps": 3,
  "sampling.grid_size": 8,
  "model.channel_mult": (1,),  # one resolution: the same runner path, with less to compile
}


@pytest.fixture(scope="module")
def tiny_run(tfds_dir, tmp_path_factory):
  """The tiny sr3 MNIST run for 8 steps, and a copy of its step-4 checkpoint resumed to 8."""
  config = load_config(str(REPO / "configs" / "sr3_mnist.py:tiny"))
  apply_overrides(
    config, {"data.manual_dir": str(MNIST_DIR), "data.data_dir": str(tfds_dir), **SMALL}
  )
  root = tmp_path_factory.mktemp("sr3")
  straight = trainer.train_and_evaluate(config, root / "straight")
  shutil.copytree(root / "straight" / "checkpoints" / "4", root / "resumed" / "checkpoints" / "4")
  resumed = trainer.train_and_evaluate(config, root / "resumed")
  return config, root, straight, resumed


def _restored(config, workdir):
  experiment, state, step = trainer.restore_for_inference(config, workdir, None)
  experiment.checkpointer.close()
  return experiment, state, step


def _raw(leaf):
  return (
    jax.random.key_data(leaf) if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key) else leaf
  )


@pytest.mark.slow
def test_tiny_run_trains_resumes_exactly_and_writes_the_superres_grid(tiny_run):
  config, root, straight, resumed = tiny_run
  assert straight["step"] == 8 and np.isfinite(straight["eval/loss"])
  assert resumed == straight
  (_, state_a, _), (_, state_b, _) = (_restored(config, root / d) for d in ("straight", "resumed"))
  for a, b in zip(jax.tree.leaves(state_a), jax.tree.leaves(state_b), strict=True):
    np.testing.assert_array_equal(np.asarray(_raw(a)), np.asarray(_raw(b)))  # params, EMA, opt, rng
  # The grid: one row of 8 low-res inputs (nearest upsampling), 8 outputs, 8 ground truths.
  picture = np.asarray(Image.open(root / "straight" / "samples" / "superres_0000008.png"))
  assert picture.shape == (3 * 30 + 2, 8 * 30 + 2)
  x = next(
    iter(
      eval_batches(
        config.data, 32, num_examples=32, data_seed=config.seed, noise_seed=config.eval.seed
      )
    )
  )["x"][:8]
  shown = np.repeat(np.repeat(downsample(x, 4), 4, axis=1), 4, axis=2)
  expected = images.render(np.concatenate([shown, np.zeros_like(x), x]), (-1.0, 1.0), 8)[..., 0]
  top, bottom = slice(0, 31), slice(61, 92)  # the input row and the ground-truth row
  for band in (top, bottom):
    assert np.max(np.abs(picture[band].astype(int) - expected[band].astype(int))) <= 1


@pytest.mark.slow
def test_tiny_model_super_resolves_7x7_to_28x28_and_refuses_to_sample(tiny_run):
  config, root, _, _ = tiny_run
  experiment, state, _ = _restored(config, root / "straight")
  family = experiment.family
  x = next(
    iter(
      eval_batches(
        config.data, 32, num_examples=32, data_seed=config.seed, noise_seed=config.eval.seed
      )
    )
  )["x"][:4]
  functions = family.benchmark_functions(
    state.ema_params, state.model_state, {"x": x}, jax.random.key(0)
  )
  assert list(functions) == ["superres_ddim_nfe3"]
  fn, (params, low_res, rng), count = functions["superres_ddim_nfe3"]
  assert low_res.shape == (4, 7, 7, 1) and count == 4
  super_resolve = jax.jit(fn)
  out = np.asarray(super_resolve(params, low_res, rng))
  assert out.shape == (4, 28, 28, 1) and out.min() >= -1.0 and out.max() <= 1.0
  np.testing.assert_array_equal(out, np.asarray(super_resolve(params, low_res, rng)))
  changed = np.asarray(super_resolve(params, -low_res, rng))
  assert np.max(np.abs(changed - out)) > 1e-3  # the output depends on the input
  with pytest.raises(ValueError, match="--mode=restore --task=superres"):
    family.sample(params, state.model_state, jax.random.key(0), 4)
  with pytest.raises(ValueError, match="--mode=restore --task=superres"):
    trainer.sample(config, root / "straight")  # --mode=sample

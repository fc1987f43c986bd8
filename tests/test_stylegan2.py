"""StyleGAN2: the networks against the official implementation's outputs, the official configs'
parameter counts, and the properties the paper's training rules rely on.

tests/fixtures/stylegan2_reference.npz holds the state dicts, inputs and outputs of the official
StyleGAN2-ADA networks (NVlabs/stylegan2-ada-pytorch training/networks.py, torch 2.13, its
reference ops), written by scripts/stylegan2_reference.py --mode=fixture.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from genjax.models import stylegan2 as networks

FIXTURE = "tests/fixtures/stylegan2_reference.npz"


@pytest.fixture(scope="module")
def reference():
  with np.load(FIXTURE) as data:
    return {key: data[key] for key in data.files}


def _nhwc(x: np.ndarray) -> np.ndarray:
  return np.transpose(x, (0, 2, 3, 1))


def _port(reference: dict, prefix: str) -> dict:
  """The official state dict under `prefix` as genjax variables {"params": ..., "buffers": ...}:
  module paths "b16.conv0" become "b16_conv0"; dense weights [out, in] are transposed, conv
  weights [out, in, kh, kw] become [kh, kw, in, out], the constant [C, H, W] becomes [H, W, C],
  and the epilogue's dense layer reads its input in (H, W, C) order instead of (C, H, W)."""
  flat = {}
  for key, value in reference.items():
    if not key.startswith(prefix) or key.endswith("resample_filter"):
      continue
    parts = key[len(prefix) :].split(".")
    leaf = parts[-1]
    modules = parts[:-1]
    if modules and modules[0] == "synthesis" and len(modules) > 2:
      modules = ["synthesis", f"{modules[1]}_{modules[2]}", *modules[3:]]
    elif modules and modules[0].startswith("b") and len(modules) > 1:
      modules = [f"{modules[0]}_{modules[1]}", *modules[2:]]
    if leaf == "const":
      modules, value = ["synthesis"], np.transpose(value, (1, 2, 0))
    elif modules[-1] == "b4_fc" and leaf == "weight":
      out = value.shape[0]
      value = value.reshape(out, -1, 4, 4).transpose(2, 3, 1, 0).reshape(-1, out)
    elif leaf == "weight" and value.ndim == 4:
      value = np.transpose(value, (2, 3, 1, 0))
    elif leaf == "weight" and value.ndim == 2:
      value = value.T
    collection = "buffers" if leaf in ("w_avg", "noise_const") else "params"
    flat[(collection, *modules, leaf)] = jnp.asarray(value)
  return traverse_util.unflatten_dict(flat)


def _generator(clamp: float = 0.0) -> networks.StyleGAN2Generator:
  return networks.StyleGAN2Generator(
    16,
    3,
    w_dim=32,
    num_classes=3,
    channel_base=256,
    channel_max=32,
    mapping_layers=2,
    conv_clamp=clamp,
  )


def _discriminator(num_classes: int, clamp: float = 0.0) -> networks.StyleGAN2Discriminator:
  return networks.StyleGAN2Discriminator(
    16, num_classes, channel_base=256, channel_max=32, mbstd_group_size=4, conv_clamp=clamp
  )


def _assert_close(actual, expected, rtol=2e-5, atol=2e-5):
  np.testing.assert_allclose(np.asarray(actual), expected, rtol=rtol, atol=atol)


def test_port_has_exactly_the_official_parameters(reference):
  """Every official tensor maps onto a genjax variable of the same size, and nothing is left."""
  for network, prefix, inputs in (
    (_generator(), "G/", (jnp.zeros((8, 16)), jnp.zeros((8,), jnp.int32))),
    (_discriminator(3), "D/", (jnp.zeros((8, 16, 16, 3)), jnp.zeros((8,), jnp.int32))),
    (_discriminator(0), "Dunc/", (jnp.zeros((8, 16, 16, 3)), None)),
  ):
    ours = jax.eval_shape(functools.partial(network.init, jax.random.key(0)), *inputs)
    ported = _port(reference, prefix)
    shapes = lambda tree: {k: v.shape for k, v in traverse_util.flatten_dict(tree).items()}
    assert shapes(ours) == shapes(ported), prefix


def test_resampling_ops_match_the_official_ones(reference):
  feat = _nhwc(reference["in/feat"])
  _assert_close(networks.upsample2d(feat), _nhwc(reference["out/upsample2d"]))
  _assert_close(networks.downsample2d(feat), _nhwc(reference["out/downsample2d"]))
  kernel = np.transpose(reference["in/w_conv"], (2, 3, 1, 0))
  _assert_close(
    networks.conv_up(feat, kernel), _nhwc(reference["out/conv_up"]), rtol=1e-4, atol=1e-4
  )
  _assert_close(
    networks.conv_down(feat, kernel), _nhwc(reference["out/conv_down"]), rtol=1e-4, atol=1e-4
  )
  kernel_1x1 = np.transpose(reference["in/w_conv1x1"], (2, 3, 1, 0))
  _assert_close(networks.conv_down(feat, kernel_1x1), _nhwc(reference["out/conv1x1_down"]))
  _assert_close(
    networks.minibatch_std(_nhwc(reference["in/mbstd_x"]), 4), _nhwc(reference["out/mbstd"])
  )


def test_minibatch_std_with_several_channels_gives_each_slice_of_features_its_own_std(load):
  """The official mbstd_num_channels > 1 (model.mbstd_channels): example i's extra channel f is the
  std over its group {i mod (N/G) + k N/G} averaged over the pixels and the f-th slice of the
  features, computed here directly."""
  x = np.asarray(jax.random.normal(jax.random.key(3), (8, 3, 3, 6)))
  out = np.asarray(networks.minibatch_std(jnp.asarray(x), group_size=4, num_channels=2))
  assert out.shape == (8, 3, 3, 8)
  np.testing.assert_array_equal(out[..., :6], x)
  for i in range(8):
    group = x[[i % 2 + 2 * k for k in range(4)]]  # [4, H, W, C]
    for f in range(2):
      std = np.sqrt(group[..., 3 * f : 3 * f + 3].var(axis=0) + 1e-8).mean()
      np.testing.assert_allclose(out[i, :, :, 6 + f], std, rtol=1e-5)
  from genjax.families.stylegan2 import build_stylegan2

  config = load("stylegan2_mnist.py", **{"model.mbstd_channels": 2})
  _, d = build_stylegan2(config.model, (32, 32, 1), 0, True)
  assert d.mbstd_channels == 2


def test_generator_matches_the_official_outputs(reference):
  generator, variables = _generator(), _port(reference, "G/")
  z, z2, labels = reference["in/z"], reference["in/z2"], reference["in/labels"]
  ws = generator.apply(variables, z, labels, method="map")
  _assert_close(ws, reference["out/ws"])
  _assert_close(generator.apply(variables, z, labels, 0.7, method="map"), reference["out/ws_psi07"])
  for mode in ("const", "none"):
    image = generator.apply(variables, ws, mode, method="synthesize")
    _assert_close(image, _nhwc(reference[f"out/img_{mode}"]), rtol=1e-4, atol=1e-4)
  image = generator.apply(variables, z, labels, 0.7, "const")
  _assert_close(image, _nhwc(reference["out/img_psi07"]), rtol=1e-4, atol=1e-4)
  from genjax.gan.stylegan2 import mix_styles

  ws2 = generator.apply(variables, z2, labels, method="map")
  mixed = mix_styles(ws, ws2, int(reference["meta/ws_mix_cutoff"]))
  _assert_close(mixed, reference["out/ws_mixed"])
  image = generator.apply(variables, mixed, "const", method="synthesize")
  _assert_close(image, _nhwc(reference["out/img_mixed"]), rtol=1e-4, atol=1e-4)
  clamped = _generator(float(reference["meta/conv_clamp"])).apply(
    variables, ws, "const", method="synthesize"
  )
  _assert_close(clamped, _nhwc(reference["out/img_const_clamp"]), rtol=1e-4, atol=1e-4)


def test_discriminator_matches_the_official_outputs(reference):
  x, labels = _nhwc(reference["in/x"]), reference["in/labels"]
  logits = _discriminator(3).apply(_port(reference, "D/"), x, labels)
  _assert_close(logits, reference["out/d_logits"][:, 0], rtol=1e-4, atol=1e-4)
  logits = _discriminator(0).apply(_port(reference, "Dunc/"), x, None)
  _assert_close(logits, reference["out/d_logits_uncond"][:, 0], rtol=1e-4, atol=1e-4)
  clamp = float(reference["meta/conv_clamp"])
  logits = _discriminator(3, clamp).apply(_port(reference, "D/"), x, labels)
  _assert_close(logits, reference["out/d_logits_clamp"][:, 0], rtol=1e-4, atol=1e-4)


# --- the paper configs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
  "name, shape, num_classes, generator, discriminator",
  [
    # Official counts: scripts/stylegan2_reference.py --mode=counts builds NVlabs/stylegan2-ada-
    # pytorch training/networks.py Generator/Discriminator with train.py's kwargs for cfg "cifar"
    # (c_dim 10) and "paper256"; module.parameters() only, buffers excluded.
    ("stylegan2_cifar10.py", (32, 32, 3), 10, 20_215_315, 23_089_664),
    ("stylegan2_ffhq256.py", (256, 256, 3), 0, 24_767_458, 24_001_089),
  ],
)
def test_paper_configs_have_the_official_parameter_counts(
  load, name, shape, num_classes, generator, discriminator
):
  from genjax.families.stylegan2 import build_stylegan2

  config = load(name)
  g, d = build_stylegan2(config.model, shape, num_classes, True)
  labels = jnp.zeros((2,), jnp.int32) if num_classes else None
  init = lambda net, x: jax.eval_shape(functools.partial(net.init, jax.random.key(0)), x, labels)
  count = lambda tree: sum(leaf.size for leaf in jax.tree.leaves(tree))
  assert count(init(g, jnp.zeros((2, config.model.latent_dim)))["params"]) == generator
  assert count(init(d, jnp.zeros((2, *shape)))["params"]) == discriminator


# --- properties of the networks -------------------------------------------------------------------


def test_weight_demodulation_gives_unit_variance_outputs():
  """Unit-variance inputs through a modulated 3x3 convolution: whatever the styles, the outputs
  (away from the zero-padded border) have variance 1 with demodulation, and follow the styles'
  scale without it."""
  keys = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(keys[0], (64, 10, 10, 32))
  weight = jax.random.normal(keys[1], (3, 3, 32, 16))
  # log-normal styles, with a scale per example as well as per channel
  styles = jnp.exp(jax.random.normal(keys[2], (64, 32)) + 2.0 * jax.random.normal(keys[0], (64, 1)))
  interior = lambda y: y[:, 1:-1, 1:-1]
  out = interior(networks.modulated_conv(x, weight, styles))
  assert abs(float(jnp.var(out)) - 1.0) < 0.05
  raw = interior(networks.modulated_conv(x, weight, styles, demodulate=False))
  assert float(jnp.var(raw)) > 10.0
  # Per example, demodulation removes the styles' scale: the spread of log-variances across
  # examples is sampling noise only (about 0.1), against about 1 without it.
  log_var = lambda y: jnp.log(jnp.var(y, axis=(1, 2, 3)))
  assert float(jnp.std(log_var(out))) < 0.2
  assert float(jnp.std(log_var(raw))) > 1.0


def test_equalised_learning_rate_scales():
  """Stored weights are N(0, 1) / lr_multiplier; the effective weights are N(0, 1 / fan_in), so a
  unit-variance input gives unit-variance outputs; an Adam step of size eta on the stored weights
  moves the effective weights by eta * lr_multiplier / sqrt(fan_in)."""
  x = jax.random.normal(jax.random.key(1), (4096, 256))
  for lr_multiplier in (1.0, 0.01):
    layer = networks.Dense(128, lr_multiplier=lr_multiplier)
    params = layer.init(jax.random.key(0), x)["params"]
    assert abs(float(jnp.std(params["weight"])) * lr_multiplier - 1.0) < 0.02
    assert abs(float(jnp.var(layer.apply({"params": params}, x))) - 1.0) < 0.05
    # d output / d stored weight = input * lr_multiplier / sqrt(fan_in): a step of eta on the
    # stored weight is a step of eta * lr_multiplier / 16 on the effective one.
    gradient = jax.grad(
      lambda p, dense=layer: dense.apply({"params": p}, jnp.ones((1, 256))).sum()
    )(params)
    np.testing.assert_allclose(gradient["weight"], lr_multiplier / 16.0, rtol=1e-6)
  conv = networks.Conv(64, 3)
  images = jax.random.normal(jax.random.key(2), (16, 12, 12, 32))
  out = conv.apply(conv.init(jax.random.key(0), images), images)[:, 1:-1, 1:-1]
  assert abs(float(jnp.var(out)) - 1.0) < 0.05


def test_affine_learning_rate_changes_only_how_fast_the_styles_learn():
  """model.affine_lr = m: the same generator function at initialisation (style biases at 1), and
  the gradients of the stored style parameters m times the default's, so an Adam step (whose size
  does not depend on the gradient's scale) moves the effective styles m times as far."""
  z = jax.random.normal(jax.random.key(3), (3, 8))
  images, gradients = {}, {}
  for affine_lr in (1.0, 0.01):
    generator = networks.StyleGAN2Generator(
      8, 1, w_dim=8, channel_base=32, channel_max=4, mapping_layers=1, affine_lr=affine_lr
    )
    variables = generator.init(jax.random.key(0), z)
    affine = variables["params"]["synthesis"]["b8_conv0"]["affine"]
    np.testing.assert_allclose(affine["bias"] * affine_lr, 1.0, rtol=1e-6)
    images[affine_lr] = generator.apply(variables, z)

    def total(params, generator=generator, variables=variables):
      return jnp.sum(generator.apply({**variables, "params": params}, z) ** 2)

    gradients[affine_lr] = jax.grad(total)(variables["params"])["synthesis"]
  np.testing.assert_allclose(images[0.01], images[1.0], atol=1e-5)
  for layer in ("b4_conv1", "b8_conv0", "b8_torgb"):
    for name in ("weight", "bias"):
      default, slow = gradients[1.0][layer]["affine"][name], gradients[0.01][layer]["affine"][name]
      assert float(jnp.max(jnp.abs(default))) > 1e-4
      np.testing.assert_allclose(slow, 0.01 * default, rtol=1e-3, atol=1e-7)
  np.testing.assert_allclose(  # the convolution weights learn as before
    gradients[0.01]["b8_conv0"]["weight"], gradients[1.0]["b8_conv0"]["weight"], rtol=1e-3
  )


def _tiny_generator() -> tuple[networks.StyleGAN2Generator, dict]:
  generator = networks.StyleGAN2Generator(
    8, 1, w_dim=8, channel_base=32, channel_max=4, mapping_layers=1
  )
  variables = generator.init(jax.random.key(0), jnp.zeros((3, 8)))
  # Non-zero noise strengths and w_avg, so that truncation and noise are exercised.
  variables = jax.tree_util.tree_map_with_path(
    lambda path, v: v + 0.3 if path[-1].key in ("noise_strength", "w_avg") else v, variables
  )
  return generator, variables


def test_truncation_psi_zero_gives_the_average_w_image_for_every_z():
  generator, variables = _tiny_generator()
  z = jax.random.normal(jax.random.key(3), (3, 8))
  images = generator.apply(variables, z, None, 0.0, "const")
  w_avg = variables["buffers"]["mapping"]["w_avg"]
  ws = jnp.broadcast_to(w_avg, (3, generator.num_ws, 8))
  np.testing.assert_allclose(
    images, generator.apply(variables, ws, "const", method="synthesize"), atol=1e-6
  )
  np.testing.assert_allclose(images[0], images[2], atol=1e-6)
  assert (
    float(jnp.abs(generator.apply(variables, z, None, 1.0, "const")[0] - images[0]).max()) > 1e-3
  )


def test_style_mixing_uses_the_second_w_from_the_crossover_on():
  from genjax.gan.stylegan2 import mix_styles, style_mixing_cutoff

  ws, other = jnp.zeros((2, 6, 3)), jnp.ones((2, 6, 3))
  mixed = mix_styles(ws, other, 4)
  assert np.all(mixed[:, :4] == 0) and np.all(mixed[:, 4:] == 1)
  cutoffs = np.array(
    [style_mixing_cutoff(k, 6, 0.9) for k in jax.random.split(jax.random.key(0), 2000)]
  )
  assert set(np.unique(cutoffs)) == {1, 2, 3, 4, 5, 6}
  assert abs(np.mean(cutoffs == 6) - 0.1) < 0.02  # no mixing; a crossover is drawn from 1 ... 5
  assert np.all(
    np.array([style_mixing_cutoff(k, 6, 0.0) for k in jax.random.split(jax.random.key(1), 50)]) == 6
  )


def test_path_lengths_match_finite_differences():
  """a = ||J_w^T y|| (sum over w_dim, mean over the ws entries, sqrt) against central differences
  of <G(w), y> on a tiny generator, y drawn from the same key."""
  from genjax.gan.stylegan2 import path_length_penalty, path_lengths

  generator, variables = _tiny_generator()
  ws = generator.apply(variables, jax.random.normal(jax.random.key(4), (2, 8)), method="map")
  ws = ws + 0.1 * jax.random.normal(jax.random.key(5), ws.shape)
  synthesize = lambda w: generator.apply(variables, w, "const", method="synthesize")
  rng = jax.random.key(6)
  lengths = path_lengths(synthesize, ws, rng)
  images = synthesize(ws)
  y = jax.random.normal(rng, images.shape) / np.sqrt(images.shape[1] * images.shape[2])
  inner = lambda w: jnp.sum(synthesize(w) * y, axis=(1, 2, 3))  # per image
  eps, flat = 1e-2, ws.reshape(2, -1)
  gradient = np.zeros(flat.shape)
  for index in range(flat.shape[1]):
    step = jnp.zeros(flat.shape[1]).at[index].set(eps)
    up = inner((flat + step).reshape(ws.shape))
    down = inner((flat - step).reshape(ws.shape))
    gradient[:, index] = (up - down) / (2 * eps)
  expected = np.sqrt(np.mean(np.sum(gradient.reshape(ws.shape) ** 2, axis=2), axis=1))
  np.testing.assert_allclose(lengths, expected, rtol=2e-2)
  penalty, mean = path_length_penalty(jnp.array([1.0, 3.0]), jnp.array(1.0), 0.5)
  assert float(mean) == 1.5 and float(penalty) == pytest.approx((0.25 + 2.25) / 2)


def _second_order_gradients():
  """The parameter gradients of R1 (through D cloned with differentiated_twice) and of the path
  length penalty (through G's synthesis cloned with it), plus both values, on tiny networks."""
  from genjax.gan.regularizers import r1_penalty
  from genjax.gan.stylegan2 import path_length_penalty, path_lengths

  generator, discriminator = _generator(), _discriminator(num_classes=0)
  labels = jnp.array([0, 1, 2, 1])
  z = jax.random.normal(jax.random.key(10), (4, 32))
  real = jax.random.normal(jax.random.key(11), (4, 16, 16, 3))
  g_variables = generator.init(jax.random.key(12), z, labels)
  d_params = discriminator.init(jax.random.key(13), real)["params"]
  ws = generator.apply(g_variables, z, labels, method="map")
  pl_generator = generator.clone(differentiated_twice=True)
  r1_discriminator = discriminator.clone(differentiated_twice=True)

  def r1(d_params):
    return r1_penalty(lambda x: r1_discriminator.apply({"params": d_params}, x), real)

  def path_length(g_params):
    variables = {**g_variables, "params": g_params}
    synthesize = lambda w: pl_generator.apply(variables, w, "const", method="synthesize")
    lengths = path_lengths(synthesize, ws, jax.random.key(14))
    return path_length_penalty(lengths, jnp.asarray(0.5), 0.01)[0]

  return (
    jax.jit(jax.value_and_grad(r1))(d_params),
    jax.jit(jax.value_and_grad(path_length))(g_variables["params"]),
  )


def test_second_order_calls_equal_lax_in_value_and_gradients(monkeypatch):
  """On CPU the second-order calls (R1's D, path length's G) run their convolutions as matmuls
  (patches, and the transposed convolution's four matmuls); their values and parameter gradients
  must equal those of lax's convolutions (what GPUs and TPUs run) to rtol 1e-4, with an absolute
  floor of 1e-5 of each leaf's largest gradient."""
  from genjax.models import conv

  matmuls = _second_order_gradients()
  monkeypatch.setattr(networks, "uses_matmul_formulations", lambda: False)
  monkeypatch.setattr(conv, "uses_matmul_formulations", lambda: False)
  lax = _second_order_gradients()
  for (value, grads), (expected_value, expected_grads) in zip(matmuls, lax, strict=True):
    assert float(expected_value) > 0
    np.testing.assert_allclose(value, expected_value, rtol=1e-4)
    for leaf, expected in zip(jax.tree.leaves(grads), jax.tree.leaves(expected_grads), strict=True):
      np.testing.assert_allclose(
        leaf, expected, rtol=1e-4, atol=1e-5 * float(jnp.abs(expected).max()) + 1e-12
      )


# --- training -------------------------------------------------------------------------------------


@pytest.fixture
def compilation_cache(tmp_path):
  """JAX's persistent compilation cache in tmp_path for one test, so that a resumed run loads the
  train step its first run compiled (about 2 minutes for StyleGAN2 on this CPU) instead of
  compiling it again."""
  from jax.experimental.compilation_cache import compilation_cache as cache

  previous = (
    jax.config.jax_compilation_cache_dir,
    jax.config.jax_persistent_cache_min_compile_time_secs,
  )
  jax.config.update("jax_compilation_cache_dir", str(tmp_path / "jax_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  cache.reset_cache()
  yield
  jax.config.update("jax_compilation_cache_dir", previous[0])
  jax.config.update("jax_persistent_cache_min_compile_time_secs", previous[1])
  cache.reset_cache()


@pytest.mark.slow
def test_tiny_stylegan2_trains_regularises_lazily_and_resumes_bitwise(
  load, tmp_path, compilation_cache
):
  """The tiny MNIST config for 6 steps with R1 every 3 and path length every 2 steps:
  * the regularisers ran exactly on steps 0, 3 (R1) and 0, 2, 4 (path length), each as its own
    optimizer update (Adam's update counts: D 6 + 2, G 6 + 3);
  * both optimizers are Adam with lr r and betas^r, r = k / (k + 1);
  * 6 straight steps == a run restarted from the step-3 checkpoint, bitwise."""
  import json
  import shutil

  import optax

  from genjax import trainer
  from genjax.datasets import dataset_info

  config = load(
    "stylegan2_mnist.py:tiny",
    **{
      "training.num_train_steps": 6,
      "training.checkpoint_every": 3,
      "training.log_every": 1,
      "model.r1_interval": 3,
      "model.pl_interval": 2,
      "eval.num_examples": 16,
      "eval.batch_size": 8,
    },
  )
  results = trainer.train_and_evaluate(config, tmp_path / "straight")
  assert results["step"] == 6 and np.isfinite(results["eval/d_real"])
  names = {p.name for p in (tmp_path / "straight" / "samples").iterdir()}
  assert names == {
    f"{grid}_0000006.png" for grid in ("samples", "interpolations", "truncation", "style_mixing")
  }
  logged = {
    r["step"]: r
    for r in map(json.loads, (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines())
    if "train/d_loss" in r
  }
  assert [s for s in sorted(logged) if logged[s]["train/r1"] > 0] == [1, 4]  # steps 0 and 3
  assert [s for s in sorted(logged) if logged[s]["train/pl_penalty"] > 0] == [1, 3, 5]
  assert logged[1]["train/lr"] == pytest.approx(0.0025 * 2 / 3)
  assert logged[1]["train/d_lr"] == pytest.approx(0.0025 * 3 / 4)

  experiment = trainer.Experiment(config, tmp_path / "straight", dataset_info(config.data))
  try:
    state = experiment.restore()[0]
  finally:
    experiment.checkpointer.close()
  counts = lambda tree: {
    int(leaf)
    for leaf in jax.tree.leaves(tree)
    if getattr(leaf, "dtype", None) == jnp.int32 and leaf.ndim == 0
  }
  assert counts(state.opt_state["discriminator"]) == {8}
  assert counts(state.opt_state["generator"]) == {9}
  grads = [
    jax.tree.map(lambda p, i=i: jnp.full_like(p, (-1.0) ** i * (i + 1)), state.params["generator"])
    for i in range(3)
  ]
  family = experiment.family
  for optimizer, interval in ((family.optimizer.generator, 2), (family.optimizer.discriminator, 3)):
    r = interval / (interval + 1)
    params = state.params["generator"]
    expected = optax.adam(0.0025 * r, b1=0.0, b2=0.99**r)
    ours_state, expected_state = optimizer.init(params), expected.init(params)
    for gradient in grads:
      ours_update, ours_state = optimizer.update(gradient, ours_state, params)
      expected_update, expected_state = expected.update(gradient, expected_state, params)
      jax.tree.map(np.testing.assert_allclose, ours_update, expected_update)

  shutil.copytree(
    tmp_path / "straight" / "checkpoints" / "3", tmp_path / "resumed" / "checkpoints" / "3"
  )
  assert trainer.train_and_evaluate(config, tmp_path / "resumed")["step"] == 6
  experiment = trainer.Experiment(config, tmp_path / "resumed", dataset_info(config.data))
  try:
    resumed = experiment.restore()[0]
  finally:
    experiment.checkpointer.close()
  for name in ("params", "ema_params", "opt_state", "model_state"):
    jax.tree.map(np.testing.assert_array_equal, getattr(state, name), getattr(resumed, name))
  np.testing.assert_array_equal(jax.random.key_data(state.rng), jax.random.key_data(resumed.rng))


def test_samples_are_clipped_into_the_value_range(load):
  """G's output is linear: samples and grids are clipped to [-1, 1] before the value range."""
  from genjax import parallel
  from genjax.datasets import dataset_info
  from genjax.families import get_family

  config = load("stylegan2_cifar10.py:tiny")
  family = get_family("stylegan2")(config, dataset_info(config.data), parallel.make_mesh())
  values = family._to_value_range(jnp.array([-3.0, -0.5, 0.0, 2.5]))
  np.testing.assert_allclose(values, [-1.0, -0.5, 0.0, 1.0])


def test_train_step_kinds_name_the_lazy_regularisation_steps(load):
  """scripts/benchmark.py times each kind of step: R1 every 16 and path length every 4 steps
  repeat every 16 steps; a regulariser with interval 1 or weight 0 adds no kind."""
  from genjax import parallel
  from genjax.datasets import dataset_info
  from genjax.families import get_family

  def family(**overrides):
    config = load("stylegan2_mnist.py:tiny", **overrides)
    return get_family("stylegan2")(config, dataset_info(config.data), parallel.make_mesh())

  default = family()
  assert default.train_step_cycle == 16
  assert [default.train_step_kind(step) for step in range(17)] == (
    ["r1+pl"] + (["plain"] * 3 + ["pl"]) * 3 + ["plain"] * 3 + ["r1+pl"]
  )
  every_step_pl = family(**{"model.pl_interval": 1})
  assert every_step_pl.train_step_cycle == 16
  assert {every_step_pl.train_step_kind(step) for step in range(1, 16)} == {"plain"}
  no_r1 = family(**{"model.r1_gamma": 0.0})
  assert no_r1.train_step_cycle == 4 and no_r1.train_step_kind(8) == "pl"


def test_path_length_every_step_joins_the_generator_update(load, tmp_path):
  """With pl_interval = 1 the path length penalty is added to G's loss (the official "Gboth"
  phase): one G optimizer update per step, the penalty logged on every step."""
  from conftest import train_on_synthetic_data

  config = load(
    "stylegan2_mnist.py:tiny",
    **{
      "data.name": "synthetic_images",
      "data.synthetic_shape": (32, 32, 1),
      "data.num_examples": 64,
      "model.pl_interval": 1,
      "model.r1_gamma": 0.0,
    },
  )
  experiment, _, state, metrics = train_on_synthetic_data(config, tmp_path, steps=2)
  experiment.checkpointer.close()
  assert metrics["pl_penalty"] > 0 and metrics["pl_mean"] > 0
  counts = {
    int(leaf)
    for leaf in jax.tree.leaves(state.opt_state["generator"])
    if getattr(leaf, "dtype", None) == jnp.int32 and leaf.ndim == 0
  }
  assert counts == {2}


def test_style_spread_falls_when_the_affine_biases_grow():
  """genjax.gan.stylegan2.style_spread (scripts/stylegan2_style_spread.py): styles' spread over z
  relative to their size, per layer."""
  from genjax.gan.stylegan2 import style_spread

  generator = networks.StyleGAN2Generator(
    16, 1, w_dim=32, channel_base=256, channel_max=16, mapping_layers=2
  )
  z = jax.random.normal(jax.random.key(1), (512, 32))
  variables = generator.init(jax.random.key(0), z[:2])
  initial = style_spread(generator, variables, z)
  assert sorted(initial["layers"]) == [
    "b16_conv0",
    "b16_conv1",
    "b16_torgb",
    "b4_conv1",
    "b4_torgb",
    "b8_conv0",
    "b8_conv1",
    "b8_torgb",
  ]
  for layer in initial["layers"].values():  # A(w): bias 1, a weight part with w's spread
    assert 0.8 < layer["std"] / initial["w_std"] < 1.2 and 0.8 < layer["abs_mean"] < 1.5, layer
  grown = jax.tree_util.tree_map_with_path(
    lambda path, v: v + 4.0 if [p.key for p in path[-2:]] == ["affine", "bias"] else v, variables
  )
  after = style_spread(generator, grown, z)
  assert after["w_std"] == initial["w_std"]
  for name, layer in after["layers"].items():
    before = initial["layers"][name]
    np.testing.assert_allclose(layer["std"], before["std"], atol=2e-4)
    np.testing.assert_allclose(layer["abs_mean"], before["abs_mean"] + 4.0, atol=0.2)
    assert layer["relative_spread"] < 0.25 * before["relative_spread"] + 0.05
  # A layer whose styles ignore w (zero weight) but differ between channels has no spread over z.
  frozen = jax.tree_util.tree_map_with_path(
    lambda path, v: (
      jnp.zeros_like(v)
      if [p.key for p in path[-3:]] == ["b8_conv0", "affine", "weight"]
      else jnp.linspace(0.5, 2.5, v.size)
      if [p.key for p in path[-3:]] == ["b8_conv0", "affine", "bias"]
      else v
    ),
    variables,
  )
  layer = style_spread(generator, frozen, z)["layers"]["b8_conv0"]
  assert layer["std"] < 1e-6 and layer["relative_spread"] < 1e-6 and layer["abs_mean"] == 1.5

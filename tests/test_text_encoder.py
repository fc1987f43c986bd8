"""all-MiniLM-L6-v2 in Flax against sentence-transformers (tests/fixtures/minilm_reference.npz from
scripts/minilm_reference.py), plus padding invariance, truncation reports, the cache and the
weights checks. The weights are fetched the user's way (scripts/get_text_encoder.py) if missing."""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import get_text_encoder_script
from safetensors.numpy import load_file

from genjax.evaluation.params_io import WeightsError
from genjax.text import encoder

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "tests" / "fixtures" / "minilm_reference.npz"
TOLERANCE = 1e-4  # max abs difference to sentence-transformers (measured: pooled 3e-7, states 4e-6)




@pytest.fixture(scope="session")
def text_encoder(encoder_dir) -> encoder.TextEncoder:
  """batch_size 8, so the 20 reference sentences run as 3 batches, the last padded."""
  return encoder.TextEncoder(encoder_dir, batch_size=8)


@pytest.fixture(scope="session")
def reference() -> dict[str, np.ndarray]:
  with np.load(REFERENCE) as archive:
    return {key: archive[key] for key in archive.files}


@pytest.fixture(scope="session")
def sentences(reference) -> list[str]:
  return [str(sentence) for sentence in reference["sentences"]]


@pytest.fixture(scope="session")
def all_embeddings(text_encoder, sentences) -> encoder.TextEmbeddings:
  """The 20 sentences at the reference's padded length, 256 = MAX_SEQ_LENGTH."""
  return text_encoder.encode(sentences, length=encoder.MAX_SEQ_LENGTH)


@pytest.fixture(scope="session")
def subset_embeddings(text_encoder, sentences, reference) -> encoder.TextEmbeddings:
  """The 3 sentences with reference hidden states, at the reference's padded length S."""
  subset = [sentences[i] for i in reference["hidden_index"]]
  return text_encoder.encode(subset, length=reference["hidden_states"].shape[1])


def test_token_ids_match_sentence_transformers(text_encoder, sentences, reference):
  assert int(reference["max_seq_length"]) == encoder.MAX_SEQ_LENGTH
  batch = text_encoder.tokenize(sentences, length=reference["input_ids"].shape[1])
  np.testing.assert_array_equal(batch.ids, reference["input_ids"])
  np.testing.assert_array_equal(batch.mask, reference["attention_mask"])
  # Only the last sentence is longer than 256 tokens; the empty one is [CLS] [SEP].
  np.testing.assert_array_equal(batch.truncated, [False] * 19 + [True])
  assert batch.ids[0, :3].tolist() == [101, 102, 0]


def test_pooled_embeddings_match_sentence_transformers(all_embeddings, reference):
  error = np.abs(all_embeddings.pooled - reference["pooled"]).max()
  assert error <= TOLERANCE, f"pooled embeddings differ by {error:.2e}"
  np.testing.assert_allclose(np.linalg.norm(all_embeddings.pooled, axis=1), 1.0, atol=1e-6)
  assert all_embeddings.tokens.shape == (20, encoder.MAX_SEQ_LENGTH, 384)
  assert all_embeddings.tokens.dtype == np.float32
  np.testing.assert_array_equal(all_embeddings.mask, reference["attention_mask"].astype(bool))


def test_hidden_states_match_sentence_transformers(subset_embeddings, reference):
  real = reference["hidden_mask"].astype(bool)
  np.testing.assert_array_equal(subset_embeddings.mask, real)
  error = np.abs(subset_embeddings.tokens - reference["hidden_states"])[real].max()
  assert error <= TOLERANCE, f"hidden states at real tokens differ by {error:.2e}"


def test_padding_does_not_change_outputs(all_embeddings, subset_embeddings, reference):
  """The same prompts padded to 12 and to 256 tokens: equal pooled embeddings and equal states at
  the real tokens."""
  index = reference["hidden_index"]
  real = subset_embeddings.mask
  length = real.shape[1]
  np.testing.assert_allclose(all_embeddings.pooled[index], subset_embeddings.pooled, atol=1e-5)
  np.testing.assert_allclose(
    all_embeddings.tokens[index, :length][real], subset_embeddings.tokens[real], atol=1e-5
  )


def test_truncation_is_reported(text_encoder, caplog):
  long_prompt = "a thick slanted seven " * 3  # [CLS] + 3 x (a thick slant ##ed seven) + [SEP]
  with caplog.at_level(logging.WARNING):
    batch = text_encoder.tokenize([long_prompt, "a thick slanted seven", ""], length=7)
  np.testing.assert_array_equal(batch.truncated, [True, False, False])  # the second fits exactly
  assert batch.ids[0].tolist() == [101, 1037, 4317, 27474, 2098, 2698, 102]  # [SEP] kept
  assert batch.mask[:2].all()
  assert "a thick slanted seven a thick" in caplog.text and "longer than 7 tokens" in caplog.text
  with pytest.raises(ValueError, match=r"\[2, 256\]"):
    text_encoder.tokenize(["7"], length=encoder.MAX_SEQ_LENGTH + 1)


def test_cache_in_memory_and_on_disk(
  encoder_dir, text_encoder, sentences, reference, subset_embeddings, tmp_path
):
  prompts = tuple(sentences[i] for i in reference["hidden_index"])
  length = subset_embeddings.mask.shape[1]
  assert text_encoder.encode(list(prompts), length=length) is subset_embeddings
  first = encoder.TextEncoder(encoder_dir, cache_dir=tmp_path).encode(prompts, length=length)
  assert len(list(tmp_path.glob("minilm_*.npz"))) == 1
  second = encoder.TextEncoder(encoder_dir, cache_dir=tmp_path)

  def not_again(*args):
    raise AssertionError("the cached prompts were encoded again")

  second._compute = not_again
  for cached, computed in zip(second.encode(prompts, length=length), first):
    np.testing.assert_array_equal(cached, computed)
  with pytest.raises(ValueError, match="at least one prompt"):
    text_encoder.encode([])


def test_missing_folder_says_how_to_fetch(tmp_path):
  with pytest.raises(WeightsError, match=r"scripts/get_text_encoder\.py"):
    encoder.TextEncoder(tmp_path / "absent")


def test_wrong_sha256_is_an_error(encoder_dir, tmp_path):
  for name in ("tokenizer.json", "config.json"):
    (tmp_path / name).symlink_to(encoder_dir / name)
  (tmp_path / "model.safetensors").write_bytes(b"not the weights")
  pinned = encoder.ENCODER_SHA256["model.safetensors"]
  with pytest.raises(WeightsError, match=f"SHA-256 [0-9a-f]{{64}}, expected {pinned}"):
    encoder.TextEncoder(tmp_path)


def test_fetcher_rejects_a_wrong_file_and_keeps_a_good_folder(encoder_dir, tmp_path, capsys):
  script = get_text_encoder_script()
  archive = tmp_path / "model.zip"
  with zipfile.ZipFile(archive, "w") as model_zip:
    model_zip.write(encoder_dir / "tokenizer.json", "tokenizer.json")
    model_zip.write(encoder_dir / "config.json", "config.json")
    model_zip.writestr("model.safetensors", b"not the weights")
  out = tmp_path / "out"
  assert script.main([f"--input={archive}", f"--out={out}"]) == 1
  message = capsys.readouterr().err
  assert encoder.ENCODER_SHA256["model.safetensors"] in message and "model.safetensors" in message
  assert not out.exists()
  assert script.main([f"--out={encoder_dir}"]) == 0
  assert "already holds" in capsys.readouterr().out


def test_state_dict_keys_are_checked(encoder_dir):
  config = encoder.BertConfig()
  state_dict = load_file(encoder_dir / "model.safetensors")
  params = encoder.params_from_state_dict(state_dict, config)
  np.testing.assert_array_equal(
    params["layer_5"]["ffn_in"]["kernel"], state_dict["encoder.layer.5.intermediate.dense.weight"].T
  )
  del state_dict["encoder.layer.3.attention.self.key.bias"]
  state_dict["encoder.layer.6.output.dense.weight"] = np.zeros((384, 1536), np.float32)
  with pytest.raises(WeightsError, match=r"layer\.3\.attention\.self\.key\.bias.*layer\.6\.output"):
    encoder.params_from_state_dict(state_dict, config)

"""Text-to-image latent diffusion (genjax.families.text2img): both stages train and resume exactly,
prompts generate images, guidance and padding behave as the math says, the configs' parameter
counts, and the captioned data."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import trainer
from genjax.config import apply_overrides
from genjax.datasets import synthetic_images
from genjax.diffusion.autoguidance import Autoguided
from genjax.text import conditioning, generate

TINY = "text2img_mnist.py:tiny"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tfds_dir, encoder_dir):
  """A tiny run trained to its end (both stages) in one workdir: (config, workdir)."""
  from conftest import MNIST_DIR

  from genjax.config import load_config

  config = load_config(str(trainer_config_path(TINY)))
  apply_overrides(config, {"data.manual_dir": str(MNIST_DIR), "data.data_dir": str(tfds_dir)})
  workdir = tmp_path_factory.mktemp("t2i")
  result = trainer.train_and_evaluate(config, workdir)
  assert result["step"] == 6 and np.isfinite(result["eval/loss"])
  return config, workdir


def trainer_config_path(name: str):
  from conftest import REPO

  return REPO / "configs" / name


def restored_params(config, workdir, step=None):
  experiment, state, _ = trainer.restore_for_inference(config, workdir, step)
  experiment.checkpointer.close()
  return experiment.family, jax.device_get(state.params)


def test_both_stages_train_and_stage_two_resumes_exactly(tiny_run, load, tmp_path):
  config, workdir = tiny_run
  assert (workdir / "autoencoder" / "eval_10.json").exists()  # stage 1 trained first, there
  straight_family, straight = restored_params(config, workdir)
  resumed = load(TINY, **{"autoencoder.workdir": str(workdir / "autoencoder"),
                          "training.num_train_steps": 3})
  trainer.train_and_evaluate(resumed, tmp_path)
  apply_overrides(resumed, {"training.num_train_steps": 6})
  assert trainer.train_and_evaluate(resumed, tmp_path)["step"] == 6
  _, after_resume = restored_params(resumed, tmp_path)
  jax.tree.map(np.testing.assert_array_equal, straight, after_resume)
  # the frozen stage 1 is used as trained: its decoder maps the latents of a digit back near it
  assert straight_family.latent_scale > 0


def test_generate_writes_images_per_prompt_reproducibly(tiny_run, tmp_path):
  config, workdir = tiny_run
  first = generate.generate_files(config, workdir, ["a thick seven", "the digit 1"], num=4,
                                  guidance=2.0, seed=3, output=str(tmp_path / "a"))
  assert [p.name for p in first] == ["a-thick-seven_g2_s3.png", "the-digit-1_g2_s3.png"]
  again = generate.generate_files(config, workdir, ["a thick seven"], num=4, guidance=2.0, seed=3,
                                  output=str(tmp_path / "b"))
  with np.load(tmp_path / "a" / "a-thick-seven_g2_s3.npz") as a, np.load(
    tmp_path / "b" / "a-thick-seven_g2_s3.npz"
  ) as b, np.load(tmp_path / "a" / "the-digit-1_g2_s3.npz") as other:
    assert a["images"].shape == (4, 28, 28, 1) and str(a["prompt"]) == "a thick seven"
    assert np.all((a["images"] >= 0) & (a["images"] <= 1))
    # independent of the other prompts (up to the encoder's batch-size rounding)
    np.testing.assert_allclose(a["images"], b["images"], atol=1e-5)
    assert not np.allclose(a["images"], other["images"])
  assert again[0].exists()


def test_generate_refuses_bad_requests(tiny_run, load, tmp_path):
  config, workdir = tiny_run
  with pytest.raises(ValueError, match="The prompt is empty"):
    generate.read_prompts("   ", "")
  with pytest.raises(ValueError, match="one of them"):
    generate.read_prompts("", "")
  (tmp_path / "prompts.txt").write_text("a thin two\n\n  a large 5 \n")
  assert generate.read_prompts("", str(tmp_path / "prompts.txt")) == ["a thin two", "a large 5"]
  with pytest.raises(FileNotFoundError, match="No trained text2img model"):
    generate.generate_files(config, tmp_path / "empty", ["a seven"])
  with pytest.raises(ValueError, match="text2img run"):
    generate.generate_files(load("vae_mnist.py:tiny"), workdir, ["a seven"])


def test_a_too_long_prompt_is_truncated_with_a_warning(tiny_run, tmp_path, caplog):
  config, workdir = tiny_run
  long_prompt = "a very thick seven " + "drawn again and again " * 10
  generate.generate_files(config, workdir, [long_prompt], num=1, output=str(tmp_path))
  assert "truncated" in caplog.text
  (npz,) = tmp_path.glob("*.npz")
  with np.load(npz) as archive:
    assert bool(archive["truncated"])


def _perturbed(params, seed=0):
  """Random parameters: the DiT's zero-initialised projections would make every output 0."""
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree.unflatten(
    tree, [leaf + 0.1 * jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, keys)]
  )


def test_guidance_zero_is_conditional_and_null_prompt_is_unconditional(tiny_run):
  config, workdir = tiny_run
  family, params = restored_params(config, workdir)
  params = _perturbed(params)
  text = family._constant_text(family.encode_prompts(["a thick seven", "a thin, slanted one"]))
  null = family.null_like(text)
  z = jax.random.normal(jax.random.key(1), (2, *family.example_shape))
  t = jnp.array([500, 100])
  conditional = family._labelled_eps(params)(z, t, text)
  unconditional = family._labelled_eps(params)(z, t, null)
  assert not np.allclose(conditional, unconditional, atol=1e-3)  # the text reaches the network
  np.testing.assert_array_equal(family.eps_fn(params, text, 0.0)(z, t), conditional)
  np.testing.assert_allclose(family.eps_fn(params, null, 4.0)(z, t), unconditional, atol=1e-5)
  np.testing.assert_allclose(
    family.eps_fn(params, text, 2.0)(z, t), 3 * conditional - 2 * unconditional, atol=1e-5
  )


def test_autoguidance_extrapolates_the_denoiser_under_classifier_free_guidance(tiny_run):
  """Autoguided params (genjax.diffusion.autoguidance) reach the DiT through the family's network
  call: with CFG weight g and autoguidance weight w, eps = (1 + g) E(text) - g E(null), where
  E = (1 + w) eps_model - w eps_guide."""
  config, workdir = tiny_run
  family, params = restored_params(config, workdir)
  model, guide = _perturbed(params, 0), _perturbed(params, 1)
  text = family._constant_text(family.encode_prompts(["a thick seven", "a thin, slanted one"]))
  null = family.null_like(text)
  z = jax.random.normal(jax.random.key(1), (2, *family.example_shape))
  t = jnp.array([500, 100])
  extrapolated = {
    name: 3.0 * family._labelled_eps(model)(z, t, c) - 2.0 * family._labelled_eps(guide)(z, t, c)
    for name, c in (("text", text), ("null", null))
  }
  guided = family.eps_fn(Autoguided(model, guide, jnp.float32(2.0)), text, 1.5)(z, t)
  np.testing.assert_allclose(guided, 2.5 * extrapolated["text"] - 1.5 * extrapolated["null"],
                             rtol=1e-4, atol=1e-4)
  assert not np.allclose(guided, family.eps_fn(model, text, 1.5)(z, t), atol=1e-3)


def test_padding_a_prompt_does_not_change_the_output(tiny_run):
  config, workdir = tiny_run
  family, params = restored_params(config, workdir)
  params = _perturbed(params, seed=2)
  encoder = conditioning.text_encoder("", 24)
  z = jax.random.normal(jax.random.key(3), (1, *family.example_shape))
  t = jnp.array([300])

  def output(prompt, length):
    text = family._constant_text(encoder.encode([prompt], length))
    return family._labelled_eps(params)(z, t, text)

  short, padded = output("a thick seven", 12), output("a thick seven", 40)
  np.testing.assert_allclose(short, padded, atol=1e-5)
  assert not np.allclose(short, output("a thin one", 12), atol=1e-3)


def test_prompt_dropout_replaces_captions_by_the_empty_prompt(tiny_run):
  config, workdir = tiny_run
  family, _ = restored_params(config, workdir)
  embeddings = family.encode_prompts(["a seven", "a large two", "the digit 4"])
  batch = {
    "text_tokens": embeddings.tokens.astype(np.float16), "text_mask": embeddings.mask,
    "text_pooled": embeddings.pooled,
  }
  text = family.batch_text(batch)
  try:
    for dropout, expected in ((0.0, text), (1.0, family.null_like(text))):
      family.config.text.prompt_dropout = dropout
      dropped = family._train_labels(batch, jax.random.key(0))
      jax.tree.map(np.testing.assert_array_equal, dropped, expected)
  finally:
    family.config.text.prompt_dropout = 0.1


def test_guidance_needs_prompt_dropout_and_stages_must_share_their_data(load):
  from genjax.families.text2img import _autoencoder_config

  with pytest.raises(ValueError, match="other images than these"):
    _autoencoder_config(load(TINY, **{"data.image_size": 32}))
  stage1 = _autoencoder_config(load(TINY, **{"data.data_dir": "/somewhere"}))
  assert stage1.data.data_dir == "/somewhere"  # read from where stage 2 reads
  with pytest.raises(FileNotFoundError, match="no such config file"):
    _autoencoder_config(load(TINY, **{"autoencoder.config": "missing.py"}))


@pytest.mark.parametrize(
  ("name", "denoiser", "autoencoder"),
  [("text2img_mnist.py", 3_791_236, 109_290), ("text2img_coco.py", 39_727_888, 1_690_894)],
)
def test_config_parameter_counts(load, name, denoiser, autoencoder):
  """The counts the configs state (the COCO networks are built, not trained, here)."""
  lines = trainer.summary(load(name)).splitlines()
  assert f"denoiser: {denoiser:,} parameters" in lines
  assert f"autoencoder (frozen): {autoencoder:,} parameters" in lines


def test_synthetic_blob_captions_name_colour_and_cell():
  data = type("Data", (), {"synthetic_shape": (16, 16, 3)})()
  source = synthetic_images(np.random.default_rng(0), 64, data)
  captions = conditioning.CAPTIONERS.get("synthetic_blobs")(source, data, "train", 0)
  for caption, image, label in zip(captions, source.arrays["x"], source.arrays["label"]):
    colour = conditioning.BLOB_COLOURS[int(image.reshape(-1, 3).max(axis=0).argmax())]
    assert caption == f"a {colour} blob in row {label // 4 + 1}, column {label % 4 + 1}"


def test_captioned_source_batches_carry_each_examples_caption(encoder_dir, tmp_path, monkeypatch):
  monkeypatch.setenv("GENJAX_TEXT_CACHE", str(tmp_path))
  data = type("Data", (), {"synthetic_shape": (8, 8, 3), "captions": "synthetic_blobs", "name": "t",
                           "caption_length": 16, "text_encoder": "", "train_split": "train"})()
  source = synthetic_images(np.random.default_rng(1), 40, data)
  captioned = conditioning.captioned_source(source, data, "train", 0)
  assert len(captioned.captions) < 40  # distinct captions are encoded once
  indices = np.array([3, 17, 3])
  batch = captioned.gather(indices)
  assert batch["text_tokens"].shape == (3, 16, 384) and batch["text_tokens"].dtype == np.float16
  np.testing.assert_array_equal(batch["x"], source.arrays["x"][indices])
  encoder = conditioning.text_encoder("", 16)
  for row, index in enumerate(indices):
    expected = encoder.encode([captioned.caption(index)])
    np.testing.assert_allclose(batch["text_pooled"][row], expected.pooled[0], atol=1e-6)
    np.testing.assert_array_equal(batch["text_mask"][row], expected.mask[0])
  assert list(tmp_path.glob("minilm_*.npz"))  # cached on disk


@pytest.mark.slow
def test_coco_tiny_trains_both_stages_on_synthetic_captions(load, tmp_path):
  result = trainer.train_and_evaluate(load("text2img_coco.py:tiny"), tmp_path)
  assert result["step"] == 6 and np.isfinite(result["eval/loss"])
  assert (tmp_path / "autoencoder" / "eval_8.json").exists()
  assert list((tmp_path / "samples").glob("samples_*.png"))



def test_the_unet_with_cross_attention_is_a_config_choice(tiny_run, load, tmp_path):
  from conftest import train_on_synthetic_data

  _, workdir = tiny_run
  config = load(TINY, **{
    "autoencoder.workdir": str(workdir / "autoencoder"), "model.network": "unet",
    "model.channels": 32, "model.channel_mult": (1,), "model.attention_resolutions": (7,),
    "model.num_res_blocks": 1,
  })
  experiment, before, state, metrics = train_on_synthetic_data(config, tmp_path, steps=3)
  experiment.checkpointer.close()
  assert np.isfinite(metrics["loss"])
  flat = {"/".join(str(k.key) for k in path): leaf
          for path, leaf in jax.tree_util.tree_leaves_with_path(jax.device_get(state.params))}
  before_flat = {"/".join(str(k.key) for k in path): leaf
                 for path, leaf in jax.tree_util.tree_leaves_with_path(before)}
  text_layers = [name for name in flat if "cross" in name.lower() or "context" in name.lower()]
  assert text_layers and any(not np.array_equal(flat[n], before_flat[n]) for n in text_layers)

"""genjax.text.captions: measured attributes of real MNIST digits and the captions built from them."""

import re
import string

import numpy as np
import pytest
from conftest import MNIST_DIR
from scipy import ndimage

from genjax.datasets import read_mnist_idx
from genjax.text import captions as C

NUM_CAPTIONED = 5000


@pytest.fixture(scope="module")
def digits():
  """The first NUM_CAPTIONED training digits: (images uint8 [N, 28, 28], labels [N])."""
  images, labels = read_mnist_idx(MNIST_DIR, "train")
  return images[:NUM_CAPTIONED], labels[:NUM_CAPTIONED]


@pytest.fixture(scope="module")
def train_captions(digits):
  return C.captions_for(digits[1], digits[0], seed=0, split="train")


@pytest.fixture(scope="module")
def eval_captions(digits):
  return C.captions_for(digits[1][:1000], digits[0][:1000], seed=0, split="eval")


def words_regex(phrases) -> re.Pattern:
  """Matches any of `phrases` as whole words."""
  alternatives = "|".join(re.escape(p) for p in sorted(set(phrases), key=len, reverse=True))
  return re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])")


def phrases_of(phrasing: C.Phrasing) -> tuple[str, ...]:
  return phrasing.adjectives + phrasing.modifiers + phrasing.manners


def template_literals(templates) -> list[str]:
  """The text of the templates outside their fields, stripped, e.g. "a drawing of"."""
  return [
    literal.strip(" ,:()")
    for template in templates
    for literal, _, _, _ in string.Formatter().parse(template)
    if literal.strip(" ,:()")
  ]


def shear(images: np.ndarray, amount: float) -> np.ndarray:
  """Shears [N, 28, 28] images about their middle row: a pixel `amount` * (rows above the middle)
  to the right, so amount > 0 makes the top lean right."""
  matrix = np.array([[1.0, 0.0], [amount, 1.0]])  # output (r, c) reads input (r, c + amount r')
  offset = np.array([0.0, -amount * 13.5])
  return np.stack([ndimage.affine_transform(x, matrix, offset=offset, order=1) for x in images])


def bar(width: float, length: float, angle: float, supersample: int = 8) -> np.ndarray:
  """A [28, 28] image of a width x length bar through the centre, `angle` degrees from vertical,
  antialiased by averaging supersample^2 points per pixel."""
  centres = (np.arange(28 * supersample) + 0.5) / supersample - 14.0
  rows, cols = np.meshgrid(centres, centres, indexing="ij")
  along_x, along_y = np.sin(np.radians(angle)), -np.cos(np.radians(angle))
  along = cols * along_x + rows * along_y
  across = np.abs(rows * along_x - cols * along_y)
  inside = (across <= width / 2) & (np.abs(along) <= length / 2)
  return inside.reshape(28, supersample, 28, supersample).mean((1, 3))


# ---- measurements -------------------------------------------------------------------------------


def test_measurements_accept_uint8_and_float_with_a_channel(digits):
  images = digits[0][:50]
  as_uint8 = C.measure_attributes(images)
  as_float = C.measure_attributes(images[..., None].astype(np.float32) / 255.0)
  assert set(as_uint8) == {"thickness", "slant", "height", "width", "size"}
  for name, values in as_uint8.items():
    assert values.shape == (50,)
    np.testing.assert_allclose(as_float[name], values, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("angle", [0.0, 30.0, 45.0, 80.0])
def test_thickness_of_a_rendered_bar_is_its_width_less_the_end_caps(angle):
  """2 m / TV of a w x L bar is w L / (L + w) (perimeter 2 (L + w)), at any angle."""
  for width in (3.0, 4.0, 5.0):
    measured = C.measure_attributes(bar(width, 20.0, angle)[None])["thickness"][0]
    assert measured == pytest.approx(width * 20.0 / (20.0 + width), abs=0.2)


def test_dilated_digits_measure_thicker(digits):
  images = digits[0][:300].astype(np.float32) / 255.0
  dilated = ndimage.grey_dilation(images, size=(1, 2, 2))
  before = C.measure_attributes(images)["thickness"]
  after = C.measure_attributes(dilated)["thickness"]
  assert np.all(after > before + 0.5)


def test_shear_moves_the_slant_by_exactly_the_shear(digits):
  """A shear by s adds s to -mu11 / mu02 = tan(slant) (up to interpolation)."""
  images = digits[0][:300].astype(np.float32) / 255.0
  tangent = {
    amount: np.tan(np.radians(C.measure_attributes(shear(images, amount))["slant"]))
    for amount in (-0.3, 0.0, 0.3)
  }
  assert np.all(tangent[0.3] > tangent[0.0]) and np.all(tangent[0.0] > tangent[-0.3])
  np.testing.assert_allclose(tangent[0.3] - tangent[0.0], 0.3, atol=0.05)
  np.testing.assert_allclose(tangent[-0.3] - tangent[0.0], -0.3, atol=0.05)


def test_downscaled_and_padded_digits_measure_smaller(digits):
  images = digits[0][:300].astype(np.float32) / 255.0
  halved = np.stack([np.pad(ndimage.zoom(x, 0.5, order=1), 7) for x in images])
  before, after = C.measure_attributes(images), C.measure_attributes(halved)
  for name in ("height", "width", "size"):
    assert np.all(after[name] < 0.7 * before[name]), name


def test_categories_split_the_training_digits_by_quartiles(digits):
  images, labels = digits
  categories = C.categorize(labels, C.measure_attributes(images))
  for name in C.ATTRIBUTES:
    fractions = np.bincount(categories[name], minlength=3) / len(labels)
    assert np.all(np.abs(fractions - [0.25, 0.5, 0.25]) < 0.07), (name, fractions)


# ---- captions -----------------------------------------------------------------------------------


def test_captions_are_deterministic_per_seed_and_index(digits, train_captions):
  images, labels = digits
  assert C.captions_for(labels[:500], images[:500], seed=0, split="train") == train_captions[:500]
  other_seed = C.captions_for(labels[:500], images[:500], seed=1, split="train")
  assert np.mean([a != b for a, b in zip(other_seed, train_captions, strict=False)]) > 0.5
  subset = np.random.default_rng(0).permutation(NUM_CAPTIONED)[:200]
  in_another_batch = C.captions_for(labels[subset], images[subset], 0, "train", indices=subset)
  assert in_another_batch == [train_captions[i] for i in subset]
  attributes = C.measure_attributes(images[7:8])
  one = C.caption(
    int(labels[7]), {k: v[0] for k, v in attributes.items()}, np.random.default_rng([0, 7]), "train"
  )
  assert one == train_captions[7]


@pytest.mark.parametrize("split", ["train", "eval"])
def test_every_caption_names_its_digit_and_no_other(digits, train_captions, eval_captions, split):
  texts = {"train": train_captions, "eval": eval_captions}[split]
  names = {str(d): d for d in range(10)} | {word: d for d, word in enumerate(C.DIGIT_WORDS)}
  named = words_regex(names)
  for text, label in zip(texts, digits[1], strict=False):
    assert {names[found] for found in named.findall(text)} == {label}, text


def test_mentioned_categories_are_the_measured_ones(digits, train_captions):
  """A caption states only its digit's own categories (no middle thickness or size), and captions
  saying thick / right / large measure higher on average than those saying thin / left / small."""
  images, labels = digits
  attributes = C.measure_attributes(images)
  categories = C.categorize(labels, attributes)
  for name, (low, middle, high) in C.CATEGORIES.items():
    stated = {
      category: np.array(
        [
          bool(words_regex(phrases_of(C.TRAIN_PHRASINGS[category])).search(t))
          for t in train_captions
        ]
      )
      for category in (low, middle, high)
      if category in C.TRAIN_PHRASINGS
    }
    for index, category in enumerate((low, middle, high)):
      if category in stated:
        assert stated[category].sum() > 100, category
        assert np.all(categories[name][stated[category]] == index), category
    assert not np.any(stated[low] & stated[high])
    low_mean = attributes[name][stated[low]].mean()
    high_mean = attributes[name][stated[high]].mean()
    print(f"{name}: {low} {low_mean:.2f}, {high} {high_mean:.2f}")
    assert high_mean > low_mean


def test_held_out_phrases_and_templates_are_disjoint_from_train_ones():
  train_phrases = [p for phrasing in C.TRAIN_PHRASINGS.values() for p in phrases_of(phrasing)]
  held_out = [p for phrasing in C.HELD_OUT_PHRASINGS.values() for p in phrases_of(phrasing)]
  held_out += template_literals(C.HELD_OUT_TEMPLATES)
  train_text = " | ".join(train_phrases + list(C.TRAIN_TEMPLATES))
  assert not words_regex(held_out).search(train_text)
  assert set(C.TRAIN_TEMPLATES).isdisjoint(C.HELD_OUT_TEMPLATES)


def test_train_captions_never_use_held_out_phrasing_and_eval_captions_only_do(
  train_captions, eval_captions
):
  held_out_phrases = [p for ph in C.HELD_OUT_PHRASINGS.values() for p in phrases_of(ph)]
  train_phrases = [p for ph in C.TRAIN_PHRASINGS.values() for p in phrases_of(ph)]
  held_out = words_regex(held_out_phrases + template_literals(C.HELD_OUT_TEMPLATES))
  assert not any(held_out.search(text) for text in train_captions)
  held_out_template = words_regex(template_literals(C.HELD_OUT_TEMPLATES))
  assert all(held_out_template.search(text) for text in eval_captions)
  assert not any(words_regex(train_phrases).search(text) for text in eval_captions)
  assert sum(bool(words_regex(held_out_phrases).search(text)) for text in eval_captions) > 300


def template_regex(template: str) -> re.Pattern:
  """Matches exactly the captions `template` can produce with the train phrasings."""

  def alternatives(options) -> str:
    return "(?:" + "|".join(re.escape(o) for o in sorted(set(options), key=len, reverse=True)) + ")"

  def listed(item: str, separators: str) -> str:
    return f"{item}(?:(?:{separators}){item})*"

  phrasings = C.TRAIN_PHRASINGS.values()
  adjective = alternatives(a for p in phrasings for a in p.adjectives)
  modifier = alternatives(m for p in phrasings for m in p.modifiers)
  manner = alternatives(m for p in phrasings for m in p.manners)
  numeral, word = r"\d", alternatives(C.DIGIT_WORDS)
  digit = f"(?:number |digit )?(?:{numeral}|{word})"
  article = "(?:an?|the)"
  fields = {
    "numeral": numeral,
    "word": word,
    "digit": digit,
    "plain": f"{article} {digit}",
    "np": f"{article} (?:{listed(adjective, ', ')} )?{digit}(?: {listed(modifier, ', | and ')})?",
    "adjs": listed(adjective, ", "),
    "adjs_and": listed(adjective, ", | and "),
    "mods": listed(modifier, ", | and "),
    "manner": listed(manner, ", | and "),
  }
  pattern = "".join(
    re.escape(literal).replace(r"a\ ", r"an?\ ") + (fields[field] if field else "")
    for literal, field, _, _ in string.Formatter().parse(template)
  )
  return re.compile(pattern + "$")


def test_train_captions_are_varied_and_cover_every_template(train_captions):
  distinct = len(set(train_captions))
  print(f"{distinct} distinct captions of {len(train_captions)} training digits")
  assert distinct > 0.6 * len(train_captions)
  regexes = {template: template_regex(template) for template in C.TRAIN_TEMPLATES}
  assert len(regexes) >= 20
  for text in train_captions:
    assert any(regex.match(text) for regex in regexes.values()), text
  for template, regex in regexes.items():
    assert any(regex.match(text) for text in train_captions), template
  assert not re.search(
    r"\ba [aeiou8]|\ban [^aeiou8]", " ".join(train_captions).replace("a one", "")
  )


def test_prompt_states_the_chosen_categories():
  rng = np.random.default_rng(0)
  for split, phrasings in (("train", C.TRAIN_PHRASINGS), ("eval", C.HELD_OUT_PHRASINGS)):
    for _ in range(20):
      text = C.prompt(3, thickness="thick", slant="left", size="small", split=split, rng=rng)
      for category in ("thick", "left", "small"):
        assert words_regex(phrases_of(phrasings[category])).search(text), (category, text)
      for category in ("thin", "upright", "right", "large"):
        assert not words_regex(phrases_of(phrasings[category])).search(text), (category, text)
    assert C.prompt(3, split=split, rng=rng)
  with pytest.raises(ValueError, match="thickness='medium' cannot be stated"):
    C.prompt(3, thickness="medium", rng=rng)


def test_stored_thresholds_are_the_training_quartiles():
  """The constants in captions.py are what scripts/caption_thresholds.py prints (3 decimals)."""
  images, labels = read_mnist_idx(MNIST_DIR, "train")
  attributes = C.measure_attributes(images)
  for name, stored in (("thickness", C.THICKNESS_THRESHOLDS), ("size", C.SIZE_THRESHOLDS)):
    for digit in range(10):
      quartiles = np.quantile(attributes[name][labels == digit], (0.25, 0.75))
      np.testing.assert_allclose(stored[digit], quartiles, atol=6e-4, err_msg=f"{name} {digit}")
  np.testing.assert_allclose(
    C.SLANT_THRESHOLDS, np.quantile(attributes["slant"], (0.25, 0.75)), atol=6e-4
  )

"""Seeded, varied captions of MNIST digits from their labels and measured attributes.

MNIST has labels only; a caption also states a random subset of three attributes measured on the
image (`measure_attributes`), each sorted into three categories (`categorize`):

  thickness  thin / medium / thick        stroke width, px; per-digit quartiles of the training set
  slant      left / upright / right       lean of the ink, degrees; quartiles of the whole training set
  size       small / medium / large       geometric mean of the ink's height and width, px;
                                          per-digit quartiles of the training set

A value below the 25% quantile is the low category, above the 75% quantile the high one, else the
middle. Slant is an angle whose zero means upright for every digit, so its thresholds are shared;
thickness and size depend on the digit's shape (a 1 is narrow; a 0 has no stroke ends, which the
width estimator counts), so their thresholds are per digit: "thick" means thick for a seven.
MNIST scales every digit to fit a 20x20 box (the pixels > 0.5 of 87% of training digits span 20 rows),
so the size categories mostly sort digits by width; "small" therefore has the synonym "narrow".
The thresholds below were printed by

  .venv/bin/python scripts/caption_thresholds.py --data_dir=/work/shared/data/mnist

Captions name the digit (numeral or word) through a template; the middle categories of thickness and
size are never described, "upright" (the middle slant) is. split="train" draws from TRAIN_TEMPLATES and
TRAIN_PHRASINGS; split="eval" draws only from HELD_OUT_TEMPLATES and HELD_OUT_PHRASINGS (synonyms and
sentence shapes no train caption uses), with the same digit names. `captions_for` gives example i the
generator np.random.default_rng([seed, i]), so a caption depends only on (seed, i, its image).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import string

import numpy as np

ATTRIBUTES = ("size", "thickness", "slant")  # the order of adjectives before the noun
CATEGORIES = {
  "thickness": ("thin", "medium", "thick"),
  "slant": ("left", "upright", "right"),
  "size": ("small", "medium", "large"),
}
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# (25%, 75%) quantiles of the MNIST training set (60,000 digits): scripts/caption_thresholds.py.
THICKNESS_THRESHOLDS = np.array(
  [  # [10 digits, 2], px
    (2.218, 3.125),  # 0
    (2.045, 2.793),  # 1
    (2.096, 2.923),  # 2
    (1.992, 2.694),  # 3
    (1.967, 2.695),  # 4
    (1.861, 2.503),  # 5
    (2.043, 2.883),  # 6
    (2.037, 2.751),  # 7
    (1.986, 2.770),  # 8
    (1.941, 2.640),  # 9
  ]
)
SLANT_THRESHOLDS = np.array((-4.175, 16.345))  # [2], degrees, all digits
SIZE_THRESHOLDS = np.array(
  [  # [10 digits, 2], px
    (17.189, 19.028),  # 0
    (9.874, 14.492),  # 1
    (17.031, 18.972),  # 2
    (16.112, 18.483),  # 3
    (15.881, 18.387),  # 4
    (16.442, 18.679),  # 5
    (15.324, 17.752),  # 6
    (15.818, 18.118),  # 7
    (15.643, 18.168),  # 8
    (14.822, 17.047),  # 9
  ]
)

def measure_attributes(images: np.ndarray) -> dict[str, np.ndarray]:
  """Stroke thickness, slant and size of each image, vectorised; each value [N] float32.

  images: [N, H, W] or [N, H, W, 1], uint8 in [0, 255] or float in [0, 1]; ink is bright, x is the
  intensity, c the column (right) and r the row (down); m = sum x is the ink mass.

    thickness  2 m / TV, px, with TV = sum sqrt((x[r+1,c] - x[r,c])^2 + (x[r,c+1] - x[r,c])^2)
               the total variation (zero outside the image). By the coarea formula TV is the ink's
               perimeter, so a w x L bar measures w L / (L + w), which is w for long strokes.
               Rendered bars 16 px long measure 1.8, 2.6, 3.2, 3.9 px at widths 2, 3, 4, 5 px at
               every angle; widths below 2 px all measure about 1.8 (blurred by the pixel grid).
    slant      atan(-mu11 / mu02) in degrees, with mu11 = sum x (c - c_mean)(r - r_mean) and
               mu02 = sum x (r - r_mean)^2: -mu11 / mu02 is the shear dc / d(-r) of the ink, how far
               it moves right per pixel up; positive when the top leans right, 0 upright.
    height     sum_r max_c x[r, c], px: the number of rows that hold ink, each counted by its
               brightest pixel (a bounding-box height that no faint pixel stretches).
    width      sum_c max_r x[r, c], px, likewise over columns.
    size       sqrt(height * width), px.
  A blank image (m = 0) measures NaN thickness and slant.
  """
  x = np.asarray(images)
  x = x.reshape(x.shape[:3]).astype(np.float32) / (255.0 if x.dtype == np.uint8 else 1.0)
  mass = x.sum((1, 2))
  padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
  down = padded[:, 1:, :-1] - padded[:, :-1, :-1]
  right = padded[:, :-1, 1:] - padded[:, :-1, :-1]
  total_variation = np.sqrt(down**2 + right**2).sum((1, 2))
  rows = np.arange(x.shape[1], dtype=np.float32)
  cols = np.arange(x.shape[2], dtype=np.float32)
  row_mass, col_mass = x.sum(2), x.sum(1)
  row_offset = rows - (row_mass @ rows / mass)[:, None]  # [N, H]
  col_offset = cols - (col_mass @ cols / mass)[:, None]  # [N, W]
  mu02 = (row_mass * row_offset**2).sum(1)
  mu11 = np.einsum("nrc,nr,nc->n", x, row_offset, col_offset)
  height, width = x.max(2).sum(1), x.max(1).sum(1)
  return {
    "thickness": 2.0 * mass / total_variation,
    "slant": np.degrees(np.arctan(-mu11 / mu02)),
    "height": height,
    "width": width,
    "size": np.sqrt(height * width),
  }


def categorize(labels: np.ndarray, attributes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Category index in {0: low, 1: middle, 2: high} of each attribute ([N] int each; names in
  CATEGORIES): low up to the attribute's 25% threshold (for the digit), high above its 75% one."""
  labels = np.asarray(labels, np.int64)
  thresholds = {
    "thickness": THICKNESS_THRESHOLDS[labels],
    "slant": np.broadcast_to(SLANT_THRESHOLDS, (len(labels), 2)),
    "size": SIZE_THRESHOLDS[labels],
  }
  return {
    name: (np.asarray(attributes[name]) > bounds[:, 0]).astype(np.int64)
    + (np.asarray(attributes[name]) > bounds[:, 1])
    for name, bounds in thresholds.items()
  }


@dataclasses.dataclass(frozen=True)
class Phrasing:
  """Synonymous phrases of one category: adjectives go before the noun ("a bold seven") or after
  "that is"; modifiers after the noun ("a seven in thick strokes"); manners after "written"
  ("written thickly")."""

  adjectives: tuple[str, ...]
  modifiers: tuple[str, ...]
  manners: tuple[str, ...]


TRAIN_PHRASINGS = {
  "thin": Phrasing(
    ("thin", "light", "fine", "thin-stroked"),
    ("in thin strokes", "with fine lines", "with light strokes"),
    ("thin", "thinly", "with a fine pen", "in light strokes"),
  ),
  "thick": Phrasing(
    ("thick", "bold", "heavy", "thick-stroked"),
    ("in thick strokes", "with bold lines", "with heavy strokes"),
    ("thick", "boldly", "with a thick pen", "in heavy strokes"),
  ),
  "left": Phrasing(
    ("left-slanted", "left-leaning", "backslanted"),
    ("slanted to the left", "leaning left", "tilted left"),
    ("slanted left", "leaning to the left", "with a leftward slant"),
  ),
  "upright": Phrasing(
    ("upright", "straight", "unslanted"),
    ("standing upright", "standing straight", "with no slant"),
    ("upright", "straight", "without slant"),
  ),
  "right": Phrasing(
    ("right-slanted", "right-leaning", "italic"),
    ("slanted to the right", "leaning right", "tilted right", "in italics"),
    ("slanted right", "leaning to the right", "in italics", "with a rightward slant"),
  ),
  "small": Phrasing(
    ("small", "tiny", "narrow"),
    ("at a small size", "written small", "of small size"),
    ("small", "at a small size"),
  ),
  "large": Phrasing(
    ("large", "big", "wide"),
    ("at a large size", "written large", "of large size"),
    ("large", "big", "at a large size"),
  ),
}
# Evaluation only: no word or phrase here appears in a train caption.
HELD_OUT_PHRASINGS = {
  "thin": Phrasing(("skinny", "delicate"), ("with hairline strokes",), ("delicately",)),
  "thick": Phrasing(("hefty", "chunky"), ("with fat strokes",), ("in fat strokes",)),
  "left": Phrasing(("left-skewed",), ("skewed left",), ("skewed to the left",)),
  "upright": Phrasing(("vertical",), ("standing vertically",), ("vertically",)),
  "right": Phrasing(("right-skewed",), ("skewed right",), ("skewed to the right",)),
  "small": Phrasing(("little", "miniature"), ("at a reduced size",), ("at a reduced size",)),
  "large": Phrasing(("huge", "giant"), ("at an enlarged size",), ("huge",)),
}

# Template fields. A template with {np} states any number of attributes, one with adjs, adjs_and,
# mods or manner (and no np) at least one, one with none of these no attribute. Templates write "a";
# it becomes "an" before a vowel sound after formatting.
#   digit    the digit's name: "7", "seven", "number 7", "number seven", "digit 7", "digit seven"
#   numeral  "7";  word  "seven"
#   plain    an article and the name: "a seven", "the number 7"
#   np       like plain, each attribute as an adjective or a modifier: "a bold seven leaning right"
#   adjs     adjectives, comma-separated: "small, bold"
#   adjs_and adjectives joined by "and": "small and bold"
#   mods     modifiers joined by "and": "in thick strokes and leaning right"
#   manner   manners joined by "and": "thin and upright"
TRAIN_TEMPLATES = (
  "{numeral}",
  "{word}",
  "{word} ({numeral})",
  "a handwritten {digit}",
  "handwritten digit {numeral}",
  "a white {digit} on a black background",
  "a number written by hand: {numeral}",
  "{np}",
  "{np}, written by hand",
  "{np}, handwritten",
  "{np} written with a pen",
  "{np} in white ink",
  "a picture of {np}",
  "an image of {np}",
  "a scan of {np}",
  "a close-up of {np}",
  "{np} on a black background",
  "{plain}, written {manner}",
  "{plain}, {adjs_and}",
  "a handwritten {digit} {mods}",
  "the digit {numeral}, {mods}",
  "{adjs} {digit}",
  "a {adjs} handwritten {digit}",
  "a {word} written {manner}",
)
HELD_OUT_TEMPLATES = (
  "the symbol {numeral}",
  "a drawing of {np}",
  "a sketch of {np}",
  "an illustration of {np}",
  "{np}, drawn with a marker",
  "{plain} that is {adjs_and}",
)
DIGIT_NAMES = (
  "{numeral}",
  "{word}",
  "number {numeral}",
  "number {word}",
  "digit {numeral}",
  "digit {word}",
)
_ATTRIBUTE_FIELDS = {"np", "adjs", "adjs_and", "mods", "manner"}
_ARTICLE_BEFORE_VOWEL = re.compile(r"\ba (?=[aeiou8](?!ne\b))")  # not before "one"


def _template_fields(template: str) -> set[str]:
  """The names of the fields in `template`."""
  return {field for _, field, _, _ in string.Formatter().parse(template) if field}


@functools.cache
def _templates(split: str, num_attributes: int) -> tuple[str, ...]:
  """The split's templates that can state `num_attributes` attributes: all those with an {np}; for
  none the attribute-free ones too, for some those that need attributes (adjs, mods, ...)."""
  templates = {"train": TRAIN_TEMPLATES, "eval": HELD_OUT_TEMPLATES}[split]
  return tuple(
    template
    for template in templates
    if "np" in _template_fields(template)
    or bool(_template_fields(template) & _ATTRIBUTE_FIELDS) == (num_attributes > 0)
  )


def _join(phrases: list[str]) -> str:
  """Joins phrases as "a", "a and b", "a, b and c"."""
  return " and ".join([", ".join(phrases[:-1]), phrases[-1]] if len(phrases) > 2 else phrases)


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
  return options[rng.integers(len(options))]


def _fix_articles(text: str) -> str:
  """Turns "a" into "an" before a vowel sound ("an eight", "an 8", "an italic"; "a one" stays)."""
  return _ARTICLE_BEFORE_VOWEL.sub("an ", text)


def describe(label: int, categories: dict[str, str], rng: np.random.Generator, split: str) -> str:
  """A caption of digit `label` that states every category in `categories` ({attribute: category
  name}, e.g. {"thickness": "thick"}; any subset of ATTRIBUTES, none in a middle category other
  than "upright"), in a random template and phrasing of `split` ("train" or "eval")."""
  phrasings = {"train": TRAIN_PHRASINGS, "eval": HELD_OUT_PHRASINGS}[split]
  stated_phrasings = [phrasings[categories[name]] for name in ATTRIBUTES if name in categories]
  template = _pick(rng, _templates(split, len(stated_phrasings)))
  numeral, word = str(label), DIGIT_WORDS[label]
  digit = _pick(rng, DIGIT_NAMES).format(numeral=numeral, word=word)
  article = _pick(rng, ("a", "the"))
  before = rng.random(len(stated_phrasings)) < 0.5  # in {np}: which attributes are adjectives
  np_adjectives = [
    _pick(rng, p.adjectives) for p, b in zip(stated_phrasings, before, strict=True) if b
  ]
  np_modifiers = [
    _pick(rng, p.modifiers) for p, b in zip(stated_phrasings, before, strict=True) if not b
  ]
  adjectives = [_pick(rng, p.adjectives) for p in stated_phrasings]
  noun_phrase = [article, ", ".join(np_adjectives), digit, _join(np_modifiers)]
  text = template.format(
    numeral=numeral,
    word=word,
    digit=digit,
    plain=f"{article} {digit}",
    np=" ".join(part for part in noun_phrase if part),
    adjs=", ".join(adjectives),
    adjs_and=_join(adjectives),
    mods=_join([_pick(rng, p.modifiers) for p in stated_phrasings]),
    manner=_join([_pick(rng, p.manners) for p in stated_phrasings]),
  )
  return _fix_articles(text)


def _caption(
  label: int, category_indices: dict[str, int], rng: np.random.Generator, split: str
) -> str:
  """Describes 0 to all of the example's describable categories (k uniform, then a random subset
  of size k)."""
  describable = [
    name for name in ATTRIBUTES if CATEGORIES[name][category_indices[name]] in TRAIN_PHRASINGS
  ]
  chosen = rng.permutation(len(describable))[: rng.integers(len(describable) + 1)]
  categories = {
    describable[i]: CATEGORIES[describable[i]][category_indices[describable[i]]] for i in chosen
  }
  return describe(label, categories, rng, split)


def caption(label: int, attributes: dict[str, float], rng: np.random.Generator, split: str) -> str:
  """A caption of one digit: `attributes` are its measurements (measure_attributes of the image,
  one value each); a random subset of its describable categories is stated."""
  indices = categorize(np.array([label]), {k: np.atleast_1d(v) for k, v in attributes.items()})
  return _caption(int(label), {k: int(v[0]) for k, v in indices.items()}, rng, split)


def captions_for(
  labels: np.ndarray, images: np.ndarray, seed: int, split: str, indices: np.ndarray | None = None
) -> list[str]:
  """Captions of examples (labels [N], images [N, 28, 28(, 1)]) whose dataset indices are `indices`
  ([N], default 0..N-1): example i's caption is caption(labels[i], its attributes,
  np.random.default_rng([seed, indices[i]]), split), whatever else is in the batch."""
  labels = np.asarray(labels, np.int64)
  indices = np.arange(len(labels)) if indices is None else np.asarray(indices)
  categories = categorize(labels, measure_attributes(images))
  return [
    _caption(
      int(label),
      {name: int(values[i]) for name, values in categories.items()},
      np.random.default_rng([seed, int(index)]),
      split,
    )
    for i, (label, index) in enumerate(zip(labels, indices, strict=True))
  ]


def prompt(
  label: int,
  thickness: str | None = None,
  slant: str | None = None,
  size: str | None = None,
  split: str = "eval",
  *,
  rng: np.random.Generator,
) -> str:
  """A prompt for digit `label` that states the given categories (thickness "thin" | "thick", slant
  "left" | "upright" | "right", size "small" | "large"; None leaves one out), e.g.
  prompt(7, thickness="thick", rng=rng) -> "a sketch of a hefty 7"."""
  given = {"thickness": thickness, "slant": slant, "size": size}
  categories = {name: value for name, value in given.items() if value is not None}
  for name, value in categories.items():
    if value not in CATEGORIES[name] or value not in TRAIN_PHRASINGS:
      options = [c for c in CATEGORIES[name] if c in TRAIN_PHRASINGS]
      raise ValueError(f"{name}={value!r} cannot be stated: choose one of {options} or None.")
  return describe(label, categories, rng, split)

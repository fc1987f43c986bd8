"""Model families, selected by `config.family`."""

import ml_collections

from genjax.config import base_config
from genjax.families.base import Family
from genjax.registry import Registry

FAMILIES: Registry[type[Family]] = Registry("family")


def get_family(name: str) -> type[Family]:
  _import_all()
  return FAMILIES.get(name)


def family_config(name: str) -> ml_collections.ConfigDict:
  """base_config() with config.family = name and the family's keys and defaults: the starting
  point of every experiment config, e.g. `config = family_config("gan")`."""
  config = base_config()
  config.family = name
  get_family(name).add_defaults(config)
  return config


def _import_all() -> None:
  """Imports the family modules so their @FAMILIES.register decorators run."""
  from genjax.families import (
    diffusion,  # noqa: F401
    gan,  # noqa: F401
    sr3,  # noqa: F401
    stylegan2,  # noqa: F401
    text2img,  # noqa: F401
    vae,  # noqa: F401
  )

"""Model families, selected by `config.family`."""

from genjax.families.base import Family
from genjax.registry import Registry

FAMILIES: Registry[type[Family]] = Registry("family")


def get_family(name: str) -> type[Family]:
  _import_all()
  return FAMILIES.get(name)


def _import_all() -> None:
  """Imports the family modules so their @FAMILIES.register decorators run."""
  from genjax.families import (
    diffusion,  # noqa: F401
    gan,  # noqa: F401
    vae,  # noqa: F401
  )

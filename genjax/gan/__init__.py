"""GAN math: adversarial losses, regularizers, DiffAugment, and the family's config keys."""

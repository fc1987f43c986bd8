"""GAN building blocks: adversarial losses, regularizers, DiffAugment and mode-coverage metrics."""

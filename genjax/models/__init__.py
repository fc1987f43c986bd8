"""Networks (flax.linen modules), selected by `config.model.name` within each family."""

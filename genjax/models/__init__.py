"""Networks (flax.linen modules): models/<family>.py chooses one by `config.model.network`."""

"""The train loop reads from the device only at log steps: the other steps queue work and go on."""

from __future__ import annotations

import itertools

from jax._src import array as jax_array

from genjax import trainer

STEPS, LOG_EVERY = 12, 4


def test_device_to_host_transfers_happen_only_at_log_steps(load, tmp_path, monkeypatch):
  """Every fetch of an array's value (np.asarray, float(), jax.device_get: all read
  ArrayImpl._value, which copies when no host copy exists yet) is counted, and the counts are
  split by step at each call of the compiled train step. The loop must fetch
  nothing after a non-log step and the summary's metrics after a log step."""
  fetches = []
  original_value = jax_array.ArrayImpl._value

  def counting_value(self):
    if self._npy_value is None:
      fetches.append(self.shape)
    return original_value.fget(self)

  fetches_before_step = []

  class MarkingExperiment(trainer.Experiment):
    def __init__(self, *args, **kwargs):
      super().__init__(*args, **kwargs)
      compiled_step = self.train_step

      def train_step(*step_args):
        fetches_before_step.append(len(fetches))
        return compiled_step(*step_args)

      self.train_step = train_step

  monkeypatch.setattr(jax_array.ArrayImpl, "_value", property(counting_value))
  monkeypatch.setattr(trainer, "Experiment", MarkingExperiment)
  config = load("gan_8gaussians.py:tiny", **{
    "training.num_train_steps": STEPS, "training.log_every": LOG_EVERY,
    "training.checkpoint_every": STEPS, "eval.num_samples": 1000, "sampling.grid_size": 100,
  })
  trainer.train_and_evaluate(config, tmp_path / "run")

  assert len(fetches_before_step) == STEPS
  after_step = {step: later - earlier for step, (earlier, later)
                in enumerate(itertools.pairwise(fetches_before_step), start=1)}
  log_steps = [step for step in after_step if step % LOG_EVERY == 0]
  assert log_steps == [4, 8]
  quiet_steps = {step: count for step, count in after_step.items() if step not in log_steps}
  assert quiet_steps == dict.fromkeys(quiet_steps, 0)
  assert all(after_step[step] > 0 for step in log_steps), after_step

"""The shared config vocabulary and helpers to load experiment configs.

Every experiment config (configs/*.py) starts from `base_config()` and overrides a handful of keys, so
sweeps and scripts use the same names for every family:

  seed, family
  data.*      dataset name, splits, location, preprocessing
  model.*     network name and sizes (family specific keys live here)
  optim.*     optimizer, learning-rate schedule, clipping, EMA, gradient accumulation
  training.*  num_train_steps, batch_size, log/checkpoint/sample cadence
  eval.*      metrics and their protocol
  sampling.*  number of samples and sampler settings
  logging.*   where metrics go besides the console, TensorBoard and metrics.jsonl (Weights & Biases)

Configs are locked: setting a key that does not exist is an error naming the nearest valid keys,
and a key that was renamed is an error naming its new name (RENAMED_KEYS).
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.util
from pathlib import Path

import ml_collections

# old dotted key -> (new key, what changed): configs written for an older genjax fail with this.
RENAMED_KEYS = {
  "model.name": (
    "model.network",
    (
      "every family chooses its network by model.network (diffusion configs used model.name; "
      "GAN and VAE configs used it as a free-text label, which belongs in the config's docstring)"
    ),
  ),
}


def renamed_key_message(key: str) -> str | None:
  """The error for a key that was renamed, or None when `key` was not."""
  if key not in RENAMED_KEYS:
    return None
  new, why = RENAMED_KEYS[key]
  return f"Config key {key!r} was renamed to {new!r}: {why}. Set {new} instead."


def check_renamed_keys(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError when the config still sets a renamed key, naming the new key."""
  for key in flat_keys(config):
    message = renamed_key_message(key)
    if message:
      raise ValueError(message)


def base_config() -> ml_collections.ConfigDict:
  """Defaults shared by every experiment; configs override what differs."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.family = ""  # "vae", "gan", "diffusion" (genjax.families.family_config adds its keys)
  config.precision = "float32"  # trained networks compute in float32 or bfloat16 (genjax.precision)

  # Fine-tuning (genjax.finetune): the parameters of a new run come from another run's checkpoint.
  config.init_from = ""  # that run's --workdir ("": random initialisation)
  config.init_step = 0  # its checkpoint step (0: the latest)
  config.init_from_ema = True  # its EMA weights (False: its raw weights)
  config.init_rules = ()  # allowed shape changes, e.g. ("extend_class_embedding",)
  config.init_include = ""  # a regex: load only these parameter paths, e.g. "^generator/" ("": all)

  config.data = data = ml_collections.ConfigDict()
  data.name = "mnist"  # tfds name, "synthetic_images" or a 2-D toy set (see genjax.data.datasets)
  data.train_split = "train"
  data.eval_split = "test"
  data.manual_dir = ""  # folder with the dataset's official files (offline); else $GENJAX_DATA_DIR
  data.data_dir = ""  # where tfds keeps prepared data; else $TFDS_DATA_DIR or ~/tensorflow_datasets
  data.in_memory = True  # decode the split once into host memory (right for MNIST/CIFAR sizes)
  data.image_size = 0  # 0 keeps the native size; larger zero-pads (MNIST 28 -> 32)
  data.value_range = (0.0, 1.0)  # pixels are mapped to this interval
  data.dequantize = False  # uniform dequantization: (x + U[0, 1)) / 256
  data.binarize = "none"  # "none", "dynamic" (x ~ Bernoulli(pixel)) or "threshold" (pixel > 0.5)
  data.random_flip = False  # horizontal flips (natural images only, never digits)
  data.num_threads = 2  # grain reader threads
  data.prefetch = 4  # batches prefetched by grain
  data.num_examples = 100_000  # size of generated datasets (2-D toys, synthetic images)
  data.classes = ()  # keep only these labels, in every split (e.g. (5, 6, 7, 8, 9)); () keeps all
  data.train_examples = 0  # >0: a fixed random subset of this many training examples (limited data)
  data.subset_seed = 0  # the seed that draws that subset
  data.subset_complement = False  # True: train on the examples NOT in that subset (pre-training)
  data.synthetic_shape = (32, 32, 3)  # [H, W, C] of "synthetic_images"
  data.folder = ""  # the images of data.name="image_folder" (PNG/JPEG; class subfolders optional)

  config.model = ml_collections.ConfigDict()  # the family's network keys (its add_defaults)

  config.optim = optim = ml_collections.ConfigDict()
  optim.name = "adam"  # "adam", "adamw", "sgd", "rmsprop"
  optim.lr = 1e-3
  optim.b1 = 0.9
  optim.b2 = 0.999
  optim.eps = 1e-8
  optim.weight_decay = 0.0
  optim.momentum = 0.9  # sgd/rmsprop only
  optim.schedule = "constant"  # "constant", "cosine", "linear", "exponential"
  optim.warmup_steps = 0
  optim.end_lr_factor = 0.0  # final lr = lr * end_lr_factor for cosine/linear/exponential decay
  optim.grad_clip_norm = 0.0  # 0 disables global-norm clipping
  optim.ema_decay = 0.0  # 0 disables the EMA of the parameters (then EMA params == params)
  optim.ema_warmup = "ramp"  # "ramp": decay min(ema_decay, (1+n)/(10+n)) at update n; "none"
  optim.freeze = ()  # regexes of parameter paths ("encoder/Dense_0/", re.search) never updated
  optim.lr_multipliers = ()  # ("regex=factor", ...): those parameters' learning rate times factor
  optim.accumulate_steps = 1  # >1: optax.MultiSteps, one update per this many micro-batches

  config.training = training = ml_collections.ConfigDict()
  training.num_train_steps = 1000
  training.batch_size = 128  # global batch over all devices and hosts (per micro-batch)
  training.log_every = 100
  training.checkpoint_every = 1000
  training.sample_every = 0  # 0: only at the end of training
  training.eval_every = 0  # 0: only at the end of training
  training.keep_checkpoints = 3
  training.keep_best_by = ""  # an eval metric name: also keep the best evaluated checkpoint by it
  training.best_mode = "min"  # "min" or "max" for keep_best_by
  training.async_checkpoints = True
  training.halt_on_nonfinite = True
  # >0: end training (evaluate, save, sample) at the first log step after this many minutes of
  # training in this invocation, even before num_train_steps; a later run resumes from there.
  training.max_train_minutes = 0.0

  config.eval = eval_config = ml_collections.ConfigDict()
  eval_config.batch_size = 500
  eval_config.num_examples = 0  # 0: the whole eval split
  eval_config.seed = 1234  # fixes the eval-time randomness (binarization, latents)
  eval_config.use_ema = True  # evaluate the EMA parameters (equal to the parameters when EMA is off)
  # Sample-based metrics (genjax.evaluation.sample_metrics): names "<extractor>_<metric>", with an
  # extractor of EXTRACTORS ("mnist", "inception", "raw") and a metric of SAMPLE_METRICS ("fid",
  # "kid", "is", "prd" = precision/recall/density/coverage, "modes" = mode coverage of mixtures).
  eval_config.sample_metrics = ()  # e.g. ("mnist_fid", "mnist_kid", "mnist_is", "mnist_prd")
  eval_config.num_samples = 10_000  # samples drawn for the sample metrics
  eval_config.sample_batch_size = 500  # samples per call of the family's sample hook
  eval_config.sample_seed = 0  # batch i of samples uses fold_in(key(sample_seed), i)
  eval_config.reference_split = "train"  # the real split the samples are compared with
  eval_config.reference_num_examples = 0  # 0: the whole reference split
  eval_config.reference_dir = ""  # reference statistics cache; else $GENJAX_REFERENCE_DIR or ~/.cache
  eval_config.feature_samples = 10_000  # features kept per set for KID and precision/recall (prd)
  eval_config.kid_subset_size = 1000  # KID: disjoint subsets of this size (mean and standard error)
  eval_config.is_splits = 10  # Inception Score splits
  eval_config.prd_k = 3  # k-th neighbour radius for precision/recall (Kynkaanniemi et al. 2019)
  eval_config.dc_k = 5  # k-th neighbour radius for density/coverage (Naeem et al. 2020)
  eval_config.mnist_classifier_weights = ""  # "": the committed weights (genjax/evaluation/weights)
  eval_config.mnist_classifier_sha256 = ""  # "": the hash pinned for the committed weights
  # FID Inception weights: "" = scripts/get_inception_weights.py's output, whose SHA-256 is pinned;
  # another file (e.g. converted from pytorch-fid, with the fc layer the Inception Score needs)
  # needs its own eval.inception_sha256, checked before loading.
  eval_config.inception_weights = ""
  eval_config.inception_sha256 = ""
  eval_config.inception_protocol = "tf_fid"  # input handling: "tf_fid" (papers) or "pytorch_fid"

  config.sampling = sampling = ml_collections.ConfigDict()
  sampling.grid_size = 64  # images in each PNG grid (rows of grid_columns)
  sampling.grid_columns = 8
  sampling.num_samples = 64  # samples --mode=sample writes to samples_<step>_seed<seed>.npz
  sampling.batch_size = 64  # --mode=sample draws this many at a time (bounded memory)
  sampling.seed = 42
  sampling.use_ema = True

  # --mode=restore (genjax.restore): the solvers' settings; the task and files are flags.
  config.restore = restore = ml_collections.ConfigDict()
  restore.num_steps = 100  # steps of the diffusion solvers (ddnm, pigdm, repaint, sdedit)
  restore.eta = 1.0  # their posterior steps: 1 ancestral, 0 deterministic (DDIM)
  restore.repaint_resample = 3  # repaint: passes per step
  restore.prior_variance = 1.0  # pigdm: the data variance v in r_t^2 (ΠGDM's 1)
  restore.guidance_scale = 1.0  # pigdm: the likelihood score's weight (1 = the exact Gaussian rule)
  restore.strength = 0.0  # sdedit: 0 starts at the image's own noise level, else SDEdit's strength
  restore.batch_size = 16  # images restored per call
  restore.seed = 0

  # Metric writers (genjax.writers.make_writer) besides the console, TensorBoard and metrics.jsonl.
  config.logging = logging = ml_collections.ConfigDict()
  logging.wandb = False  # also log to Weights & Biases (needs pip install 'genjax-generative[wandb]')
  logging.wandb_project = "genjax"
  logging.wandb_entity = ""  # "": the logged-in user's default entity
  logging.wandb_mode = ""  # "online", "offline" or "disabled"; "": $WANDB_MODE, else "online"
  return config


def config_from_file(file_name: str | Path, arg: str = "") -> ml_collections.ConfigDict:
  """The unlocked `get_config(arg)` of a config file, for configs that build on another one.

  Config files are not a package, so a config derived from another loads it by path:
  `config_from_file(Path(__file__).with_name("dcgan_mnist.py"), arg)`.
  """
  spec = importlib.util.spec_from_file_location(Path(file_name).stem, file_name)
  if spec is None or not Path(file_name).is_file():
    raise FileNotFoundError(f"Config file {str(file_name)!r} does not exist.")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def load_config(path: str) -> ml_collections.ConfigDict:
  """Loads and locks a `--config` value, e.g. `load_config("configs/vae_mnist.py:tiny")`."""
  file_name, _, arg = path.partition(":")
  config = config_from_file(file_name, arg)
  check_renamed_keys(config)
  config.lock()
  return config


def flat_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  """All leaf keys as dotted paths, e.g. ["data.name", "optim.lr", ...]."""
  keys = []
  for key, value in config.items():
    path = f"{prefix}{key}"
    if isinstance(value, ml_collections.ConfigDict):
      keys.extend(flat_keys(value, path + "."))
    else:
      keys.append(path)
  return keys


def unknown_key_message(config: ml_collections.ConfigDict, key: str) -> str:
  """A message for a `--config.<key>` that does not exist, naming the closest valid keys (or
  the new name of a renamed key)."""
  renamed = renamed_key_message(key)
  if renamed:
    return renamed
  candidates = flat_keys(config)
  close = difflib.get_close_matches(key, candidates, n=3, cutoff=0.5)
  section = key.split(".")[0]
  siblings = [k for k in candidates if k.startswith(section + ".")]
  hint = f" Did you mean {' or '.join(close)}?" if close else ""
  listing = f" Keys in {section}: {', '.join(siblings)}." if siblings else ""
  return f"Unknown config key {key!r}.{hint}{listing}"


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict[str, object]) -> None:
  """Sets dotted keys (e.g. {"optim.lr": 3e-4}), rejecting unknown ones with the nearest valid keys."""
  valid = set(flat_keys(config))
  for key, value in overrides.items():
    if key not in valid:
      raise KeyError(unknown_key_message(config, key))
    *parents, leaf = key.split(".")
    node = config
    for parent in parents:
      node = node[parent]
    with node.ignore_type() if isinstance(node[leaf], (tuple, list)) else contextlib.nullcontext():
      node[leaf] = value


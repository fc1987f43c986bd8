"""The config keys of the diffusion family, added to `base_config()` by `add_defaults`.

model.*      network ("unet", "dit" or "score_mlp", genjax.models.diffusion) and the keys of
             each; the UNet defaults are DDPM's CIFAR-10 network (35.7M parameters)

diffusion.*  process ("ddpm", "vp", "subvp", "ve", "edm") and its constants, the objective
             ("eps", "v", "dsm", "edm"), loss reduction and weighting, label dropout for guidance
sampling.*   sampler and its settings (see genjax.diffusion.samplers), guidance weight, clipping,
             inpainting/SDEdit settings of the image grids
eval.*       likelihood ("vlb" for ddpm, "ode" for continuous processes, "none") and its settings
"""

from __future__ import annotations

import ml_collections


def add_defaults(config: ml_collections.ConfigDict) -> None:
  config.data.value_range = (-1.0, 1.0)  # DDPM's pixels (its variational bound needs them)
  _add_network_defaults(config.model)
  config.diffusion = d = ml_collections.ConfigDict()
  d.process = "ddpm"
  d.num_timesteps = 1000  # ddpm
  d.beta_schedule = "linear"  # ddpm: "linear" or "cosine"
  d.beta_start = 1e-4  # ddpm linear schedule
  d.beta_end = 0.02
  d.beta_min = 0.1  # vp / subvp: beta(t) linear on [0, 1]
  d.beta_max = 20.0
  d.sigma_min = 0.01  # ve (edm: 0.002)
  d.sigma_max = 50.0  # ve (edm: 80)
  d.t_min = 1e-3  # vp / subvp / ve: smallest time in sampling and likelihoods
  d.rho = 7.0  # edm time grid
  d.p_mean = -1.2  # edm training sigma: ln sigma ~ N(p_mean, p_std^2)
  d.p_std = 1.2
  d.sigma_data = 0.5  # edm preconditioning
  d.objective = "eps"
  d.reduce = "mean"  # "mean" or "sum" over the dimensions of an example
  d.likelihood_weighting = False  # dsm only: weight g(t)^2
  d.importance_sampling = False  # dsm + likelihood weighting: t uniform in log-SNR
  d.min_snr_gamma = 0.0  # > 0 (e.g. 5): Min-SNR-gamma loss weights (eps, v, dsm; objectives.py)
  d.model_variance = "fixedlarge"  # ddpm variational bound: "fixedlarge" or "fixedsmall"
  d.label_dropout = 0.0  # > 0 (e.g. 0.1) with model.num_classes: classifier-free guidance training

  s = config.sampling
  s.sampler = "ancestral"  # ancestral, ddim, pc, ode, heun, dpm_solver
  s.num_steps = 1000
  # samplers start at the largest t with log(alpha / sigma) >= lambda_min (see
  # genjax.diffusion.samplers): -5.1 cuts the cosine schedule's last 4 timesteps and no shipped
  # config's; -inf starts at t_max
  s.lambda_min = -5.1
  s.eta = 0.0  # ddim
  s.predictor = "reverse_diffusion"  # pc: "euler_maruyama" or "reverse_diffusion"
  s.corrector_steps = 1  # pc: Langevin steps per step
  s.snr = 0.16  # pc: Langevin signal-to-noise ratio
  s.ode_solver = "tsit5"  # ode: tsit5, dopri5 (adaptive or fixed), euler, heun (fixed)
  s.adaptive = True
  s.rtol = 1e-5
  s.atol = 1e-5
  s.max_ode_steps = 4096
  s.churn = 0.0  # heun: S_churn (0: deterministic)
  s.churn_tmin = 0.0
  s.churn_tmax = 1e9
  s.noise_scale = 1.0  # heun: S_noise
  s.guidance = 0.0  # classifier-free guidance weight w (class-conditional models)
  # autoguidance weight w: each network call is (1 + w) F - w F_guide (0: off), F_guide this run's
  # checkpoint at autoguidance_step (kept by training; genjax.diffusion.autoguidance)
  s.autoguidance = 0.0
  s.autoguidance_step = 0
  s.clip_denoised = True  # images: clip x_0_hat to data.value_range at every step, and the sample
  s.edit_num_steps = 100  # image grids: steps of the inpainting and SDEdit samplers
  s.inpaint_resample = 1  # image grids: RePaint passes per inpainting step (1: plain replacement)
  s.edit_strength = 0.5  # image grids: SDEdit strength

  e = config.eval
  e.likelihood = "vlb"  # "vlb" (ddpm), "ode" (continuous processes) or "none"
  e.vlb_timesteps = 0  # ddpm bound: 0 sums all N terms, K > 0 is a K-term Monte Carlo estimate
  e.trace_estimator = "hutchinson"  # ode likelihood: hutchinson, gaussian, exact
  e.ode_solver = "tsit5"
  e.adaptive = True
  e.rtol = 1e-5
  e.atol = 1e-5
  e.num_steps = 100  # fixed-step ode likelihood
  e.max_ode_steps = 4096


def _add_network_defaults(model: ml_collections.ConfigDict) -> None:
  model.network = "unet"  # or "dit", "score_mlp" (genjax.models.diffusion.DIFFUSION_NETWORKS)
  model.num_classes = 0  # > 0: class-conditional (classifier-free guidance with label_dropout)
  # unet: genjax.models.unet.UNet
  model.channels = 128
  model.channel_mult = (1, 2, 2, 2)
  model.num_res_blocks = 2
  model.attention_resolutions = (16,)
  model.dropout = 0.1
  model.embedding = "positional"  # or "fourier" (of the network time, which must then be positive)
  model.fourier_scale = 16.0
  model.resblock = "ddpm"  # or "biggan" (DDPM++/NCSN++)
  model.skip_rescale = False
  model.norm_groups = 32
  # output channels; 0: those of the input. sr3 (genjax.families.sr3) feeds the noisy image and its
  # upsampled low-resolution version (2C channels) and sets this to the data's C
  model.out_channels = 0
  # unet and dit: width of the text tokens of text conditioning (labels {tokens, mask, pooled},
  # genjax.models.attention): cross-attention to the tokens, the pooled embedding added to the
  # time embedding; 0: none
  model.context_dim = 0
  # unet and dit: rematerialise the residual/attention (unet) or transformer (dit) blocks: the
  # backward pass recomputes their activations instead of storing them (less memory, about one
  # more forward pass of compute; XLA:CPU's compiled steps keep as much memory as without it);
  # parameters and results unchanged, checkpoints load either way
  model.remat = False
  # dit: genjax.models.dit.DiT (Peebles & Xie 2023); hidden_size, not hidden (score_mlp's widths)
  model.patch = 2
  model.hidden_size = 384
  model.depth = 6
  model.heads = 6
  model.mlp_ratio = 4.0
  # score_mlp: genjax.models.score_mlp.ScoreMLP, for 2-D data
  model.hidden = (256, 256, 256)
  model.embedding_dim = 64
  # LoRA (genjax.lora): rank r > 0 adds low-rank adapters to the dense kernels lora_targets selects
  # (a regex; "" = every dense layer, incl. attention q/k/v/proj_out) and trains only them
  model.lora_rank = 0
  model.lora_alpha = 8.0  # the adapters' product is scaled by lora_alpha / lora_rank
  model.lora_targets = ""
  model.lora_also_train = ""  # a regex of other parameters that train too (e.g. "Embed_": new classes)


def use_score_sde(config: ml_collections.ConfigDict, process: str) -> ml_collections.ConfigDict:
  """score_sde's continuous-time setting (Song et al. 2021b) on top of a config: the `process`
  SDE ("vp", "subvp" or "ve") trained by denoising score matching on t in [1e-5, 1],
  predictor-corrector sampling, and probability-flow ODE bits/dim as the likelihood."""
  config.diffusion.process = process
  config.diffusion.objective = "dsm"
  config.diffusion.t_min = 1e-5
  config.sampling.sampler = "pc"
  config.eval.likelihood = "ode"
  config.eval.vlb_timesteps = 0  # back to the default: only the "vlb" likelihood reads it
  return config

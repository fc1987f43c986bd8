"""The classic MLP GAN (Goodfellow et al. 2014, as in the fully connected PyTorch tutorials) on
MNIST at its native 28x28, pixels in [-1, 1].

G: z (100, N(0, I)) -> Dense 128 -> ReLU -> Dense 784 -> tanh -> 28x28x1 (114,064 parameters).
D: x flattened to 784 -> Dense 128 -> ReLU -> Dense 1 logit (100,609 parameters); D's sigmoid is
folded into the losses, which take logits (genjax.gan.losses, softplus forms).
Flax's default initialisation (LeCun-normal kernels, zero biases), not PyTorch's uniform one.
Loss: "non_saturating", L_G = -log sigmoid(D(G(z))); `:minimax` (or --config.model.loss=minimax)
is the paper's saturating minimax L_G = log(1 - sigmoid(D(G(z)))), whose gradient vanishes while
D confidently rejects G's samples: compare train/g_grad_norm (logged every 100 steps) of the two
runs over their first few thousand steps. Batch 64, one D and one G update per step, each network
with its own Adam (lr 1e-3, betas (0.5, 0.999)); EMA 0.999 of G for samples and evaluation.
Why lr 1e-3 rather than the tutorials' 2e-4: the run has 10 minutes, and in 4-minute trials here
(about 22,000 steps each, FID of 2,000 samples vs the train images) 1e-3 reached MNIST FID 158
and 2e-4 240, with 2e-4 still salt-noisy; neither diverged.

Training stops at the first log step after 10 minutes of training (training.max_train_minutes;
num_train_steps is only an upper bound), then saves, evaluates and writes samples; the same
command run again resumes for another 10 minutes. Evaluation as dcgan_mnist: MNIST FID, KID, IS
and PRD of 10,000 EMA-generator samples against the 60,000 training images (genjax
MNIST-classifier features).

  python -m genjax.main --config=configs/gan_mnist_mlp.py --workdir=/tmp/gan_mlp_ns
  python -m genjax.main --config=configs/gan_mnist_mlp.py:minimax --workdir=/tmp/gan_mlp_minimax
  python -m genjax.main --config=configs/gan_mnist_mlp.py:tiny --workdir=/tmp/gan_mlp_tiny
  python -m genjax.main --config=configs/gan_mnist_mlp.py:ring --workdir=/tmp/gan_mlp_ring

Expected, MNIST runs (measured, README results table; 10 minutes on the contended 2-core CPU,
one seed each): minimax FID 123.8 after 34,200 steps, non-saturating 146.4 after 43,300; G's
gradient norm about half as large with minimax (D's fake logits stay near -0.5).
`:tiny` (200 steps, no sample metrics) only checks that the run works. `:ring` puts the same
networks (hidden 128, ReLU, non-saturating; z of 16 dims, linear output for points) on the ring of
8 Gaussians with Adam 1e-2 (betas 0.5, 0.999) cosine-decayed to 0 over 3,000 steps, batch 256:
eval/raw_modes_covered = 8 with seed 0 (tests/test_gan_mnist_mlp.py checks it; the metric of
configs/gan_8gaussians.py). A constant 1e-2 keeps G oscillating between modes and a constant 1e-3
is still far from them after 3,000 steps; even so this one-hidden-layer GAN drops modes for some
seeds (seeds 0-3 covered 8, 5, 6 and 8 modes).

Update order (genjax.families.gan.GANFamily.train_step, the alternation of the paper's
Algorithm 1): D takes an Adam step on L_D with G's samples as constants (stop_gradient; only D's
parameters are differentiated); then G takes a step of its own Adam on L_G computed through the
already updated D. The naive version, one backward pass over one shared graph (d_loss.backward()
on an undetached G(z) with both optimizers stepping, or one jax.grad of L_D over both parameter
sets), (1) gives G the gradient of D's loss: descending it lowers D(G(z)), so G helps D (for
minimax exactly the wrong sign of its gradient; for non-saturating the wrong objective, pointing
the wrong way too); (2) summing L_D + L_G instead adds the gradient of L_G to D's (pushing D to
call fakes real), so the fake terms both networks descend sum to 0 for minimax (neither learns
from the fakes) and to softplus(d) + softplus(-d) for non-saturating, whose gradient
2 sigmoid(d) - 1 drives D(G(z)) to 1/2 for both; (3) takes G's gradient at the old D, so G
chases a D that the same step replaces.
"""

from genjax.families import family_config


def get_config(arg: str = ""):
  config = family_config("gan")
  config.data.name = "mnist"  # data.image_size stays 0: native 28x28, no zero padding

  model = config.model
  model.network = "mlp"
  model.latent_dim = 100
  model.g_features = (128,)
  model.d_features = (128,)
  model.leaky_slope = 0.0  # ReLU in D
  model.loss = "non_saturating"

  optim = config.optim
  optim.lr = 1e-3  # G
  optim.d_lr = 1e-3  # D
  optim.b1 = 0.5
  optim.b2 = 0.999
  optim.ema_decay = 0.999

  training = config.training
  training.batch_size = 64
  training.num_train_steps = 1_000_000  # an upper bound: max_train_minutes ends the run
  training.max_train_minutes = 10.0
  training.log_every = 100
  training.checkpoint_every = 10_000
  training.sample_every = 10_000
  training.max_d_loss = 100.0

  config.eval.num_examples = 10_000
  # MNIST FID/KID/IS/PRD of 10,000 EMA-generator samples against the 60,000 training images.
  config.eval.sample_metrics = ("mnist_fid", "mnist_kid", "mnist_is", "mnist_prd")

  if arg == "minimax":
    model.loss = "minimax"
  elif arg == "tiny":
    training.num_train_steps = 200
    training.max_train_minutes = 0.0
    training.log_every = 50
    training.checkpoint_every = 100
    training.sample_every = 0
    optim.ema_decay = 0.99
    config.eval.num_examples = 1_000
    config.eval.sample_metrics = ()
  elif arg == "ring":
    config.data.name = "8gaussians"
    model.latent_dim = 16
    optim.lr = 1e-2
    optim.d_lr = 1e-2
    optim.schedule = "cosine"  # to 0 at num_train_steps: G settles onto the modes it found
    training.batch_size = 256
    training.num_train_steps = 3_000
    training.max_train_minutes = 0.0
    training.log_every = 500
    training.checkpoint_every = 3_000
    training.sample_every = 0
    training.max_d_loss = 50.0
    config.eval.batch_size = 2_500
    config.eval.num_examples = 2_500
    config.eval.sample_metrics = ("raw_modes",)  # mode coverage of 2,500 samples, as in the papers
    config.eval.num_samples = 2_500
    config.eval.sample_batch_size = 1_000  # divides over 1, 2, 4 or 8 devices
    config.sampling.grid_size = 2_500
  elif arg:
    raise ValueError(
      f"Unknown config argument {arg!r}; use 'minimax', 'tiny', 'ring' or nothing."
    )
  return config

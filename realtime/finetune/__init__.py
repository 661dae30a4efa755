"""Per-video fine-tuning for flicker-free video (``rt-anime finetune``, ``rt-anime IN OUT --stabilize finetune``).

A copy of the generator is fine-tuned on the clip's own frames with StyleAnime's video losses (paper 004 §6.3):
motion-aware latent smoothing on the bottleneck and frame-interpolation consistency through a frozen RIFE 4.2x
interpolator, anchored to the base model's per-frame output. Modules: :mod:`.ifnet` (RIFE network and weights),
:mod:`.interpolators`, :mod:`.losses`, :mod:`.clip` (cuts, triplets, bounded memory), :mod:`.trainer`.
"""

from __future__ import annotations

from .clip import ClipScan, TripletStore, choose_centers, load_triplets, scan_clip, valid_centers
from .ifnet import IFNet, load_ifnet
from .interpolators import FlowInterpolator, NCNNInterpolator, RIFEInterpolator, make_interpolator
from .losses import TripletGeometry, interpolation_consistency_loss, latent_smoothing_loss, triplet_geometry
from .trainer import FinetuneConfig, FinetuneProgress, FinetuneResult, finetune_clip, finetune_generator, save_finetuned

__all__ = ["ClipScan", "FinetuneConfig", "FinetuneProgress", "FinetuneResult", "FlowInterpolator", "IFNet",
           "NCNNInterpolator", "RIFEInterpolator", "TripletGeometry", "TripletStore", "choose_centers",
           "finetune_clip", "finetune_generator", "interpolation_consistency_loss", "latent_smoothing_loss",
           "load_ifnet", "load_triplets", "make_interpolator", "save_finetuned", "scan_clip", "triplet_geometry",
           "valid_centers"]

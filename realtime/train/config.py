"""Training recipes: frozen config sections, loaded from TOML and overridden from the command line.

A recipe is a TOML file with a top-level ``name`` and ``description`` and the tables ``[model]``, ``[data]``,
``[losses]``, ``[optim]`` and ``[run]`` (fields and defaults: the section classes below). ``[variants.<preset>]``
holds partial sections applied when that generator preset is chosen, so one recipe can carry an iteration budget
per model size (``rt-anime train --config default-cpu --preset nijigan``). Bundled recipes live in
``realtime/train/recipes/`` and load by name; any other value of ``--config`` is a path.

Merge order: recipe file → ``[variants.<preset>]`` → ``--set section.key=value`` and the dedicated CLI flags.
Unknown keys and bad values raise ``ValueError`` naming the key, the value and what is allowed. Relative paths in a
recipe file are relative to that file; relative paths from the command line are relative to the working directory.

Schedules count iterations: λ_sup(i) = cos(π/2 · i / (n_iters + n_iters_decay)) for the 0-based iteration i,
which is the papers' cos(π/2 · (t − 1)/N) with t the fractional 1-based epoch and N the number of epochs, whatever the
epoch length (``realtime.train.schedules``; not the official code's constant 1).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

from ..checkpoint import NATIVE_SUFFIXES, TORCH_SUFFIXES
from ..ensemble import check_ensemble_size
from ..train.vgg import LAYER_INDEX, cache_dir

RECIPES_DIR = Path(__file__).parent / "recipes"
TEACHER_ALGORITHMIC = "algorithmic"


# --- value checks (every message names `section.key`) --------------------------------------------------------------

def _where(section: str, name: str) -> str:
    return f"`{section}.{name}`" if section else f"`{name}`"


def _number(section: str, name: str, value: Any, low: float | None = None, high: float | None = None, *,
            integer: bool = False, low_open: bool = False) -> None:
    kind = "an integer" if integer else "a number"
    ok = not isinstance(value, bool) and isinstance(value, int if integer else (int, float))
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        bounds = []
        if low is not None:
            bounds.append(f"{'>' if low_open else '>='} {low:g}")
        if high is not None:
            bounds.append(f"<= {high:g}")
        raise ValueError(f"{_where(section, name)} must be {kind}{' ' + ' and '.join(bounds) if bounds else ''}, "
                         f"got {value!r}")


def _bool(section: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{_where(section, name)} must be true or false, got {value!r}")


def _string(section: str, name: str, value: Any, *, choices: Sequence[str] | None = None,
            allow_empty: bool = True) -> None:
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise ValueError(f"{_where(section, name)} must be a{' non-empty' if not allow_empty else ''} string, "
                         f"got {value!r}")
    if choices is not None and value not in choices:
        raise ValueError(f"{_where(section, name)} must be one of {list(choices)}, got {value!r}")


def _strings(section: str, name: str, value: Any) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) and v for v in items):
        raise ValueError(f"{_where(section, name)} must be a list of non-empty strings (paths), got {value!r}")
    return tuple(items)


# --- sections ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class ModelSection:
    """The generator trained and its critics.

    Args:
        preset: Registered generator preset (``rt-anime list``), e.g. ``nijigan-lite`` or ``nijigan``.
        solver: ODE solver spec the generator trains with, and is exported with (``euler:1``, ``midpoint:1``,
            ``dopri5``…). A network trained with one solver is a different function under another.
        options: Other generator config overrides, e.g. ``{ngf = 32}``.
        ndf: Channels of the first conv of D and D_p.
        d_layers: Downsampling stages of D and D_p (3 = the 70×70 PatchGAN).
        netf_nc: Projection width of F and F_s (CUT ``--netF_nc``).
        init_gain: Gain of the xavier-normal initialisation of every network (CUT ``--init_gain``).
        init_from: Start G from trained weights instead (a checkpoint path or bundled name): the same architecture
            is copied, a narrower one of the same family is widened without changing its function
            (:mod:`realtime.train.widen`; e.g. ``niji`` from ``niji-lite``). Only when a run starts, not on resume.
        init_noise: Symmetry-breaking noise of a widened start, relative to each tensor's standard deviation.
    """

    SECTION: ClassVar[str] = "model"
    preset: str = "nijigan-lite"
    solver: str = "euler:1"
    options: Mapping[str, Any] = field(default_factory=dict)
    ndf: int = 64
    d_layers: int = 3
    netf_nc: int = 256
    init_gain: float = 0.02
    init_from: str = ""
    init_noise: float = 1e-2

    def __post_init__(self) -> None:
        s = self.SECTION
        from .._registry import list_generators
        from ..solvers import parse_solver

        _string(s, "preset", self.preset, choices=list_generators())
        _string(s, "solver", self.solver, allow_empty=False)
        try:
            object.__setattr__(self, "solver", parse_solver(self.solver).spec)
        except ValueError as exc:
            raise ValueError(f"`model.solver`: {exc}") from None
        if not isinstance(self.options, Mapping):
            raise ValueError(f"`model.options` must be a table of generator settings, got {self.options!r}")
        if "solver" in self.options:
            raise ValueError("`model.options.solver`: set the solver with `model.solver` instead")
        object.__setattr__(self, "options", dict(self.options))
        try:
            self.build_generator(device="meta")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"`model.options`: {exc}") from None
        for name in ("ndf", "d_layers", "netf_nc"):
            _number(s, name, getattr(self, name), 1, integer=True)
        _number(s, "init_gain", self.init_gain, 0, low_open=True)
        object.__setattr__(self, "init_gain", float(self.init_gain))
        _string(s, "init_from", self.init_from)
        _number(s, "init_noise", self.init_noise, 0)
        object.__setattr__(self, "init_noise", float(self.init_noise))

    def build_generator(self, *, device: "str | None" = None):
        """A randomly initialised generator of this section (``device='meta'`` only checks the settings)."""
        import torch

        from .._registry import create_generator, get_entry, get_family

        # Only ODE families take a solver; for the others `solver` is recorded but has nothing to set.
        config_cls = get_family(get_entry(self.preset).family).config_cls
        solver = {"solver": self.solver} if "solver" in {f.name for f in dataclasses.fields(config_cls)} else {}
        with torch.device(device or "cpu"):
            return create_generator(self.preset, **solver, **self.options)


@dataclass(frozen=True, kw_only=True)
class DataSection:
    """Photos, anime references and pseudo-pairs.

    Args:
        photos: Folders of real photos X (searched recursively for png/jpg/jpeg/webp/bmp).
        anime: Folders of unpaired anime images Y; empty = teacher outputs of *other* photos serve as Y.
        pairs: Folders of photos X_p turned into pseudo-pairs by the teacher; empty = the same photos as X.
        holdout: Fraction of photos held out by content hash (never trained on; evaluation and sample grids).
        heldout: Folders of photos held out as a whole (e.g. a dataset's ``holdout/`` split): evaluated, never
            trained on, even where a copy also sits in ``photos`` or ``pairs``.
        teacher: ``algorithmic`` (``realtime.teacher``), or a generator checkpoint path / bundled name (e.g. an
            imported Scenimefy ``Shinkai_net_G.pth``) that makes the pseudo-targets.
        teacher_options: ``TeacherConfig`` overrides for the algorithmic teacher (``palette_size``…).
        work_side: Short side (px) photos are resized to before the teacher runs and crops are taken.
        crop: Side of the square training crops (a multiple of 4, at most ``work_side``).
        batch_size: Images per branch per iteration.
        alt_crop: 0 (off), or the crop side of every odd iteration: the run alternates between ``crop`` and this
            size (e.g. 128 at batch 8, then 256 at batch 2: the same pixels). Larger crops give each image more
            context, smaller ones more images per step; MODEL_CARD.md (sessions 18, 19) measured what each does to
            the held-out photos and clip frames. Pairs smaller than it are skipped on those iterations; the
            warm-up keeps ``crop``.
        alt_batch_size: Images per branch on the ``alt_crop`` iterations (0 = ``batch_size``).
        flip: Random horizontal flips of the unpaired X and Y crops (pairs: ``pair_augment``).
        pair_augment: ``none`` (the reference: pairs are cropped only) or ``dihedral``: each pseudo-pair crop is
            turned by one of the 8 flips and quarter-turns, the same one for photo and target. The algorithmic
            teacher commutes with them (teacher(flip(x)) vs flip(teacher(x)): 43-50 dB on 6 of offline-v2's
            held-out images), so the pairs stay pairs, and a few hundred photos give 8x the distinct crops.
        pair_sides: Further short sides (px) at which pseudo-pairs are also made, beside ``work_side``. The teacher
            renders each scale itself (its line art and flattening are sized in pixels, not scale-invariant), so
            the model sees the style at the scales it will run at (``rt-anime evaluate`` caps the longer side at
            512 px: ~340 px short sides for 3:2 photos, 240 for 320x240 video).
        pair_jitter: Probability (0-1) that a pseudo-pair is made afresh from a camera-jittered copy of its photo
            (exposure, gamma, white balance, contrast, saturation, then maybe blur, sensor noise and JPEG
            compression; :func:`realtime.train.data.camera_jitter`): the teacher renders the jittered photo
            whole, so the pair stays exact, and the model sees the webcam- and video-grade inputs it runs on
            rather than only clean photos. 0 (default) draws nothing extra, so batches stay as they were.
        cache_dir: Where resized photos and teacher outputs are cached; empty = ``$RT_ANIME_CACHE/pairs``.
        balance: ``none``: every image is drawn equally often (the papers). ``clips``: frames of one clip (files
            named ``<clip>_f<digits>.<ext>``, as ``realtime.train.offline_data`` and most frame dumps name them)
            count as a group drawn √n times as often as one photo, not n times, so three 40-frame clips do not
            drown fifteen photos (offline-v1: 112 of 127 training images are frames of three clips).
    """

    SECTION: ClassVar[str] = "data"
    photos: tuple[str, ...] = ()
    anime: tuple[str, ...] = ()
    pairs: tuple[str, ...] = ()
    holdout: float = 0.05
    heldout: tuple[str, ...] = ()
    teacher: str = TEACHER_ALGORITHMIC
    teacher_options: Mapping[str, Any] = field(default_factory=dict)
    work_side: int = 256
    crop: int = 256
    batch_size: int = 1
    alt_crop: int = 0
    alt_batch_size: int = 0
    flip: bool = True
    pair_augment: str = "none"
    pair_sides: tuple[int, ...] = ()
    pair_jitter: float = 0.0
    cache_dir: str = ""
    balance: str = "none"

    def __post_init__(self) -> None:
        s = self.SECTION
        _string(s, "balance", self.balance, choices=("none", "clips"))
        for name in ("photos", "anime", "pairs", "heldout"):
            object.__setattr__(self, name, _strings(s, name, getattr(self, name)))
        _number(s, "holdout", self.holdout, 0, 0.9)
        if not isinstance(self.teacher, str) or not self.teacher.strip():
            raise ValueError(f"`data.teacher` is required: 'algorithmic', or the path of a generator checkpoint that "
                             f"makes the pseudo-targets (e.g. Scenimefy's Shinkai_net_G.pth; pass --teacher PATH), "
                             f"got {self.teacher!r}")
        if not isinstance(self.teacher_options, Mapping):
            raise ValueError(f"`data.teacher_options` must be a table, got {self.teacher_options!r}")
        object.__setattr__(self, "teacher_options", dict(self.teacher_options))
        if self.teacher_options and self.teacher != TEACHER_ALGORITHMIC:
            raise ValueError("`data.teacher_options` only apply to the algorithmic teacher, but `data.teacher` is "
                             f"{self.teacher!r}")
        if self.teacher == TEACHER_ALGORITHMIC:
            from ..teacher import TeacherConfig

            try:
                TeacherConfig(**self.teacher_options)
            except (TypeError, ValueError) as exc:
                known = [f.name for f in dataclasses.fields(TeacherConfig)]
                raise ValueError(f"`data.teacher_options`: {exc} (allowed keys: {', '.join(known)})") from None
        _number(s, "work_side", self.work_side, 16, 4096, integer=True)
        _number(s, "crop", self.crop, 16, integer=True)
        if self.crop % 4:
            raise ValueError(f"`data.crop` must be a multiple of 4 (the generator's size multiple), got {self.crop}")
        if self.crop > self.work_side:
            raise ValueError(f"`data.crop` ({self.crop}) must be <= `data.work_side` ({self.work_side}): crops are "
                             "taken from photos resized to that short side")
        _number(s, "batch_size", self.batch_size, 1, integer=True)
        _number(s, "alt_crop", self.alt_crop, 0, integer=True)
        if self.alt_crop and (self.alt_crop < 16 or self.alt_crop % 4 or self.alt_crop > self.work_side
                              or self.alt_crop == self.crop):
            raise ValueError(f"`data.alt_crop` must be 0 (off) or a multiple of 4 from 16 to `data.work_side` "
                             f"({self.work_side}) other than `data.crop` ({self.crop}), got {self.alt_crop}")
        _number(s, "alt_batch_size", self.alt_batch_size, 0, integer=True)
        if self.alt_batch_size and not self.alt_crop:
            raise ValueError(f"`data.alt_batch_size` ({self.alt_batch_size}) needs `data.alt_crop`: it is the batch "
                             "of the alternate crop size")
        _bool(s, "flip", self.flip)
        _string(s, "pair_augment", self.pair_augment, choices=("none", "dihedral"))
        if isinstance(self.pair_sides, (str, bytes)) or not isinstance(self.pair_sides, Sequence):
            raise ValueError(f"`data.pair_sides` must be a list of short sides in px, got {self.pair_sides!r}")
        for side in self.pair_sides:
            _number(s, "pair_sides", side, 16, 4096, integer=True)
            if side < self.crop:
                raise ValueError(f"`data.pair_sides` entry {side} must be >= `data.crop` ({self.crop}): crops are "
                                 "taken from photos resized to that short side")
        if self.work_side in self.pair_sides or len(set(self.pair_sides)) != len(self.pair_sides):
            raise ValueError(f"`data.pair_sides` {list(self.pair_sides)} must not repeat a side or `data.work_side` "
                             f"({self.work_side})")
        object.__setattr__(self, "pair_sides", tuple(self.pair_sides))
        _number(s, "pair_jitter", self.pair_jitter, 0, 1)
        object.__setattr__(self, "pair_jitter", float(self.pair_jitter))
        object.__setattr__(self, "holdout", float(self.holdout))
        _string(s, "cache_dir", self.cache_dir)

    def pair_cache(self) -> Path:
        return Path(self.cache_dir).expanduser() if self.cache_dir else cache_dir() / "pairs"


@dataclass(frozen=True, kw_only=True)
class LossSection:
    """Loss weights and contrastive settings (defaults: Scenimefy ``train.sh`` and the papers).

    Args:
        gan_mode: ``lsgan`` (the recipe's) or ``vanilla``.
        lambda_gan: Unpaired adversarial loss (D on Y).
        lambda_gan_p: Conditional adversarial loss of the supervised branch (D_p on ``cat(x_p, ·)``).
        lambda_hdce: Hard-negative decoupled contrastive loss x → G(x) (and y → G(y) with ``dce_idt``).
        lambda_src: Semantic relation consistency between x and G(x).
        lambda_style: StylePatchNCE between G(x_p) and y_p, applied once (the official code squares it).
        lambda_l1: L1 between G(x_p) and y_p (not in the papers; pix2pix's pixel term).
        lambda_l2: Mean squared error between G(x_p) and y_p (not in the papers). PSNR's own objective: where a thin
            line's position is uncertain, L1's optimum is the median (no line) and MSE's the mean (a faint one).
        lambda_edge_l1: L1 between G(x_p) and y_p counted only at y_p's edges and line art, on top of ``lambda_l1``
            (:func:`~realtime.train.losses.edge_l1_loss`; not in the papers). Thin lines are where imitation fails.
        lambda_equivariance: L1 between G(x_p) and the detached ``undo_dihedral(G(dihedral(x_p, k)), k)``, one
            non-identity flip / quarter-turn k per iteration (``1 + iteration % 7``; not in the papers). The
            teacher commutes with them and the pairs are augmented by them, so the part of G's output that changes
            with the orientation is error: averaging 8 orientations at inference gains 0.44 dB (realtime/ensemble.py).
            This pulls each output toward another orientation's, at one extra no-grad pass per iteration.
        lambda_ensemble_distill: L1 between G(x_p) and the self-ensemble of ``distill_ensemble`` orientations of the
            generator ``model.init_from`` gave, frozen (:func:`realtime.ensemble.self_ensemble`; not in the papers).
            That ensemble is closer to the teacher than the network it averages (``niji.cpu-v13``: +0.44 dB at 8),
            so it is a target the network can reach and the teacher's pixel-exact decisions are not.
        distill_ensemble: Orientations in that ensemble: 1, 2, 4 or 8 (that many no-grad passes per iteration).
        lambda_perceptual: Perceptual distance (``perceptual_kind``) on what ``perceptual_on`` says.
        perceptual_kind: ``vgg``: VGG16 feature MSE at ``perceptual_layer`` (Scenimefy's content loss);
            ``lpips``: the LPIPS v0.1-vgg distance (all five taps, unit-normalised, with its learned channel weights;
            ``perceptual_layer`` is then unused). LPIPS against the teacher is also a reported metric, so a model
            trained with it has that metric in its objective: judge it on held-out photos and by FID too.
        perceptual_on: ``pair``: G(x_p) against its pseudo-target y_p, inside the supervised branch (imitation);
            ``content``: G(x) against its photo x, in the unpaired branch (Scenimefy's ``--lambda_VGG``, with its
            ``fake_B + 1/2`` precedence bug fixed).
        lambda_tv: Anisotropic total variation of G(x_p) (GANime, paper 003).
        perceptual_layer: VGG16 tap of the perceptual loss.
        nce_layers: Generator layer ids of the patch losses. NijiGAN: 0, 4, 8 (encoder), 12 and 14 (outputs of the
            first and third ODE blocks); id 16 is the decoder's upsample, no longer a bottleneck feature.
        num_patches: Patches per layer.
        nce_t: Temperature τ of hDCE and StylePatchNCE.
        hard_negatives: hDCE with SRC's hard-negative weights (``False`` = plain DCE).
        dce_idt: Also run G on Y and apply hDCE y → G(y) (Scenimefy ``--dce_idt``).
        gamma0: hDCE γ at the start of the curriculum.
        gamma_min: hDCE γ at the end.
        curriculum: Anneal γ linearly from ``gamma0`` to ``gamma_min`` over the run.
        decay_supervised: λ_sup = cos(π/2 · progress); ``False`` keeps it at 1.
    """

    SECTION: ClassVar[str] = "losses"
    gan_mode: str = "lsgan"
    lambda_gan: float = 1.0
    lambda_gan_p: float = 1.0
    lambda_hdce: float = 0.1
    lambda_src: float = 0.05
    lambda_style: float = 0.05
    lambda_l1: float = 0.0
    lambda_l2: float = 0.0
    lambda_edge_l1: float = 0.0
    lambda_equivariance: float = 0.0
    lambda_ensemble_distill: float = 0.0
    distill_ensemble: int = 4
    lambda_perceptual: float = 0.0
    lambda_tv: float = 0.0
    perceptual_kind: str = "vgg"
    perceptual_layer: str = "relu4_3"
    perceptual_on: str = "pair"
    nce_layers: tuple[int, ...] = (0, 4, 8, 12, 14)
    num_patches: int = 256
    nce_t: float = 0.07
    hard_negatives: bool = True
    dce_idt: bool = True
    gamma0: float = 50.0
    gamma_min: float = 10.0
    curriculum: bool = True
    decay_supervised: bool = True

    def __post_init__(self) -> None:
        s = self.SECTION
        _string(s, "gan_mode", self.gan_mode, choices=("lsgan", "vanilla"))
        for name in ("lambda_gan", "lambda_gan_p", "lambda_hdce", "lambda_src", "lambda_style", "lambda_l1",
                     "lambda_l2", "lambda_edge_l1", "lambda_equivariance", "lambda_ensemble_distill",
                     "lambda_perceptual", "lambda_tv"):
            _number(s, name, getattr(self, name), 0)
            object.__setattr__(self, name, float(getattr(self, name)))
        check_ensemble_size(self.distill_ensemble, param=f"`{s}.distill_ensemble`")
        _string(s, "perceptual_kind", self.perceptual_kind, choices=("vgg", "lpips"))
        _string(s, "perceptual_layer", self.perceptual_layer, choices=sorted(LAYER_INDEX))
        _string(s, "perceptual_on", self.perceptual_on, choices=("pair", "content"))
        layers = self.nce_layers
        if isinstance(layers, str):  # "0,4,8,12,14", CUT's spelling
            try:
                layers = [int(v) for v in layers.split(",")]
            except ValueError:
                raise ValueError(f"`losses.nce_layers` must be layer ids like [0, 4, 8, 12, 14], got {layers!r}") \
                    from None
        if (not isinstance(layers, (list, tuple)) or not layers
                or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in layers)):
            raise ValueError(f"`losses.nce_layers` must be a non-empty list of layer ids >= 0, got {layers!r}")
        object.__setattr__(self, "nce_layers", tuple(layers))
        _number(s, "num_patches", self.num_patches, 1, integer=True)
        for name in ("nce_t", "gamma0", "gamma_min"):
            _number(s, name, getattr(self, name), 0, low_open=True)
            object.__setattr__(self, name, float(getattr(self, name)))
        for name in ("hard_negatives", "dce_idt", "curriculum", "decay_supervised"):
            _bool(s, name, getattr(self, name))

    @property
    def contrastive(self) -> bool:
        """Whether the unpaired branch's patch losses (hDCE, SRC) run at all."""
        return self.lambda_hdce > 0 or self.lambda_src > 0


@dataclass(frozen=True, kw_only=True)
class OptimSection:
    """Adam and the iteration budget.

    Args:
        lr: Adam learning rate of G (+F, F_s), D and D_p.
        beta1: Adam β1.
        beta2: Adam β2.
        n_iters: Iterations at the base learning rate.
        n_iters_decay: Iterations of linear decay after them (CUT's ``linear`` policy, per iteration).
        warmup_iters: Supervised-only iterations before the recipe proper (AnimeGAN's ``init_epoch`` phase): G alone
            on the pseudo-pairs' pixel terms (L1, TV), no critics, no patch losses, no perceptual term (VGG16 costs
            more than the lite generator's own step, and the warm-up only has to teach colour and layout), constant
            learning rate. The recipe's schedules (λ_sup, γ, LR decay) start after it. 0 = none (the papers).
        warmup_batch_size: Pairs per warm-up iteration (0 = ``data.batch_size``). The warm-up skips the unpaired
            half of the batch and the critics, so it affords more pairs per iteration.
        reset_after_warmup: Clear G's Adam moments when the recipe proper starts (AnimeGAN keeps a separate
            optimizer for its init phase). The warm-up's second moments were built on the L1 gradient alone, at
            the warm-up's batch; the new terms' larger gradients divided by them make the first steps many times
            ``lr``. Measured (nijigan-lite, pre-ReLU skips, from warm-up iteration 2,500): kept, pair L1 went
            0.05 -> 1.2 within 20 iterations and the run never recovered; cleared, it stayed at 0.04-0.09 for 150.
    """

    SECTION: ClassVar[str] = "optim"
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    n_iters: int = 1000
    n_iters_decay: int = 1000
    warmup_iters: int = 0
    warmup_batch_size: int = 0
    reset_after_warmup: bool = True

    def __post_init__(self) -> None:
        s = self.SECTION
        _number(s, "lr", self.lr, 0, low_open=True)
        _number(s, "beta1", self.beta1, 0, 1)
        _number(s, "beta2", self.beta2, 0, 1)
        for name in ("lr", "beta1", "beta2"):
            object.__setattr__(self, name, float(getattr(self, name)))
        _number(s, "n_iters", self.n_iters, 1, integer=True)
        _number(s, "n_iters_decay", self.n_iters_decay, 0, integer=True)
        _number(s, "warmup_iters", self.warmup_iters, 0, integer=True)
        _number(s, "warmup_batch_size", self.warmup_batch_size, 0, integer=True)
        _bool(s, "reset_after_warmup", self.reset_after_warmup)

    @property
    def total_iters(self) -> int:
        return self.warmup_iters + self.n_iters + self.n_iters_decay


@dataclass(frozen=True, kw_only=True)
class RunSection:
    """Where outputs go and how often.

    Args:
        out: Output folder (checkpoint, log, samples, final weights); empty = ``$RT_ANIME_CACHE/train/<name>-<preset>``.
        checkpoint_minutes: Wall-clock minutes between checkpoints (also written at the end and on Ctrl-C).
        sample_every: Iterations between sample grids (photo | teacher | G); 0 = only at the end.
        sample_count: Rows of a sample grid.
        eval_every: Iterations between held-out evaluations (PSNR, LPIPS vs the teacher); 0 = only at the end.
        eval_images: Held-out photos evaluated (the first ones in sorted order).
        log_every: Iterations between progress lines when stderr is not a terminal.
        seed: Seed of initialisation, data order, crops and patch sampling.
        threads: torch CPU threads.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda[:N]``.
    """

    SECTION: ClassVar[str] = "run"
    out: str = ""
    checkpoint_minutes: float = 3.0
    sample_every: int = 500
    sample_count: int = 4
    eval_every: int = 0
    eval_images: int = 8
    log_every: int = 10
    seed: int = 0
    threads: int = 2
    device: str = "auto"

    def __post_init__(self) -> None:
        s = self.SECTION
        _string(s, "out", self.out)
        _number(s, "checkpoint_minutes", self.checkpoint_minutes, 0, low_open=True)
        object.__setattr__(self, "checkpoint_minutes", float(self.checkpoint_minutes))
        for name, low in (("sample_every", 0), ("sample_count", 1), ("eval_every", 0), ("eval_images", 0),
                          ("log_every", 1), ("seed", 0), ("threads", 1)):
            _number(s, name, getattr(self, name), low, integer=True)
        _string(s, "device", self.device, allow_empty=False)
        if not (self.device in ("auto", "cpu") or self.device.startswith("cuda")):
            raise ValueError(f"`run.device` must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")


_SECTIONS: dict[str, type] = {"model": ModelSection, "data": DataSection, "losses": LossSection,
                              "optim": OptimSection, "run": RunSection}
_TOP_KEYS = ("name", "description", *_SECTIONS, "variants")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """A complete, validated training recipe.

    Args:
        name: Recipe name (names the default output folder and the provenance).
        description: One line on what the recipe is for.
        model: Generator and critics.
        data: Data sources and crops.
        losses: Loss weights.
        optim: Optimiser and iteration budget.
        run: Outputs and cadence.
    """

    name: str
    description: str = ""
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    losses: LossSection = field(default_factory=LossSection)
    optim: OptimSection = field(default_factory=OptimSection)
    run: RunSection = field(default_factory=RunSection)

    def __post_init__(self) -> None:
        _string("", "name", self.name, allow_empty=False)
        if any(c in self.name for c in "/\\") or self.name.startswith("."):
            raise ValueError(f"`name` must be usable as a folder name (no slashes), got {self.name!r}")
        _string("", "description", self.description)
        L = self.losses
        if L.lambda_ensemble_distill > 0 and not self.model.init_from:
            raise ValueError(f"`losses.lambda_ensemble_distill` is {L.lambda_ensemble_distill} but "
                             "`model.init_from` is empty: the distillation target is the ensemble of the trained "
                             "generator a run starts from; set model.init_from=NAME_OR_CHECKPOINT")
        if self.optim.warmup_iters and not (L.lambda_l1 > 0 or L.lambda_l2 > 0 or L.lambda_edge_l1 > 0
                                            or L.lambda_tv > 0):
            raise ValueError(f"`optim.warmup_iters` is {self.optim.warmup_iters} but the warm-up has no loss: it "
                             "trains on the pseudo-pairs' lambda_l1, lambda_l2, lambda_edge_l1 and lambda_tv; set one "
                             "of them > 0 or warmup_iters = 0")
        n_layers = len(getattr(self.model.build_generator(device="meta"), "model", ()))
        bad = [i for i in self.losses.nce_layers if n_layers and i >= n_layers]
        if bad:
            raise ValueError(f"`losses.nce_layers` {bad} out of range: generator {self.model.preset!r} has layer ids "
                             f"0..{n_layers - 1}")

    @property
    def out_dir(self) -> Path:
        """The run's output folder."""
        if self.run.out:
            return Path(self.run.out).expanduser()
        return cache_dir() / "train" / f"{self.name}-{self.model.preset}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (tuples become lists), as stored in checkpoints and provenance."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def fingerprint(self) -> dict[str, Any]:
        """What must match for a checkpoint to be resumed: everything but ``run`` (paths, cadence, threads)."""
        data = self.to_dict()
        data.pop("run")
        data.pop("description")
        data["data"].pop("cache_dir")
        return data


# --- loading -------------------------------------------------------------------------------------------------------

def recipe_names() -> list[str]:
    """Names of the bundled recipes (``realtime/train/recipes/*.toml``)."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.toml"))


def _read_recipe(source: str | os.PathLike) -> tuple[dict, Path | None, str]:
    """Parse a recipe by bundled name or path; returns (data, folder for relative paths or None, label)."""
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.suffix != ".toml" and not path.exists() and "/" not in text and os.sep not in text:
        candidate = RECIPES_DIR / f"{text}.toml"
        if not candidate.is_file():
            raise ValueError(f"unknown recipe {text!r}: not a file, and bundled recipes are {recipe_names()}")
        raw, base, label = candidate.read_text(encoding="utf-8"), None, f"recipe {text}"
    else:
        if not path.is_file():
            raise FileNotFoundError(f"recipe file {path} does not exist (bundled recipes: {recipe_names()})")
        raw, base, label = path.read_text(encoding="utf-8"), path.resolve().parent, str(path)
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{label} is not valid TOML: {exc}") from None
    return data, base, label


def _merge(base: dict, update: Mapping, where: str) -> dict:
    """Deep-merge ``update`` into a copy of ``base`` (tables merge, values replace)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) and key not in ("options",
                                                                                           "teacher_options"):
            out[key] = _merge(out[key], value, f"{where}.{key}")
        else:
            out[key] = value
    return out


def _resolve_paths(data: dict, base: Path) -> None:
    """Make a recipe file's relative paths relative to the file."""
    def fix(p: str) -> str:
        q = Path(p).expanduser()
        return str(q if q.is_absolute() else base / q)

    section = data.get("data")
    if isinstance(section, dict):
        for key in ("photos", "anime", "pairs", "heldout"):
            if isinstance(section.get(key), str):
                section[key] = [section[key]]
            if isinstance(section.get(key), list):
                section[key] = [fix(p) if isinstance(p, str) else p for p in section[key]]
        if isinstance(section.get("cache_dir"), str) and section["cache_dir"]:
            section["cache_dir"] = fix(section["cache_dir"])
        teacher = section.get("teacher")
        if isinstance(teacher, str) and Path(teacher).suffix.lower() in TORCH_SUFFIXES + NATIVE_SUFFIXES:
            section["teacher"] = fix(teacher)
    run = data.get("run")
    if isinstance(run, dict) and isinstance(run.get("out"), str) and run["out"]:
        run["out"] = fix(run["out"])


def parse_override(text: str) -> tuple[list[str], Any]:
    """``section.key=value`` → (key path, value). The value is read as TOML (``0.5``, ``true``, ``[0, 4]``); anything
    that is not valid TOML is taken as a string, so paths need no quotes."""
    key, eq, value = text.partition("=")
    parts = [p.strip() for p in key.split(".")]
    if not eq or len(parts) < 2 or not all(parts):
        raise ValueError(f"--set {text!r}: expected SECTION.KEY=VALUE, e.g. losses.lambda_l1=10")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return parts, parsed


def _apply_override(data: dict, parts: list[str], value: Any) -> None:
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ValueError(f"cannot set {'.'.join(parts)}: `{part}` is not a table")
        node = child
    node[parts[-1]] = value


def _build_section(cls: type, raw: Any, label: str) -> Any:
    section = cls.SECTION
    if not isinstance(raw, Mapping):
        raise ValueError(f"`{section}` in {label} must be a table, got {raw!r}")
    allowed = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise ValueError(f"unknown key `{section}.{unknown[0]}` in {label}; allowed keys in [{section}]: "
                         f"{', '.join(allowed)}")
    return cls(**raw)


def config_from_dict(data: Mapping[str, Any], *, label: str = "config") -> TrainConfig:
    """Validate a recipe dict (after variants and overrides) into a :class:`TrainConfig`."""
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        raise ValueError(f"unknown key `{unknown[0]}` in {label}; allowed top-level keys: {', '.join(_TOP_KEYS)}")
    sections = {name: _build_section(cls, data.get(name, {}), label) for name, cls in _SECTIONS.items()}
    return TrainConfig(name=data.get("name", ""), description=data.get("description", ""), **sections)


def load_config(source: str | os.PathLike, *, preset: str | None = None,
                overrides: Sequence[str] = (), cli: Mapping[str, Any] | None = None) -> TrainConfig:
    """Load a recipe, apply its variant for the chosen preset, then ``--set`` overrides and CLI values.

    Args:
        source: Bundled recipe name (``default-cpu``, ``paper-gpu``) or a TOML path.
        preset: Generator preset replacing ``model.preset``; selects ``[variants.<preset>]``.
        overrides: ``section.key=value`` strings (relative paths are relative to the working directory).
        cli: Dotted keys set by dedicated flags (``{"data.photos": [...], "run.out": ...}``), applied last.

    Raises:
        ValueError: Unknown recipe, bad TOML, unknown key or bad value (the message names the key).
        FileNotFoundError: ``source`` looks like a path and does not exist.
    """
    data, base, label = _read_recipe(source)
    if base is not None:
        _resolve_paths(data, base)
    variants = data.pop("variants", {})
    if not isinstance(variants, Mapping):
        raise ValueError(f"`variants` in {label} must be a table of per-preset tables, got {variants!r}")
    model = data.get("model", {})
    chosen = preset or (model.get("preset") if isinstance(model, Mapping) else None) or ModelSection.preset
    if preset:
        data = _merge(data, {"model": {"preset": preset}}, label)
    variant = variants.get(chosen)
    if variant is not None:
        if not isinstance(variant, Mapping):
            raise ValueError(f"`variants.{chosen}` in {label} must be a table, got {variant!r}")
        if "variants" in variant or "name" in variant:
            raise ValueError(f"`variants.{chosen}` in {label} may only hold sections {list(_SECTIONS)}")
        data = _merge(data, variant, label)
    for text in overrides:
        parts, value = parse_override(text)
        if parts[0] not in _SECTIONS:
            raise ValueError(f"--set {text!r}: unknown section `{parts[0]}`; sections: {', '.join(_SECTIONS)}")
        _apply_override(data, parts, value)
    for key, value in (cli or {}).items():
        _apply_override(data, key.split("."), value)
    return config_from_dict(data, label=label)


__all__ = ["DataSection", "LossSection", "ModelSection", "OptimSection", "RunSection", "TEACHER_ALGORITHMIC",
           "TrainConfig", "config_from_dict", "load_config", "parse_override", "recipe_names"]

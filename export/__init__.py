"""Export rt-anime generators to static graphs: TorchScript, ONNX and TensorRT.

Every exporter unrolls ODE blocks over a fixed-step solver's constant timesteps (:func:`unroll`), writes the file
atomically, and measures parity against eager execution before the file appears.
"""

from ._common import ExportReport
from .onnx import export_onnx, ort_session
from .tensorrt import export_tensorrt
from .torchscript import export_torchscript, trace
from .unroll import UnrolledGenerator, UnrolledODEBlock, unroll

FORMATS = ("onnx", "torchscript", "tensorrt")

__all__ = ["FORMATS", "ExportReport", "UnrolledGenerator", "UnrolledODEBlock", "export_onnx", "export_tensorrt",
           "export_torchscript", "ort_session", "trace", "unroll"]

"""rt-anime: real-time video and camera anime stylization.

Public API::

    import realtime
    realtime.list_generators()                      # ['animeganv2', 'cut-resnet', 'nijigan', 'nijigan-lite']
    g = realtime.create_generator("nijigan", solver="rk4:1")
    realtime.save_generator(g, "my_model.safetensors")
    g = realtime.load_generator("my_model.safetensors")   # or an official CUT/Scenimefy/AnimeGANv2 .pth
"""

__version__ = "0.1.0"

from . import models  # noqa: E402,F401  (registers the families)
from ._registry import create_generator, list_generators  # noqa: E402
from .checkpoint import list_pretrained, load_generator, load_weights_index, save_generator  # noqa: E402
from .models._base import Generator, GeneratorOutput  # noqa: E402
from .solvers import parse_solver  # noqa: E402

load_weights_index()

__all__ = ["Generator", "GeneratorOutput", "__version__", "create_generator", "list_generators", "list_pretrained",
           "load_generator", "parse_solver", "save_generator"]

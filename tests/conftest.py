import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

# Two threads is what the project's machines have; pinning it keeps timings and numerics comparable across runs.
torch.set_num_threads(min(2, torch.get_num_threads()))

# Small configs of every registered generator, so registry-wide tests stay fast.
TINY = {
    "nijigan": dict(ngf=4, solver="rk4:1"),
    "nijigan-lite": dict(ngf=4),
    "cut-resnet": dict(ngf=4, n_blocks=2),
    "animeganv2": dict(),
}


@pytest.fixture(autouse=True)
def _seed():
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    yield
    torch.random.set_rng_state(state)


def cuda_available() -> bool:
    return torch.cuda.is_available()


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

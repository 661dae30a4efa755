"""Machine facts and the sgemm reference every benchmark reports against."""

from __future__ import annotations

import os
import platform
import statistics
import time

import torch


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_facts() -> dict:
    return {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def timed(fn, *, runs: int, warmup: int = 1) -> list[float]:
    """Wall seconds of ``runs`` calls after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def sgemm_gflops(n: int = 2048, runs: int = 10) -> float:
    """Median fp32 matmul throughput: the machine's practical peak for dense fp32 work."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    with torch.inference_mode():
        t = statistics.median(timed(lambda: a @ b, runs=runs, warmup=2))
    return 2 * n**3 / t / 1e9

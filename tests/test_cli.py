"""The ``rt-anime`` tool commands as a user runs them."""

import subprocess
import sys

import cv2
import numpy as np
import pytest

from realtime.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "realtime", *args], capture_output=True, text=True, timeout=300)


def test_export_prints_parity(tmp_path):
    out = tmp_path / "m.ts"
    proc = run_cli("export", "--model", "nijigan-lite", "--random-weights", "--solver", "midpoint:1",
                   "--format", "torchscript", "-H", "32", "-W", "48", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "parity vs eager: max abs err" in proc.stdout and "solver midpoint:1" in proc.stdout
    assert out.exists()


@pytest.mark.parametrize("args, message", [
    (["export", "--model", "nijigan", "--random-weights", "--format", "onnx", "-H", "32", "-W", "32", "-o", "x.onnx"],
     "cannot unroll with solver 'dopri5"),
    (["export", "--model", "nijigan", "--random-weights", "--solver", "rk9", "--format", "onnx", "-H", "32", "-W",
      "32", "-o", "x.onnx"], "--solver 'rk9': unknown method 'rk9'"),
    (["export", "--model", "missing.pth", "--format", "onnx", "-H", "32", "-W", "32", "-o", "x.onnx"],
     "checkpoint file missing.pth not found"),
    (["export", "--model", "animeganv2", "--random-weights", "--solver", "rk4:1", "--format", "onnx", "-H", "32",
      "-W", "32", "-o", "x.onnx"], r"\['solver'\] are not known to family 'animeganv2'"),
    (["export", "--model", "nijigan-lite", "--random-weights", "--format", "torchscript", "-H", "30", "-W", "32",
      "-o", "x.ts"], "multiples of 4"),
    (["export", "--model", "nijigan-lite", "--random-weights", "--format", "onnx", "-H", "32", "-W", "32",
      "-o", "x.ts"], r"-o x.ts: --format onnx writes .onnx files, not .ts"),
    (["frobnicate", "out.mp4"], "input frobnicate does not exist"),
])
def test_user_errors_are_one_line_and_exit_2(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("rt-anime: error:") and err.count("\n") == 1 and "Traceback" not in err
    assert __import__("re").search(message, err), err
    assert not list(tmp_path.glob("x.*"))


def test_running_out_of_memory_is_one_line_and_other_runtime_errors_are_not_hidden(monkeypatch, capsys):
    # Before: a frame too large for the machine ended in a 40-line traceback from torch's allocator.
    import realtime.commands.list as listing

    def oom(args):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you "
                           "tried to allocate 120000000000 bytes")

    monkeypatch.setattr(listing, "run", oom)
    assert main(["list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rt-anime: error: out of memory (") and "--max-side" in err and err.count("\n") == 1
    monkeypatch.setattr(listing, "run", lambda args: (_ for _ in ()).throw(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):
        main(["list"])


def test_export_never_replaces_a_video(tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not a model")
    assert main(["export", "--model", "nijigan-lite", "--random-weights", "--format", "torchscript", "-H", "32",
                 "-W", "32", "-o", str(clip)]) == 2
    assert "--format torchscript writes .pt or .ts" in capsys.readouterr().err
    assert clip.read_bytes() == b"not a model"


def test_solvers_report(tmp_path, capsys):
    image = (np.random.default_rng(0).random((40, 52, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), image)
    assert main(["solvers", "--model", "nijigan-lite", "--random-weights", str(tmp_path / "a.png"),
                 "--solvers", "euler:1;rk4:2", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("euler", "rk4"))}
    assert rows["euler:1"][2] == "1.0" and rows["rk4:2"][2] == "8.0"  # NFE per block
    assert float(rows["rk4:2"][1]) > float(rows["euler:1"][1])  # closer to the dopri5 reference


def test_solvers_needs_an_ode_model(tmp_path, capsys):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    assert main(["solvers", "--model", "cut-resnet", "--random-weights", str(tmp_path / "a.png")]) == 2
    assert "has no ODE solver" in capsys.readouterr().err


def test_list(capsys):
    assert main(["list"]) == 0
    assert "nijigan-lite" in capsys.readouterr().out

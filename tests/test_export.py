"""Unrolled export graphs: equal to the solver run, traceable, and equal to eager after TorchScript/ONNX export."""

import pytest
import torch
import torchdiffeq

import export
import realtime
from conftest import needs_cuda
from export.unroll import UnrolledODEBlock
from realtime.models.nijigan import ODEBlock


@pytest.fixture(scope="module")
def niji():
    return realtime.create_generator("nijigan", ngf=4, solver="rk4:1").eval()


@pytest.mark.parametrize("spec", ["euler:1", "euler:2", "midpoint:1", "rk4:1", "rk4:2"])
def test_unrolled_equals_torchdiffeq_solve(niji, spec):
    solver = realtime.parse_solver(spec)
    unrolled = export.unroll(niji, spec)
    assert not any(isinstance(m, ODEBlock) for m in unrolled.modules())
    assert sum(isinstance(m, UnrolledODEBlock) for m in unrolled.modules()) == 4
    x = torch.rand(1, 3, 20, 16) * 2 - 1
    grid = torch.tensor(solver.timesteps())
    with torch.no_grad():
        h = x
        for i, layer in enumerate(niji.model):
            if isinstance(layer, ODEBlock):
                h = torchdiffeq.odeint(layer.odefunc, h, grid, method=solver.method)[-1]
            else:
                h = layer(h)
        torch.testing.assert_close(unrolled(x), h, atol=1e-5, rtol=0)


def test_unrolled_shares_weights_and_traces_without_torchdiffeq(niji):
    unrolled = export.unroll(niji, "midpoint:1")
    assert unrolled.model[1].weight is niji.model[1].weight
    traced = export.trace(niji, torch.zeros(1, 3, 16, 16), solver="midpoint:1")
    graph = str(traced.inlined_graph if hasattr(traced, "inlined_graph") else traced.graph)
    assert "odeint" not in graph and "prim::Loop" not in graph and "prim::If" not in graph
    assert graph.count("aten::_convolution") + graph.count("aten::conv2d") == 6 + 2 + 4 * 2 * 2  # stem, down, up, head convs; 2 blur convs; 4 blocks x 2 NFE x 2


def test_adaptive_solver_cannot_be_unrolled(niji):
    with pytest.raises(ValueError, match="cannot unroll with solver 'dopri5.*fixed-step"):
        export.unroll(niji, "dopri5")


def test_static_generators_unroll_to_themselves():
    cut = realtime.create_generator("cut-resnet", ngf=4, n_blocks=2)
    assert export.unroll(cut) is cut


def test_torchscript_export_matches_eager(niji, tmp_path):
    report = export.export_torchscript(niji, tmp_path / "n.ts", height=24, width=32)
    assert report.max_abs_err <= 1e-4 and (tmp_path / "n.ts").exists()
    loaded = torch.jit.load(str(tmp_path / "n.ts"))
    x = torch.rand(1, 3, 24, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), niji(x), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name, config, dynamic", [("nijigan", dict(ngf=4, solver="rk4:1"), True),
                                                   ("nijigan", dict(ngf=4, solver="euler:1", input_skip=True), True),
                                                   ("nijigan", dict(ngf=4, solver="euler:1", input_skip=True,
                                                                    unet_skips=True, norm="none"), True),
                                                   ("nijigan", dict(ngf=4, solver="euler:1", input_skip=True,
                                                                    unet_skips=True, unet_skip_at="pre_relu",
                                                                    norm="none"), False),
                                                   ("animeganv2", {}, False)])
def test_onnx_export_matches_eager(tmp_path, name, config, dynamic):
    import onnx

    g = realtime.create_generator(name, **config).eval()
    report = export.export_onnx(g, tmp_path / "m.onnx", height=36, width=28, dynamic=dynamic)
    assert report.max_abs_err <= 1e-4
    model = onnx.load(str(tmp_path / "m.onnx"))
    assert model.opset_import[0].version >= 17
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert (isinstance(dims[2], str) and isinstance(dims[3], str)) == dynamic
    ops = {n.op_type for n in model.graph.node}
    assert "Loop" not in ops
    assert ("Clip" in ops) == config.get("input_skip", False)  # the skip's clamp; the paper's head is a Tanh
    if dynamic:  # a size the export never saw
        x = torch.rand(2, 3, 44, 20) * 2 - 1
        out = export.ort_session(tmp_path / "m.onnx").run(None, {"image": x.numpy()})[0]
        with torch.no_grad():
            assert abs(out - g(x).numpy()).max() <= 1e-4


def test_failed_export_leaves_no_file(niji, tmp_path):
    with pytest.raises(ValueError, match="multiples of 4"):
        export.export_onnx(niji, tmp_path / "bad.onnx", height=30, width=32)
    assert list(tmp_path.iterdir()) == []


def test_tensorrt_cache_key_tracks_everything(niji):
    from export.tensorrt import engine_cache_key

    base = dict(shape=(1, 3, 64, 64), precision="fp16", solver_spec="rk4:1", trt_version="10", gpu_name="H100")
    key = engine_cache_key(niji, **base)
    assert key == engine_cache_key(niji, **base)
    for change in (dict(shape=(1, 3, 64, 128)), dict(precision="fp32"), dict(trt_version="11"),
                   dict(gpu_name="A100"), dict(solver_spec="euler:1")):
        assert engine_cache_key(niji, **{**base, **change}) != key
    other = realtime.create_generator("nijigan", ngf=4, solver="rk4:1")
    assert engine_cache_key(other, **base) != key


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_tensorrt_without_cuda_is_a_clear_error(niji, tmp_path):
    from realtime.errors import RtAnimeError

    with pytest.raises(RtAnimeError, match="needs a CUDA GPU"):
        export.export_tensorrt(niji, tmp_path / "n.trt", height=32, width=32)
    assert not (tmp_path / "n.trt").exists()


@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_export_on_gpu(niji, tmp_path, precision):
    pytest.importorskip("torch_tensorrt")
    report = export.export_tensorrt(niji, tmp_path / "n.ts", height=64, width=64, precision=precision,
                                    cache_dir=tmp_path / "cache")
    assert report.psnr_db >= 40
    again = export.export_tensorrt(niji, tmp_path / "n2.ts", height=64, width=64, precision=precision,
                                   cache_dir=tmp_path / "cache")
    assert again.seconds < report.seconds  # cache hit

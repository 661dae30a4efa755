"""rt-anime's safetensors + JSON format, third-party loading rules and the errors users see."""

import json

import pytest
import torch

import realtime
from realtime.errors import CheckpointError


@pytest.fixture
def niji():
    return realtime.create_generator("nijigan", ngf=4, solver="rk4:2").eval()


def test_roundtrip_keeps_weights_config_and_solver(niji, tmp_path):
    config_path = realtime.save_generator(niji, tmp_path / "m.safetensors")
    record = json.loads(config_path.read_text())
    assert record["family"] == "nijigan" and record["config"]["solver"]["method"] == "rk4"
    assert record["config"]["ngf"] == 4 and len(record["sha256"]) == 64
    assert record["preprocessing"]["input_range"] == [-1.0, 1.0] and record["preprocessing"]["size_multiple"] == 4
    loaded = realtime.load_generator(tmp_path / "m.safetensors")
    assert loaded.config == niji.config and not loaded.training
    x = torch.rand(1, 3, 16, 12) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(x), niji(x))
    # the JSON path names the same checkpoint
    assert realtime.load_generator(config_path).config == niji.config


def test_fp16_storage_halves_the_file_and_loads_as_fp32(niji, tmp_path):
    realtime.save_generator(niji, tmp_path / "a")
    realtime.save_generator(niji, tmp_path / "b", dtype=torch.float16)
    a, b = (tmp_path / "a.safetensors").stat().st_size, (tmp_path / "b.safetensors").stat().st_size
    assert b < 0.6 * a
    loaded = realtime.load_generator(tmp_path / "b.json")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())


def test_overrides_change_the_solver_only(niji, tmp_path):
    realtime.save_generator(niji, tmp_path / "m")
    assert realtime.load_generator(tmp_path / "m.json", solver="euler:1").solver.spec == "euler:1"
    with pytest.raises(CheckpointError, match=r"cannot override \['n_blocks'\]"):
        realtime.load_generator(tmp_path / "m.json", n_blocks=2)


def test_tampered_weights_fail_sha256(niji, tmp_path):
    realtime.save_generator(niji, tmp_path / "m")
    weights = tmp_path / "m.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256 .* corrupt or was changed"):
        realtime.load_generator(tmp_path / "m.json")


def test_lone_safetensors_uses_embedded_config(niji, tmp_path):
    realtime.save_generator(niji, tmp_path / "m")
    (tmp_path / "m.json").unlink()
    assert realtime.load_generator(tmp_path / "m.safetensors").config == niji.config


def test_raw_nijigan_state_dict_is_recognised(niji, tmp_path):
    torch.save(niji.state_dict(), tmp_path / "raw.pth")
    g = realtime.load_generator(tmp_path / "raw.pth", solver="rk4:2")
    assert g.family == "nijigan" and g.config.ngf == 4 and g.config.n_ode_blocks == 4


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickles_that_run_code_are_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"model.1.weight": Evil()}, path)
    with pytest.raises(CheckpointError, match="refusing to load .* would need to run code"):
        realtime.load_generator(path)
    assert "must never run" not in capsys.readouterr().out


def test_unknown_layout_names_the_closest_and_the_keys(tmp_path):
    sd = realtime.create_generator("cut-resnet").state_dict()
    sd.pop("model.30.weight")
    sd = {k.replace("model.", "net."): v for k, v in sd.items()}
    torch.save(sd, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match=r"matches no known generator layout; closest known layout: CUT "
                                              r"ResnetGenerator \(ngf 64, 9 blocks, antialiased\) .*missing keys"):
        realtime.load_generator(tmp_path / "x.pth")


def test_right_family_wrong_shapes(tmp_path):
    sd = realtime.create_generator("animeganv2").state_dict()
    sd["block_b.1.1.weight"] = torch.zeros(128, 128, 5, 5)
    torch.save(sd, tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match=r"'block_b.1.1.weight' has shape \(128, 128, 5, 5\)"):
        realtime.load_generator(tmp_path / "a.pt")


def test_wrong_blur_buffer_is_rejected(tmp_path):
    g = realtime.create_generator("cut-resnet", ngf=4, n_blocks=2)
    sd = dict(g.state_dict())
    sd["model.7.filt"] = torch.ones(8, 1, 3, 3)
    torch.save(sd, tmp_path / "c.pth")
    with pytest.raises(CheckpointError, match="not the standard blur kernel"):
        realtime.load_generator(tmp_path / "c.pth")


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "is neither an existing checkpoint file nor a bundled model name"),
    (lambda p: (p / "d").mkdir(), "is a directory"),
    (lambda p: (p / "w.txt").write_text("x"), "unknown checkpoint extension '.txt'"),
    (lambda p: (p / "c.pth").write_bytes(b"not a zip"), "is not a readable PyTorch checkpoint"),
    (lambda p: (p / "j.json").write_text("{"), "is not valid JSON"),
    (lambda p: torch.save([1, 2], p / "l.pt"), "holds no state dict of tensors"),
])
def test_bad_checkpoint_files(tmp_path, make, message):
    names = {"is neither": "nonsense-model", "is a directory": "d", "'.txt'": "w.txt", "PyTorch": "c.pth",
             "JSON": "j.json", "no state dict": "l.pt"}
    make(tmp_path)
    target = next(v for k, v in names.items() if k in message)
    path = target if target == "nonsense-model" else tmp_path / target
    with pytest.raises(CheckpointError, match=message):
        realtime.load_generator(path)


def test_registered_name_without_bundled_weights_says_so():
    with pytest.raises(CheckpointError, match="has no bundled weights .*create_generator"):
        realtime.load_generator("cut-resnet")


def test_missing_file_path():
    with pytest.raises(CheckpointError, match="checkpoint file models/none.safetensors not found"):
        realtime.load_generator("models/none.safetensors")


def test_bundled_weights_index_makes_names_loadable(niji, tmp_path, monkeypatch):
    import realtime.checkpoint as ck
    from realtime.checkpoint import load_weights_index, sha256_file

    for registry in ("_PRETRAINED", "_DEFAULT_TAG", "_WEIGHTS_DIRS"):  # keep the registration local to this test
        monkeypatch.setattr(ck, registry, dict(getattr(ck, registry)))

    realtime.save_generator(niji, tmp_path / "niji-test")
    index = [{"name": "niji-test", "file": "niji-test.safetensors", "sha256": sha256_file(tmp_path / "niji-test.safetensors"),
              "license": "Apache-2.0", "origin": "test", "default": True}]
    (tmp_path / "index.json").write_text(json.dumps(index))
    assert load_weights_index(tmp_path) == 1
    assert "niji-test" in realtime.list_pretrained()
    assert realtime.load_generator("niji-test").config == niji.config
    (tmp_path / "niji-test.safetensors").write_bytes(b"x" + (tmp_path / "niji-test.safetensors").read_bytes()[1:])
    with pytest.raises(CheckpointError, match="fail their sha256 check"):
        realtime.load_generator("niji-test")

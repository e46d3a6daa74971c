"""Reading model files: safe formats only, clear errors naming the file, every layout loads."""

import pickle

import pytest
import torch
from safetensors.torch import save_file

from lib_controlnet import (
    IncompatibleModelError,
    ModelFileError,
    NotFoundError,
    UnsafeFileError,
    load_control_model,
)
from tests.tiny_models import SD_LIKE_UNET, controlnet_state_dict_from_unet, ldm_unet, save_state_dict


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    unet = ldm_unet(SD_LIKE_UNET, seed=21)
    sd = controlnet_state_dict_from_unet(unet, seed=22)
    return unet, sd, tmp_path_factory.mktemp("files")


def probe(model):
    g = torch.Generator().manual_seed(0)
    x, ctx = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 3, 32, generator=g)
    return model(x, torch.rand(1, 3, 64, 64, generator=g), torch.tensor([10.0]), ctx)


class Payload:
    """Unpickling this would create a file: the proof that code ran."""

    marker = None

    def __reduce__(self):
        return (open, (str(Payload.marker), "w"))


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path):
    Payload.marker = tmp_path / "pwned"
    bad = tmp_path / "control_evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": Payload()}, bad)
    assert not Payload.marker.exists()
    with pytest.raises(UnsafeFileError) as e:
        load_control_model(bad)
    assert "control_evil.pth" in str(e.value) and "safetensors" in str(e.value)
    assert not Payload.marker.exists()


def test_legacy_non_zip_pickle_is_refused_too(tmp_path):
    Payload.marker = tmp_path / "pwned_legacy"
    bad = tmp_path / "old.ckpt"
    with open(bad, "wb") as f:
        pickle.dump({"a": Payload()}, f, protocol=2)
    with pytest.raises(ModelFileError):
        load_control_model(bad)
    assert not Payload.marker.exists()


def test_pth_ckpt_bin_load_with_weights_only(tiny):
    _, sd, d = tiny
    reference = probe(load_control_model(save_state_dict(sd, d / "ref.safetensors")))
    prefixed = {"control_model." + k: v for k, v in sd.items()}
    for name, obj in [("a.pth", prefixed), ("b.ckpt", {"state_dict": prefixed, "global_step": 3}), ("c.bin", sd)]:
        torch.save(obj, d / name)
        got = probe(load_control_model(d / name))
        assert all(torch.equal(a, b) for a, b in zip(got, reference)), name


def test_unsupported_and_missing_files(tmp_path):
    with pytest.raises(NotFoundError, match="nope.safetensors"):
        load_control_model(tmp_path / "nope.safetensors")
    (tmp_path / "model.onnx").write_bytes(b"\0" * 16)
    with pytest.raises(ModelFileError, match=r"model.onnx: unsupported file type"):
        load_control_model(tmp_path / "model.onnx")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelFileError, match="junk.safetensors"):
        load_control_model(tmp_path / "junk.safetensors")
    (tmp_path / "folder").mkdir()
    with pytest.raises(ModelFileError, match="config.json"):
        load_control_model(tmp_path / "folder")


def test_a_file_that_is_no_controlnet_names_the_file(tmp_path):
    path = tmp_path / "vae.safetensors"
    save_file({"encoder.conv_in.weight": torch.zeros(8, 3, 3, 3)}, str(path))
    with pytest.raises(ModelFileError, match=r"vae.safetensors: not a recognised control model"):
        load_control_model(path)


def test_truncated_state_dict_reports_missing_keys(tiny):
    _, sd, d = tiny
    broken = {k: v for k, v in sd.items() if not k.startswith("zero_convs.3.")}
    with pytest.raises(ModelFileError, match=r"broken.safetensors: keys do not fit.*zero_convs.3.0"):
        load_control_model(save_state_dict(broken, d / "broken.safetensors"))


def test_fp16_file_loads_in_fp16_and_mixed_dtypes_are_unified(tiny):
    _, sd, d = tiny
    half = load_control_model(save_state_dict({k: v.half() for k, v in sd.items()}, d / "half.safetensors"))
    assert half.dtype == torch.float16
    mixed = {k: (v.half() if i % 3 else v) for i, (k, v) in enumerate(sd.items())}
    model = load_control_model(save_state_dict(mixed, d / "mixed.safetensors"))
    assert {p.dtype for p in model.net.parameters()} == {torch.float16}


def test_difference_controlnet_adds_the_host_unet(tiny):
    unet, sd, d = tiny
    unet_sd = unet.state_dict()
    diff = {k: (v - unet_sd[k] if k in unet_sd else v) for k, v in sd.items()}
    path = save_state_dict({**diff, "difference": torch.tensor([])}, d / "diff.safetensors", prefix="")
    # the marker sits un-prefixed beside prefixed keys in the published difference files
    prefixed = save_state_dict(diff, d / "diff_prefixed.safetensors")
    from safetensors.torch import load_file

    save_file({**load_file(str(prefixed)), "difference": torch.tensor([])}, str(prefixed))

    reference = probe(load_control_model(save_state_dict(sd, d / "full.safetensors")))
    for p in (path, prefixed):
        model = load_control_model(p, base_unet=unet_sd)
        assert model.format == "ldm-controlnet-difference"
        for a, b in zip(probe(model), reference):
            assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    with pytest.raises(IncompatibleModelError, match="difference"):
        load_control_model(path)


def test_inpainting_unet_latent_channels_are_cut_to_the_controlnets(tiny):
    _, sd, d = tiny
    model = load_control_model(save_state_dict(sd, d / "inp.safetensors"))
    g = torch.Generator().manual_seed(1)
    x9 = torch.randn(1, 9, 8, 8, generator=g)
    args = (torch.rand(1, 3, 64, 64, generator=g), torch.tensor([5.0]), torch.randn(1, 3, 32, generator=g))
    assert all(torch.equal(a, b) for a, b in zip(model(x9, *args), model(x9[:, :4], *args)))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_residuals_follow_the_callers_dtype(tiny, dtype):
    _, sd, d = tiny
    model = load_control_model(save_state_dict(sd, d / f"dt_{dtype}.safetensors"))
    g = torch.Generator().manual_seed(2)
    x, ctx, hint = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 3, 32, generator=g), torch.rand(1, 3, 64, 64)
    reference = model(x, hint, torch.tensor([5.0]), ctx)
    model.to(dtype=dtype)
    low = model(x.to(dtype), hint, torch.tensor([5.0]), ctx.to(dtype))
    for a, b in zip(low, reference):
        assert a.dtype == dtype
        assert torch.allclose(a.float(), b, rtol=5e-2, atol=5e-2 * b.abs().max().item())


def test_parameters_are_the_tensors_read_from_the_file(tiny, monkeypatch):
    """assign=True: no second copy of the weights is made while building the network."""
    import lib_controlnet.models.files as mf

    _, sd, d = tiny
    path = save_state_dict(sd, d / "once.safetensors")
    seen = {}
    original = mf.read_safetensors

    def spy(p):
        seen.update(original(p))
        return seen

    monkeypatch.setattr(mf, "read_safetensors", spy)
    model = load_control_model(path)
    params = dict(model.net.named_parameters())
    assert params and all(params[k.removeprefix("control_model.")].data_ptr() == v.data_ptr() for k, v in seen.items())


def test_our_safetensors_reader_matches_the_library_and_rejects_truncation(tmp_path):
    from safetensors.torch import load_file

    from lib_controlnet.models.files import read_safetensors

    g = torch.Generator().manual_seed(3)
    tensors = {
        "f32": torch.randn(3, 4, generator=g),
        "f16": torch.randn(5, generator=g).half(),
        "bf16": torch.randn(2, 2, generator=g).bfloat16(),
        "i64": torch.arange(6).reshape(2, 3),
        "u8": torch.randint(0, 255, (7,), dtype=torch.uint8, generator=g),
        "flag": torch.tensor([True, False]),
        "scalar": torch.tensor(1.5),
        "empty": torch.zeros(0, 3),
    }
    path = tmp_path / "all.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt"})
    ours, theirs = read_safetensors(path), load_file(str(path))
    assert ours.keys() == theirs.keys()
    for k in ours:
        assert ours[k].dtype == theirs[k].dtype and torch.equal(ours[k], theirs[k]), k
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-3])
    with pytest.raises(ModelFileError, match="cut.safetensors"):
        read_safetensors(tmp_path / "cut.safetensors")


def test_a_host_that_replaces_torch_load_does_not_change_what_we_read(tiny, monkeypatch):
    """A1111 puts its own checker at `torch.load` (modules/safe.py), which returns None for anything saved by a
    torch >= 2.1 (it refuses the `.format_version` record): .pth files and `ipadapter_input` blobs must still
    read, through torch's own weights_only loader."""
    import base64
    import io

    from lib_controlnet.models.files import read_pickle_weights
    from lib_controlnet.units.ipadapter_input import decode_ipadapter_input

    _, sd, folder = tiny
    path = folder / "saved_by_this_torch.pth"
    torch.save(sd, path)
    buffer = io.BytesIO()
    torch.save({"image_embeds": torch.ones(1, 4)}, buffer)
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: None)  # what A1111's check gives for these
    loaded = read_pickle_weights(path)
    assert loaded.keys() == sd.keys() and all(torch.equal(loaded[k], sd[k]) for k in sd)
    decoded = decode_ipadapter_input(base64.b64encode(buffer.getvalue()).decode())
    assert torch.equal(decoded[0]["image_embeds"], torch.ones(1, 4))

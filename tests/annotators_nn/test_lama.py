"""LaMa (inpaint_only+lama's fill): the published layout, the fill's pre/post-processing, the missing-file error,
the initial-noise seeding and the outpainting preparation.

The layout digest is the upstream generator's (Mikubill/sd-webui-controlnet annotator/lama: saicinpainting's
FFCResNetGenerator built from its config.yaml). Once, outside the repository, that upstream module and ours were
loaded with the same random weights: outputs on a 256x320 input were identical in fp32 (max abs difference 0.0)
and within 7e-13 in fp64.
"""

import hashlib
import math

import numpy as np
import pytest
import torch
from nn_test_helpers import PreloadedModels

from annotator.neural import lama
from annotator.neural.weights import set_weights_folder
from lib_controlnet.controls import ControlRequest, build
from lib_controlnet.errors import NotFoundError
from lib_controlnet.hook.host import HostInfo, sd_alphas_cumprod
from lib_controlnet.preprocessors import default_registry, resolve_params, run_preprocessor
from lib_controlnet.preprocessors.declaration import Params

UPSTREAM = ("c8a8830c14dbb42e6693a8b3b2f61ae95cc15df434af8f664375bd77f78ffc4c", 989, 51_057_179)


def digest(state):
    lines = sorted(f"{k}:{','.join(str(d) for d in v.shape)}" for k, v in state.items())
    return (hashlib.sha256("\n".join(lines).encode()).hexdigest(), len(lines),
            sum(math.prod(v.shape) for v in state.values()))


def test_the_generator_has_the_published_layout():
    with torch.device("meta"):
        state = lama.LAMA.build(None).state_dict()
    assert digest(state) == UPSTREAM
    assert {"model.1.ffc.convl2l.weight", "model.4.ffc.convl2g.weight", "model.22.conv2.bn_g.running_var",
            "model.5.conv1.ffc.convg2g.fu.conv_layer.weight", "model.24.weight", "model.34.bias"} <= set(state)
    assert "model.5.conv1.ffc.convg2g.conv1.0.weight" in state and "model.23.weight" not in state


def tiny_lama(seed=0):
    torch.manual_seed(seed)
    net = lama.LamaGenerator(width=8, blocks=2)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(torch.rand_like(t) + 0.5)
            elif t.is_floating_point():
                t.add_(torch.randn_like(t) * 0.05)
    return net.eval()


@pytest.fixture(scope="module")
def models():
    return PreloadedModels({"ControlNetLama.pth": tiny_lama()})


def test_a_small_file_describes_its_own_generator():
    state = tiny_lama().state_dict()
    assert digest(lama.LAMA.build(state).state_dict())[1:] == digest(state)[1:]


def test_fill_changes_only_the_mask_and_keeps_it(photo, models):
    rgba = np.dstack([photo, np.zeros(photo.shape[:2], np.uint8)])
    rgba[60:140, 100:220, 3] = 255
    out = lama.lama_inpaint(rgba, models=models)
    assert out.shape == rgba.shape and out.dtype == np.uint8
    assert np.array_equal(out[:, :, 3], rgba[:, :, 3])
    outside = rgba[:, :, 3] == 0
    assert np.array_equal(out[outside, :3], photo[outside])
    assert np.abs(out[80:120, 130:190, :3].astype(int) - photo[80:120, 130:190].astype(int)).mean() > 5


def test_the_fill_follows_the_reference_steps(photo, models):
    """256 on the short side, masked pixels zeroed and the mask appended, the net, then only the mask replaced."""
    rgba = np.dstack([photo, np.zeros(photo.shape[:2], np.uint8)])
    rgba[:, 200:, 3] = 255
    small = lama.resize_short_side(rgba, 256)
    assert small.shape[:2] == (256, 320)  # already multiples of 64: no padding
    with torch.no_grad():
        x = torch.from_numpy(small).float() / 255
        mask = (x[:, :, 3:] > 0.5).float()
        color = x[:, :, :3] * (1 - mask)
        feed = torch.cat([color, mask], 2).permute(2, 0, 1)[None]
        predicted = models.nets["ControlNetLama.pth"](feed)[0].permute(1, 2, 0) * mask + color * (1 - mask)
    expected = (predicted * 255).clamp(0, 255).byte().numpy()
    out = lama.lama_inpaint(rgba, models=models)
    assert np.array_equal(out[:, 200:, :3], expected[:, 200:])  # 256 x 320 in and out: no resize either


def test_a_missing_file_names_it_its_folder_and_source(photo, tmp_path):
    set_weights_folder(tmp_path)
    try:
        preprocessor = default_registry().get("inpaint_only+lama")
        rgba = np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])
        with pytest.raises(NotFoundError) as e:
            run_preprocessor(preprocessor, rgba, resolve_params(preprocessor))
    finally:
        set_weights_folder()
    message = str(e.value)
    assert "ControlNetLama.pth" in message and str(tmp_path) in message and "lllyasviel/Annotators" in message


def test_the_initial_noise_is_the_fill_noised_to_t999():
    fill = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    rgba = np.dstack([(fill[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8),
                      np.full((64, 64), 255, np.uint8)])
    controls = build("inpaint_only", ControlRequest(index=0, module="inpaint_only+lama", params=Params(),
                                                     maps=[rgba]))
    (modify,) = controls.noise

    def encode(pixels):
        return torch.nn.functional.avg_pool2d(pixels * 2 - 1, 8)[:, :3].repeat(1, 2, 1, 1)[:, :4]

    host = HostInfo(alphas_cumprod=sd_alphas_cumprod(), encode_image=encode)
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    a_bar = sd_alphas_cumprod().double()[999]
    pixels = torch.from_numpy(rgba[:, :, :3]).permute(2, 0, 1)[None].float() / 255
    expected = (a_bar.sqrt() * encode(pixels) + (1 - a_bar).sqrt() * noise).float()
    assert torch.allclose(modify(noise, host), expected, atol=1e-6)
    other = torch.randn(2, 4, 12, 12)
    assert torch.equal(modify(other, host), other)  # a pass of another size keeps its noise
    assert build("inpaint_only", ControlRequest(index=0, module="inpaint_only", params=Params(),
                                                maps=[rgba])).noise == []

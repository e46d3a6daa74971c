"""LaMa (Suvorov et al. 2021, "big-lama"): the inpainting network inpaint_only+lama fills the mask with, in
plain torch, reading the published `ControlNetLama.pth` (lllyasviel/Annotators) key for key.

The generator is a ResNet of Fast Fourier Convolutions: a 7x7 stem, three stride-2 downsamplings, 18
residual blocks whose channels are split 1:3 into a local (3x3 convolution) and a global (spectral:
a 1x1 convolution over the real/imaginary parts of the 2-D FFT) branch, three transposed-convolution
upsamplings and a sigmoid output. Module names follow the published file (`model.<i>.ffc.convl2l...`).

Pre/post-processing as the reference: the RGBA input (alpha = mask) is scaled so its short side is 256
(LaMa's training size), edge-padded to a multiple of 64, the masked pixels are zeroed and the binarised
mask appended as a 4th channel; the prediction replaces the masked pixels only, is scaled back to the
input's size and blended in by the (soft) mask.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from annotator.util import apply_padded, resize_short_side

from .runtime import default_models
from .weights import NetSpec, WeightFile, strip_prefix

RESOLUTION = 256  # LaMa's training size: the reference always fills at it


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride, padding, bias=False, padding_mode="reflect")


class FourierUnit(nn.Module):
    """A 1x1 convolution (+ BN, ReLU) over the 2-D real FFT, real and imaginary parts as channels."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv_layer = nn.Conv2d(channels * 2, channels * 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        spectrum = torch.fft.rfftn(x.float(), dim=(-2, -1), norm="ortho")
        # channel layout (c, real/imag) interleaved, as the published weights expect
        z = torch.stack((spectrum.real, spectrum.imag), dim=2).reshape(b, 2 * c, h, -1).to(x.dtype)
        z = F.relu(self.bn(self.conv_layer(z)))
        z = z.reshape(b, c, 2, h, -1).float()
        return torch.fft.irfftn(torch.complex(z[:, :, 0], z[:, :, 1]), s=(h, w), dim=(-2, -1),
                                norm="ortho").to(x.dtype)


class SpectralTransform(nn.Module):
    """The global branch: halve the channels, add the Fourier unit's output, project back."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(cin, cout // 2, 1, bias=False), nn.BatchNorm2d(cout // 2), nn.ReLU())
        self.fu = FourierUnit(cout // 2)
        self.conv2 = nn.Conv2d(cout // 2, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.conv2(x + self.fu(x))


class FFC(nn.Module):
    """Fast Fourier Convolution: (local, global) -> (local, global) with the four cross paths; a path is
    absent where either side has no channels (`ratio` = the global share of the channels)."""

    def __init__(self, cin: int, cout: int, kernel: int, ratio_in: float, ratio_out: float, stride: int = 1,
                 padding: int = 0):
        super().__init__()
        in_g, out_g = int(cin * ratio_in), int(cout * ratio_out)
        in_l, out_l = cin - in_g, cout - out_g
        self.convl2l = _conv(in_l, out_l, kernel, stride, padding) if in_l and out_l else None
        self.convl2g = _conv(in_l, out_g, kernel, stride, padding) if in_l and out_g else None
        self.convg2l = _conv(in_g, out_l, kernel, stride, padding) if in_g and out_l else None
        self.convg2g = SpectralTransform(in_g, out_g) if in_g and out_g else None
        self.out_l, self.out_g = out_l, out_g

    def forward(self, x):
        x_l, x_g = x
        out_l = sum(conv(t) for conv, t in ((self.convl2l, x_l), (self.convg2l, x_g)) if conv is not None)
        out_g = sum(conv(t) for conv, t in ((self.convl2g, x_l), (self.convg2g, x_g)) if conv is not None)
        return (out_l if self.out_l else None), (out_g if self.out_g else None)


class FFCBnAct(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, ratio_in: float, ratio_out: float, stride: int = 1,
                 padding: int = 0):
        super().__init__()
        self.ffc = FFC(cin, cout, kernel, ratio_in, ratio_out, stride, padding)
        out_g = int(cout * ratio_out)
        self.bn_l = nn.BatchNorm2d(cout - out_g) if cout - out_g else None
        self.bn_g = nn.BatchNorm2d(out_g) if out_g else None

    def forward(self, x):
        x_l, x_g = self.ffc(x)
        return (None if x_l is None else F.relu(self.bn_l(x_l))), (None if x_g is None else F.relu(self.bn_g(x_g)))


class FFCResnetBlock(nn.Module):
    def __init__(self, channels: int, ratio: float):
        super().__init__()
        self.conv1 = FFCBnAct(channels, channels, 3, ratio, ratio, padding=1)
        self.conv2 = FFCBnAct(channels, channels, 3, ratio, ratio, padding=1)

    def forward(self, x):
        x_l, x_g = self.conv2(self.conv1(x))
        return x[0] + x_l, x[1] + x_g


class _Stem(nn.Module):
    """Input image as (local, no global) for the first FFC layers."""

    def forward(self, x):
        return F.pad(x, (3, 3, 3, 3), mode="reflect"), None


class _Concat(nn.Module):
    def forward(self, x):
        x_l, x_g = x
        return x_l if x_g is None else torch.cat([x_l, x_g], dim=1)


class LamaGenerator(nn.Module):
    """[N, 4, H, W] (RGB in [0, 1] with the masked pixels zeroed, then the mask) -> RGB in [0, 1]; H and W a
    multiple of 8 (the reference pads to 64)."""

    def __init__(self, _state=None, width: int = 64, blocks: int = 18, downsamplings: int = 3, ratio: float = 0.75):
        super().__init__()
        layers: list[nn.Module] = [_Stem(), FFCBnAct(4, width, 7, 0, 0)]
        for i in range(downsamplings):
            ratio_out = ratio if i == downsamplings - 1 else 0  # the last one opens the global branch
            layers.append(FFCBnAct(width * 2**i, width * 2 ** (i + 1), 3, 0, ratio_out, stride=2, padding=1))
        bottleneck = width * 2**downsamplings
        layers += [FFCResnetBlock(bottleneck, ratio) for _ in range(blocks)]
        layers.append(_Concat())
        for i in range(downsamplings):
            c = bottleneck // 2**i
            layers += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1), nn.BatchNorm2d(c // 2),
                       nn.ReLU()]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, 3, 7), nn.Sigmoid()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def build_from_state(state) -> LamaGenerator:
    """The generator a state dict describes: width from the stem, one block per `model.<i>.conv1` (the
    published file: 64 and 18; tests use smaller ones)."""
    width = state["model.1.ffc.convl2l.weight"].shape[0]
    blocks = len({k.split(".")[1] for k in state if k.endswith(".conv1.ffc.convl2l.weight")})
    return LamaGenerator(width=width, blocks=blocks)


def _build(state) -> LamaGenerator:
    return LamaGenerator() if state is None else build_from_state(state)


# ControlNetLama.pth is the bare generator (`model.*`); LaMa's own training checkpoints prefix `generator.`
LAMA = NetSpec("LaMa (big-lama, FFC ResNet)", WeightFile(("ControlNetLama.pth",), "lama"), _build,
               adapt=strip_prefix("generator."), ignore=("discriminator.*",))


def fill(net: nn.Module, rgba: np.ndarray, device: torch.device) -> np.ndarray:
    """One padded RGBA uint8 image -> its RGB with the mask filled, uint8 (the reference's LamaInpainting)."""
    x = torch.from_numpy(np.ascontiguousarray(rgba)).float().div(255.0).to(device)
    color, mask = x[:, :, :3], (x[:, :, 3:4] > 0.5).float()
    color = color * (1 - mask)
    feed = torch.cat([color, mask], dim=2).permute(2, 0, 1)[None]
    result = net(feed)[0].permute(1, 2, 0)
    result = result * mask + color * (1 - mask)
    return (result * 255.0).clamp(0, 255).byte().cpu().numpy()


def lama_inpaint(rgba: np.ndarray, models=None) -> np.ndarray:
    """HxWx4 uint8 (alpha = mask) -> HxWx4 uint8: the masked area filled by LaMa, the mask kept."""
    if rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError("inpaint_only+lama needs the image with its mask as alpha")
    height, width = rgba.shape[:2]
    models = default_models() if models is None else models
    net = models.get(LAMA)

    def run(padded: np.ndarray) -> np.ndarray:
        with models.running(net) as device:
            return fill(net, padded, device)

    predicted = apply_padded(resize_short_side(rgba, RESOLUTION), run)
    predicted = cv2.resize(predicted, (width, height))
    alpha = rgba[:, :, 3:4].astype(np.float32) / 255.0
    filled = predicted.astype(np.float32) * alpha + rgba[:, :, :3].astype(np.float32) * (1 - alpha)
    return np.concatenate([filled.clip(0, 255).astype(np.uint8), rgba[:, :, 3:4]], axis=2)

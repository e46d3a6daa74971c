"""Line drawings from photos and illustrations:

- lineart (lineart_realistic) and lineart_coarse: the "informative drawings" generator (sk_model.pth,
  sk_model2.pth): a small ResNet image-to-image network with instance norm;
- lineart_anime: a pix2pix U-Net with 8 downsamplings (netG.pth);
- lineart_anime_denoise: the manga line extraction residual U-Net (erika.pth), on the grey image.
All give dark-on-light lines that the reference inverts to white on black.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..util import apply_padded, gray_to_rgb, hwc3, resize_short_side
from .runtime import AnnotatorModels, default_models
from .weights import NetSpec, WeightFile

# --- informative-drawings generator ------------------------------------------------------------------


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels), nn.ReLU(),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class SketchGenerator(nn.Module):
    """7x7 stem, two stride-2 downsamplings, residual blocks at 256 channels, two transposed-conv
    upsamplings, 7x7 to one channel and a sigmoid: RGB in [0, 1] -> lines (dark) in [0, 1]."""

    def __init__(self, _state=None, residual_blocks: int = 3):
        super().__init__()
        self.model0 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(3, 64, 7), nn.InstanceNorm2d(64), nn.ReLU())
        self.model1 = nn.Sequential(nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.InstanceNorm2d(128), nn.ReLU(),
                                    nn.Conv2d(128, 256, 3, stride=2, padding=1), nn.InstanceNorm2d(256), nn.ReLU())
        self.model2 = nn.Sequential(*[_ResidualBlock(256) for _ in range(residual_blocks)])
        self.model3 = nn.Sequential(
            nn.ConvTranspose2d(256, 128, 3, stride=2, padding=1, output_padding=1), nn.InstanceNorm2d(128), nn.ReLU(),
            nn.ConvTranspose2d(128, 64, 3, stride=2, padding=1, output_padding=1), nn.InstanceNorm2d(64), nn.ReLU())
        self.model4 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(64, 1, 7), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model4(self.model3(self.model2(self.model1(self.model0(x)))))


LINEART = NetSpec("lineart (informative drawings)", WeightFile(("sk_model.pth",), "lineart"), SketchGenerator)
LINEART_COARSE = NetSpec("lineart_coarse (informative drawings)", WeightFile(("sk_model2.pth",), "lineart"),
                         SketchGenerator)

# --- pix2pix U-Net (anime) ---------------------------------------------------------------------------------


class _UnetLevel(nn.Module):
    """One pix2pix U-Net level: down (4x4 stride 2), the inner levels, up (4x4 transposed), and the skip concat.
    Instance norm without parameters, or (`norm=False`, LeReS' merge network) no norm and no biases but the
    last one; the outermost level ends in tanh and has no skip."""

    def __init__(self, outer: int, inner: int, inside: nn.Module | None, *, image_channels: int | None = None,
                 outermost: bool = False, norm: bool = True):
        super().__init__()
        self.outermost = outermost

        def normed(channels: int) -> nn.Module:
            return nn.InstanceNorm2d(channels) if norm else nn.Identity()

        down = nn.Conv2d(image_channels or outer, inner, 4, stride=2, padding=1, bias=norm)
        if outermost:
            layers = [down, inside, nn.ReLU(), nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1), nn.Tanh()]
        elif inside is None:  # innermost
            layers = [nn.LeakyReLU(0.2), down, nn.ReLU(), nn.ConvTranspose2d(inner, outer, 4, stride=2, padding=1,
                                                                             bias=norm), normed(outer)]
        else:
            layers = [nn.LeakyReLU(0.2), down, normed(inner), inside, nn.ReLU(),
                      nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1, bias=norm), normed(outer)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        # The published network's first LeakyReLU runs in place, so the skip carries leaky_relu(x), not x.
        return torch.cat([F.leaky_relu(x, 0.2), self.model(x)], 1)


def pix2pix_unet(image_channels: int, downsamplings: int, width: int = 64, norm: bool = True) -> _UnetLevel:
    """pix2pix's UnetGenerator, built from the innermost level out (the file's `model.model.1.model.3...`)."""
    level = _UnetLevel(width * 8, width * 8, None, norm=norm)
    for _ in range(downsamplings - 5):
        level = _UnetLevel(width * 8, width * 8, level, norm=norm)
    for outer, inner in ((width * 4, width * 8), (width * 2, width * 4), (width, width * 2)):
        level = _UnetLevel(outer, inner, level, norm=norm)
    return _UnetLevel(1, width, level, image_channels=image_channels, outermost=True, norm=norm)


class AnimeUnet(nn.Module):
    """RGB in [-1, 1] -> one channel in [-1, 1]; the input side must be a multiple of 256."""

    def __init__(self, _state=None, downsamplings: int = 8, width: int = 64):
        super().__init__()
        self.model = pix2pix_unet(3, downsamplings, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


LINEART_ANIME = NetSpec("lineart_anime (pix2pix U-Net)", WeightFile(("netG.pth",), "lineart_anime"), AnimeUnet)
ANIME_MULTIPLE = 256

# --- manga line extraction (erika) ------------------------------------------------------------------------

MANGA_BN_EPS = 1e-3


class _BnReluConv(nn.Module):
    """BatchNorm (eps 1e-3), LeakyReLU 0.2, convolution; optionally followed by 2x nearest upsampling."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, upsample: bool = False):
        super().__init__()
        layers = [nn.BatchNorm2d(cin, eps=MANGA_BN_EPS), nn.LeakyReLU(0.2),
                  nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)]
        if upsample:
            layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class _Shortcut(nn.Module):
    """x + y, with x projected (1x1, possibly strided, possibly upsampled) when the shapes differ."""

    def __init__(self, cin: int, cout: int, stride: int = 1, upsample: bool = False):
        super().__init__()
        self.model = None
        if cin != cout or (stride != 1 and not upsample):
            layers = [nn.Conv2d(cin, cout, 1, stride=stride)]
            if upsample:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
            self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x if self.model is None else self.model(x)) + y


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1, upsample: bool = False):
        super().__init__()
        self.conv1 = _BnReluConv(cin, cout, 3, stride=stride, upsample=upsample)
        self.residual = _BnReluConv(cout, cout, 3)
        self.shortcut = _Shortcut(cin, cout, stride, upsample)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x, self.residual(self.conv1(x)))


class _Blocks(nn.Module):
    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.model = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _down(cin: int, cout: int, repeats: int, first: bool = False) -> _Blocks:
    """`repeats` blocks; the last one halves the size (except in the first and last groups)."""
    return _Blocks([_BasicBlock(cin if i == 0 else cout, cout, 2 if i == repeats - 1 and not first else 1)
                    for i in range(repeats)])


def _up(cin: int, cout: int, repeats: int) -> _Blocks:
    """`repeats` blocks; the first one doubles the size."""
    return _Blocks([_BasicBlock(cin, cout, upsample=True)] + [_BasicBlock(cout, cout) for _ in range(repeats - 1)])


class MangaLineNet(nn.Module):
    """Grey 0..255 (unnormalised) -> lines as a grey image (about 255 where there is no line)."""

    def __init__(self, _state=None):
        super().__init__()
        self.block0 = _down(1, 24, 2, first=True)
        self.block1 = _down(24, 48, 3)
        self.block2 = _down(48, 96, 5)
        self.block3 = _down(96, 192, 7)
        self.block4 = _down(192, 384, 12)
        self.block5 = _up(384, 192, 7)
        self.res1 = _Shortcut(192, 192)
        self.block6 = _up(192, 96, 5)
        self.res2 = _Shortcut(96, 96)
        self.block7 = _up(96, 48, 3)
        self.res3 = _Shortcut(48, 48)
        self.block8 = _up(48, 24, 2)
        self.res4 = _Shortcut(24, 24)
        self.block9 = _down(24, 16, 2, first=True)
        self.conv15 = _BnReluConv(16, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = self.block0(x)
        x1 = self.block1(x0)
        x2 = self.block2(x1)
        x3 = self.block3(x2)
        x = self.res1(x3, self.block5(self.block4(x3)))
        x = self.res2(x2, self.block6(x))
        x = self.res3(x1, self.block7(x))
        x = self.res4(x0, self.block8(x))
        return self.conv15(self.block9(x))


MANGA_LINE = NetSpec("manga line extraction (erika)", WeightFile(("erika.pth",), "manga_line"), MangaLineNet)

# --- the preprocessors ---------------------------------------------------------------------------------------


def _run(spec: NetSpec, x: np.ndarray, models: AnnotatorModels | None) -> np.ndarray:
    """Network on an NCHW float32 numpy input; the first output channel as HxW float32."""
    models = default_models() if models is None else models
    net = models.get(spec)
    with models.running(net) as device:
        return net(torch.from_numpy(x).to(device))[0, 0].float().cpu().numpy()


def _nchw(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img.transpose(2, 0, 1)[None]).astype(np.float32)


def lineart(image: np.ndarray, resolution: float, *, coarse: bool = False,
            models: AnnotatorModels | None = None) -> np.ndarray:
    """lineart_realistic / lineart_coarse: white lines on black."""
    spec = LINEART_COARSE if coarse else LINEART

    def run(img):
        lines = _run(spec, _nchw(img) / 255.0, models)
        return 255 - (lines * 255.0).clip(0, 255).astype(np.uint8)

    return gray_to_rgb(apply_padded(resize_short_side(hwc3(image), resolution), run))


def lineart_anime(image: np.ndarray, resolution: float, models: AnnotatorModels | None = None) -> np.ndarray:
    """The U-Net needs sides in multiples of 256: the image is stretched (cubic) up to them and the lines
    stretched back, as the reference does."""

    def run(img):
        height, width = img.shape[:2]
        big_h, big_w = -(-height // ANIME_MULTIPLE) * ANIME_MULTIPLE, -(-width // ANIME_MULTIPLE) * ANIME_MULTIPLE
        big = cv2.resize(img, (big_w, big_h), interpolation=cv2.INTER_CUBIC)
        lines = _run(LINEART_ANIME, _nchw(big) / 127.5 - 1.0, models) * 127.5 + 127.5
        lines = cv2.resize(lines, (width, height), interpolation=cv2.INTER_CUBIC)
        return 255 - lines.clip(0, 255).astype(np.uint8)

    return gray_to_rgb(apply_padded(resize_short_side(hwc3(image), resolution), run))


def lineart_anime_denoise(image: np.ndarray, resolution: float, models: AnnotatorModels | None = None) -> np.ndarray:
    """Manga line extraction on the grey image; white lines on black."""

    def run(img):
        grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)[None, None]
        return (255.0 - _run(MANGA_LINE, grey, models)).clip(0, 255).astype(np.uint8)

    return gray_to_rgb(apply_padded(resize_short_side(hwc3(image), resolution), run))


"""seg_anime_face: siyeong0's anime face segmentation U-Net (UNet.pth, bdsqlsz/qinglong_controlnet-lllite
Annotators/): torchvision's MobileNetV2 features as the encoder, five upsampling stages back to full size, seven
classes (background, hair, eye, mouth, face, skin, clothes), each drawn in its flat colour."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..util import hwc3, resize_short_side
from .runtime import AnnotatorModels, default_models
from .uniformer import pad_to
from .weights import NetSpec, WeightFile

# Class index -> colour, as the reference draws them (the ControlNet-LLLite anime face seg model reads these).
PALETTE = np.array([(255, 255, 0),  # background
                    (0, 0, 255),  # hair
                    (255, 0, 0),  # eye
                    (255, 255, 255),  # mouth
                    (0, 255, 0),  # face
                    (0, 255, 255),  # skin
                    (255, 0, 255)],  # clothes
                   dtype=np.uint8)
NETWORK_SIZE = 512  # the short side the network runs at, whatever the processing resolution
# torchvision's mobilenet_v2 settings (expansion, channels, repeats, stride), after the 3->32 stride-2 stem.
MOBILENET_V2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))
# The U-Net's encoder blocks: which of the 18 MobileNetV2 feature layers each one holds.
ENCODER_BLOCKS = ((0, 1), (2, 3), (4, 5, 6), (7, 8, 9, 10, 11, 12, 13), (14, 15, 16))


class ConvBnRelu6(nn.Sequential):
    """torchvision's Conv2dNormActivation: conv without bias (symmetric padding), BatchNorm, ReLU6."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6())


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.residual = stride == 1 and cin == cout
        layers = [ConvBnRelu6(cin, hidden, 1)] if expand != 1 else []
        layers += [ConvBnRelu6(hidden, hidden, stride=stride, groups=hidden), nn.Conv2d(hidden, cout, 1, bias=False),
                   nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


def mobilenet_v2_features() -> list[nn.Module]:
    layers: list[nn.Module] = [ConvBnRelu6(3, 32, stride=2)]
    cin = 32
    for expand, cout, repeats, stride in MOBILENET_V2:
        for i in range(repeats):
            layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
            cin = cout
    return layers


def _up_block(cin: int, cout: int) -> nn.Sequential:
    """Nearest 2x upsampling, 3x3 conv, InstanceNorm (no parameters), LeakyReLU(0.1), (Dropout)."""
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, padding=1),
                         nn.InstanceNorm2d(cout), nn.LeakyReLU(0.1), nn.Dropout(0.2))


class AnimeFaceUNet(nn.Module):
    """RGB in [0, 1] (N x 3 x H x W, sides multiples of 32) -> class probabilities (N x 7 x H x W)."""

    def __init__(self, classes: int = len(PALETTE)):
        super().__init__()
        features = mobilenet_v2_features()
        for i, indices in enumerate(ENCODER_BLOCKS):
            self.add_module(f"en_block{i}", nn.Sequential(*(features[j] for j in indices)))
        self.de_block4 = _up_block(160, 96)
        self.de_block3 = _up_block(96 * 2, 32)
        self.de_block2 = _up_block(32 * 2, 24)
        self.de_block1 = _up_block(24 * 2, 16)
        self.de_block0 = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                       nn.Conv2d(16 * 2, classes, 3, padding=1), nn.Softmax(dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i in range(5):
            x = getattr(self, f"en_block{i}")(x)
            skips.append(x)
        for i, skip in zip((4, 3, 2, 1), reversed(skips[:-1])):
            x = getattr(self, f"de_block{i}")(x)
            x = torch.cat([F.interpolate(x, size=skip.shape[2:], mode="bilinear", align_corners=True), skip], 1)
        return self.de_block0(x)


ANIME_FACE = NetSpec(
    "anime face segmentation U-Net",
    WeightFile(("UNet.pth",), "anime_face_segment",
               urls={"UNet.pth": "https://huggingface.co/bdsqlsz/qinglong_controlnet-lllite/blob/main/Annotators/UNet.pth"}),
    lambda state: AnimeFaceUNet(),
)


def network_input(img: np.ndarray) -> np.ndarray:
    """torchvision's Resize(512, bicubic) (on a PIL image: the short side to 512, the long side truncated) and
    ToTensor: 1x3xhxw float32 RGB in [0, 1]."""
    height, width = img.shape[:2]
    short, long = sorted((height, width))
    new_long = int(NETWORK_SIZE * long / short)
    size = (new_long, NETWORK_SIZE) if width >= height else (NETWORK_SIZE, new_long)  # PIL: (width, height)
    pil = Image.fromarray(img)
    if pil.size != size:
        pil = pil.resize(size, Image.BICUBIC)
    x = np.asarray(pil, dtype=np.float32) / 255.0
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def seg_anime_face(image: np.ndarray, resolution: float, models: AnnotatorModels | None = None) -> np.ndarray:
    """The class map at processing resolution. The network always runs with a 512 short side (as the
    reference's does); its classes are scaled back (nearest) to the padded image before the padding is cut
    off, where the reference crops a map of the network's size (off by the scale unless resolution is 512)."""
    models = default_models() if models is None else models
    img = resize_short_side(hwc3(image), resolution)
    height, width = img.shape[:2]
    padded = pad_to(img)
    net = models.get(ANIME_FACE)
    with models.running(net) as device:
        probabilities = net(torch.from_numpy(network_input(padded)).to(device))
        classes = probabilities.argmax(dim=1, keepdim=True).float()
        classes = F.interpolate(classes, size=padded.shape[:2], mode="nearest")[0, 0].long().cpu().numpy()
    return np.ascontiguousarray(PALETTE[classes[:height, :width]])

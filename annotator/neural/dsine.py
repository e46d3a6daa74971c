"""normal_dsine: Bae & Davison's DSINE (dsine.pt, CVPR 2024), surface normals from an image and a camera,
with the upstream module names.

The camera enters as ray directions: the decoder (weight-standardised convolutions with group norm over an
EfficientNet-B5, the normal_bae encoder) gets the rays' (u, v) at 1/32, 1/16 and 1/8 and keeps every normal
facing the camera ("ray ReLU"). A ConvGRU then refines the 1/8 normals `iterations` times: each pixel's
normal becomes a weighted mean of its 5 x 5 neighbours' normals, each rotated about an axis and by an angle
the network predicts, and every estimate is upsampled x8 by a learnt convex combination of 3 x 3 coarse
normals. The camera comes from the "Fov" slider: focal length = (long side / 2) / tan(fov / 2), principal
point at the centre of the image as processed (the reference takes the size of the unresized input
instead, and shifts the map by the centring padding it never applies).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..util import apply_padded, hwc3, resize_short_side
from .normal_bae import MEAN, STD, EfficientNetB5
from .runtime import AnnotatorModels, default_models, image_tensor
from .weights import NetSpec, WeightFile

PATCH = 5  # neighbourhood the refinement rotates normals from
DOWN = 8  # the refinement's scale
HIDDEN = 64
FEATURES = 64
RAY_EPS = 1e-2
WS_EPS = 1e-5


class WSConv2d(nn.Conv2d):
    """Weight standardisation: each filter centred and divided by its (unbiased) standard deviation + 1e-5."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        w = w - w.mean(dim=(1, 2, 3), keepdim=True)
        w = w / (w.view(w.shape[0], -1).std(dim=1).view(-1, 1, 1, 1) + WS_EPS)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class UpSampleGN(nn.Module):
    """Upsample to the skip's size (bilinear), concatenate, two WS-conv / GroupNorm(8) / LeakyReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self._net = nn.Sequential(WSConv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.LeakyReLU(),
                                  WSConv2d(cout, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.LeakyReLU())

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[2:], mode="bilinear", align_corners=False)
        return self._net(torch.cat([x, skip], dim=1))


def head(cin: int, hidden: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, hidden, 1), nn.ReLU(),
                         nn.Conv2d(hidden, cout, 1))


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv2 = nn.Conv2d(2048 + 2, 2048, 1)
        self.up1 = UpSampleGN(2048 + 176 + 2, 1024)
        self.up2 = UpSampleGN(1024 + 64 + 2, 512)
        self.normal_head = head(512 + 2, 128, 3)
        self.feature_head = head(512 + 2, 128, FEATURES)
        self.hidden_head = head(512 + 2, 128, HIDDEN)

    def forward(self, stages, last, uv32, uv16, uv8):
        x = self.conv2(torch.cat([last, uv32], dim=1))
        x = self.up1(x, torch.cat([stages[4], uv16], dim=1))
        x = self.up2(x, torch.cat([stages[2], uv8], dim=1))
        x = torch.cat([x, uv8], dim=1)
        return F.normalize(self.normal_head(x), dim=1), self.feature_head(x), self.hidden_head(x)


class ConvGRU(nn.Module):
    def __init__(self, hidden: int, cin: int, kernel: int):
        super().__init__()
        self.convz = nn.Conv2d(hidden + cin, hidden, kernel, padding=kernel // 2)
        self.convr = nn.Conv2d(hidden + cin, hidden, kernel, padding=kernel // 2)
        self.convq = nn.Conv2d(hidden + cin, hidden, kernel, padding=kernel // 2)

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        hx = torch.cat([h, x], dim=1)
        z, r = torch.sigmoid(self.convz(hx)), torch.sigmoid(self.convr(hx))
        q = torch.tanh(self.convq(torch.cat([r * h, x], dim=1)))
        return (1 - z) * h + z * q


def ray_relu(normal: torch.Tensor, ray: torch.Tensor, eps: float = RAY_EPS) -> torch.Tensor:
    """The normal with its component along the viewing ray raised to at least `eps` (facing the camera)."""
    cos = torch.cosine_similarity(normal, ray, dim=1).unsqueeze(1)
    return F.normalize(normal + ray * (torch.relu(cos - eps) + eps - cos), dim=1)


def neighbours(x: torch.Tensor, size: int = PATCH) -> torch.Tensor:
    """B x C x size^2 x H x W: each pixel's size x size neighbourhood, borders replicated."""
    b, c, h, w = x.shape
    pad = (size - 1) // 2
    return F.unfold(F.pad(x, (pad, pad, pad, pad), mode="replicate"), size).view(b, c, size * size, h, w)


def convex_upsample(x: torch.Tensor, mask: torch.Tensor, k: int = DOWN) -> torch.Tensor:
    """Each output pixel of a k x k cell: a softmax-weighted mix of the 3 x 3 coarse pixels around its cell."""
    b, c, h, w = x.shape
    weights = torch.softmax(mask.view(b, 1, 9, k, k, h, w), dim=2)
    taps = F.unfold(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3).view(b, c, 9, 1, 1, h, w)
    return (weights * taps).sum(dim=2).permute(0, 1, 4, 2, 5, 3).reshape(b, c, k * h, k * w)


def axis_angle_to_matrix(v: torch.Tensor) -> torch.Tensor:
    """... x 3 rotation vectors (axis times angle) -> ... x 3 x 3 matrices, through the unit quaternion."""
    angle = v.norm(dim=-1, keepdim=True)
    small = angle.abs() < 1e-6
    sin_half_over = torch.where(small, 0.5 - angle * angle / 48, torch.sin(angle * 0.5) / torch.where(small, 1, angle))
    r, i, j, k = torch.unbind(torch.cat([torch.cos(angle * 0.5), v * sin_half_over], dim=-1), -1)
    s = 2.0 / (r * r + i * i + j * j + k * k)
    return torch.stack([1 - s * (j * j + k * k), s * (i * j - k * r), s * (i * k + j * r),
                        s * (i * j + k * r), 1 - s * (i * i + k * k), s * (j * k - i * r),
                        s * (i * k - j * r), s * (j * k + i * r), 1 - s * (i * i + j * j)], -1).view(v.shape + (3,))


def pixel_centres(h: int, w: int, device, dtype) -> torch.Tensor:
    """1 x 3 x h x w: (x + 0.5, y + 0.5, 1)."""
    y, x = torch.meshgrid(torch.arange(h, device=device, dtype=dtype), torch.arange(w, device=device, dtype=dtype),
                          indexing="ij")
    return torch.stack([x + 0.5, y + 0.5, torch.ones_like(x)])[None]


class Camera:
    """Focal lengths and principal point (pixels of the network input), scaled to a grid of h x w."""

    def __init__(self, intrinsics: torch.Tensor, height: int, width: int):
        self.k, self.height, self.width = intrinsics, height, width

    def at(self, h: int, w: int):
        k = self.k
        sx, sy = w / self.width, h / self.height
        return (k[:, 0, 0] * sx).view(-1, 1, 1, 1), (k[:, 0, 2] * sx).view(-1, 1, 1, 1), \
            (k[:, 1, 1] * sy).view(-1, 1, 1, 1), (k[:, 1, 2] * sy).view(-1, 1, 1, 1)

    def rays(self, h: int, w: int, device, dtype, unit: bool) -> torch.Tensor:
        fu, cu, fv, cv = self.at(h, w)
        coords = pixel_centres(h, w, device, dtype).repeat(self.k.shape[0], 1, 1, 1)
        ray = torch.cat([(coords[:, :1] - cu) / fu, (coords[:, 1:2] - cv) / fv, coords[:, 2:]], dim=1)
        return F.normalize(ray, dim=1) if unit else ray[:, :2]


class Dsine(nn.Module):
    """ImageNet-normalised RGB (sides multiples of 32) and 3 x 3 intrinsics -> unit normals at full size."""

    def __init__(self, _state=None):
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.original_model = EfficientNetB5()
        self.decoder = Decoder()
        self.gru = ConvGRU(HIDDEN, FEATURES + 2, PATCH)
        self.prob_head = head(HIDDEN + 2, 64, PATCH * PATCH)  # weight of each neighbour
        self.xy_head = head(HIDDEN + 2, 64, PATCH * PATCH * 2)  # rotation axis of each neighbour (in the image)
        self.angle_head = head(HIDDEN + 2, 64, PATCH * PATCH)  # rotation angle of each neighbour
        self.up_prob_head = head(HIDDEN + 2, 64, 9 * DOWN * DOWN)  # convex upsampling weights

    def upsample(self, h, normal, uv8):
        return F.normalize(convex_upsample(normal, self.up_prob_head(torch.cat([h, uv8], dim=1))), dim=1)

    def refine(self, h, features, normal, camera: Camera, uv8, ray8):
        b, _, hh, ww = normal.shape
        fu, cu, fv, cv = camera.at(hh, ww)
        h = self.gru(h, features)
        hu = torch.cat([h, uv8], dim=1)
        weight = torch.sigmoid(self.prob_head(hu)).unsqueeze(1)
        near = neighbours(normal)
        xs, ys = torch.split(self.xy_head(hu), [PATCH * PATCH] * 2, dim=1)
        xy = F.normalize(torch.stack([xs, ys], dim=1), dim=1)
        angle = torch.sigmoid(self.angle_head(hu)).unsqueeze(1) * np.pi
        coords = neighbours(pixel_centres(hh, ww, normal.device, normal.dtype))
        # The rotation axis: the in-plane direction xy, lifted onto the neighbour's tangent plane.
        du, dv = xy[:, 0] / fu, xy[:, 1] / fv
        tu, tv = (coords[:, 0] + xy[:, 0] - cu) / fu, (coords[:, 1] + xy[:, 1] - cv) / fv
        nx, ny, nz = near[:, 0], near[:, 1], near[:, 2]
        denom = tu * nx + tv * ny + nz
        denom = torch.where(denom.abs() < 1e-8, 1e-8 * torch.sign(denom), denom)
        dz = -(du * nx + dv * ny) / denom
        axes = F.normalize(torch.stack([du + dz * tu, dv + dz * tv, dz], dim=1), dim=1)
        axes = torch.where(torch.isfinite(axes).all(dim=1, keepdim=True), axes, torch.zeros_like(axes))
        rotation = axis_angle_to_matrix((axes * angle).permute(0, 2, 3, 4, 1))
        rotated = (rotation @ near.permute(0, 2, 3, 4, 1).unsqueeze(-1)).squeeze(-1).permute(0, 4, 1, 2, 3)
        rotated = F.normalize(rotated, dim=1)
        rotated = torch.stack([ray_relu(rotated[:, :, i], ray8) for i in range(rotated.shape[2])], dim=2)
        normal = F.normalize((weight * rotated).sum(dim=2), dim=1)
        return h, normal, self.upsample(h, normal, uv8)

    def forward(self, x: torch.Tensor, intrinsics: torch.Tensor, iterations: int = 5) -> torch.Tensor:
        stages, last = self.encoder.original_model(x)
        height, width = x.shape[2:]
        intrinsics = intrinsics.clone()
        intrinsics[:, :2, 2] += 0.5  # upstream's shift of the principal point to pixel centres
        camera = Camera(intrinsics.to(x.dtype), height, width)
        uv = [camera.rays(height // s, width // s, x.device, x.dtype, unit=False) for s in (32, 16, 8)]
        ray8 = camera.rays(height // 8, width // 8, x.device, x.dtype, unit=True)
        normal, features, h = self.decoder(stages, last, *uv)
        normal = ray_relu(normal, ray8)
        features = torch.cat([features, uv[2]], dim=1)
        out = self.upsample(h, normal, uv[2])
        for _ in range(iterations):
            h, normal, out = self.refine(h, features, normal, camera, uv[2], ray8)
        return out


DSINE = NetSpec("DSINE", WeightFile(("dsine.pt",), "normal_dsine", urls={
    "dsine.pt": "https://huggingface.co/bdsqlsz/qinglong_controlnet-lllite/blob/main/Annotators/dsine.pt"}), Dsine)


def intrinsics_from_fov(fov: float, height: int, width: int) -> torch.Tensor:
    """1 x 3 x 3: focal (long side / 2) / tan(fov / 2) in both directions, principal point at the centre."""
    focal = (max(height, width) / 2.0) / np.tan(np.deg2rad(fov / 2.0))
    return torch.tensor([[[focal, 0, width / 2.0 - 0.5], [0, focal, height / 2.0 - 0.5], [0, 0, 1]]],
                        dtype=torch.float32)


def dsine_map(img: np.ndarray, fov: float, iterations: int, size: tuple[int, int],
              models: AnnotatorModels | None = None) -> np.ndarray:
    """HxWx3 uint8 normals (x, y, z from [-1, 1] to 0..255) of a padded RGB image whose content is `size`."""
    models = default_models() if models is None else models
    net = models.get(DSINE)
    with models.running(net) as device:
        x = (image_tensor(img, device) / 255.0 - MEAN.to(device)) / STD.to(device)
        normal = net(x, intrinsics_from_fov(fov, *size).to(device), iterations)[0]
        normal = ((normal + 1) * 0.5).clip(0, 1).permute(1, 2, 0).float().cpu().numpy()
    return (normal * 255.0).clip(0, 255).astype(np.uint8)


def normal_dsine(image: np.ndarray, resolution: float, fov: float = 60.0, iterations: float = 5,
                 models: AnnotatorModels | None = None) -> np.ndarray:
    img = resize_short_side(hwc3(image), resolution)
    return apply_padded(img, lambda x: dsine_map(x, float(fov), int(iterations), img.shape[:2], models))

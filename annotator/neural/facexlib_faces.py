"""facexlib: the face-features image PuLID encodes - the face nearest the image centre found by RetinaFace
(detection_Resnet50_Final.pth), aligned by its five landmarks to facexlib's 512 x 512 template, then parsed by
BiSeNet (parsing_bisenet.pth): background, ears, earring, neck, necklace, clothes and hat turn white, the rest
(skin, brows, eyes, glasses, nose, mouth, lips, hair) grey.

Written in plain torch in the layout of xinntao/facexlib's published files (the facexlib package itself
imports torchvision, which would pull a CUDA torch):
- RetinaFace: torchvision's ResNet-50 (layer2-4 at strides 8, 16, 32), an FPN to 256 channels, an SSH context
  module per level, and per anchor (2 per cell, sizes 16/32, 64/128, 256/512) a face score, a box and five
  landmarks, decoded SSD-style against the priors (variances 0.1, 0.2); BGR minus (104, 117, 123) in.
- BiSeNet: a ResNet-18 context path with attention refinement, a feature fusion module, 19 face classes.

The pipeline is the reference's (scripts/preprocessor/pulid.py with facexlib's FaceRestoreHelper): the image
scaled to a 512 short side and edge-padded to a multiple of 64; faces scoring over 0.97 after NMS (IoU 0.4);
the centre-most one warped with the similarity OpenCV fits to the landmarks (LMEDS), grey (135, 133, 132)
outside the image. Where the reference fails with "facexlib align face fail", no face is a 422 naming the image.
"""

from __future__ import annotations

from itertools import product

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lib_controlnet.errors import InputError

from ..util import hwc3, resize_short_side
from .runtime import AnnotatorModels, default_models
from .uniformer import pad_to
from .weights import NetSpec, WeightFile

FACEXLIB_RELEASES = "https://github.com/xinntao/facexlib/releases/download"
WORK_RESOLUTION = 512  # the reference's hidden Resolution slider stays at its default
BGR_MEAN = (104.0, 117.0, 123.0)
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
STEPS = (8, 16, 32)
VARIANCES = (0.1, 0.2)
FACE_SCORE = 0.97
NMS_IOU = 0.4
FACE_SIZE = 512
# facexlib's 5-point template (eyes, nose, mouth corners) for a 512 x 512 face
FACE_TEMPLATE = np.array([[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935],
                          [201.26117, 371.41043], [313.08905, 371.15118]])
BORDER_GREY = (135, 133, 132)
PARSE_MEAN = np.array([0.485, 0.456, 0.406])
PARSE_STD = np.array([0.229, 0.224, 0.225])
# BiSeNet's CelebAMask-HQ classes painted white (the reference's list [0, 16, 18, 7, 8, 9, 14, 15]): background,
# left and right ear, earring, neck, necklace, clothes, hat.
WHITE_CLASSES = (0, 7, 8, 9, 14, 15, 16, 18)


# --- torchvision-layout ResNets ----------------------------------------------------------------------------
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        if cin != cout or stride != 1:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        shortcut = self.downsample(x) if hasattr(self, "downsample") else x
        return F.relu(shortcut + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class Bottleneck(nn.Module):
    """torchvision's ResNet v1.5 bottleneck (the stride on the 3x3)."""

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        if cin != cout or stride != 1:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        shortcut = self.downsample(x) if hasattr(self, "downsample") else x
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        return F.relu(shortcut + self.bn3(self.conv3(y)))


class ResNet(nn.Module):
    """Stem (7x7/2, max pool /2) and four stages; returns the outputs of layer2, layer3, layer4."""

    def __init__(self, block, blocks: tuple[int, ...], widths=(64, 128, 256, 512)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        for i, (count, width) in enumerate(zip(blocks, widths), start=1):
            layers = []
            for j in range(count):
                layers.append(block(cin, width, 2 if j == 0 and i > 1 else 1))
                cin = width * (4 if block is Bottleneck else 1)
            self.add_module(f"layer{i}", nn.Sequential(*layers))

    def forward(self, x) -> list[torch.Tensor]:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = self.layer1(x)
        out = []
        for layer in (self.layer2, self.layer3, self.layer4):
            x = layer(x)
            out.append(x)
        return out


# --- RetinaFace ----------------------------------------------------------------------------------------------
def _conv_bn(cin: int, cout: int, kernel: int = 3, relu: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, kernel, 1, kernel // 2, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU()) if relu else nn.Sequential(*layers)


class FPN(nn.Module):
    def __init__(self, channels=(512, 1024, 2048), out: int = 256):
        super().__init__()
        self.output1, self.output2, self.output3 = (_conv_bn(c, out, 1) for c in channels)
        self.merge1, self.merge2 = _conv_bn(out, out), _conv_bn(out, out)

    def forward(self, features):
        o1, o2, o3 = self.output1(features[0]), self.output2(features[1]), self.output3(features[2])
        o2 = self.merge2(o2 + F.interpolate(o3, size=o2.shape[2:], mode="nearest"))
        o1 = self.merge1(o1 + F.interpolate(o2, size=o1.shape[2:], mode="nearest"))
        return [o1, o2, o3]


class SSH(nn.Module):
    """Context module: 3x3, 5x5 (two 3x3) and 7x7 (three 3x3) receptive fields, concatenated, ReLU."""

    def __init__(self, channels: int = 256):
        super().__init__()
        self.conv3X3 = _conv_bn(channels, channels // 2, relu=False)
        self.conv5X5_1 = _conv_bn(channels, channels // 4)
        self.conv5X5_2 = _conv_bn(channels // 4, channels // 4, relu=False)
        self.conv7X7_2 = _conv_bn(channels // 4, channels // 4)
        self.conv7x7_3 = _conv_bn(channels // 4, channels // 4, relu=False)

    def forward(self, x):
        c5 = self.conv5X5_1(x)
        return F.relu(torch.cat([self.conv3X3(x), self.conv5X5_2(c5), self.conv7x7_3(self.conv7X7_2(c5))], dim=1))


def _heads(outputs_per_anchor: int, channels: int = 256, anchors: int = 2) -> nn.ModuleList:
    heads = nn.ModuleList()
    for _ in range(3):
        head = nn.Module()
        head.conv1x1 = nn.Conv2d(channels, anchors * outputs_per_anchor, 1)
        heads.append(head)
    return heads


class RetinaFace(nn.Module):
    """BGR minus the mean (1 x 3 x H x W) -> per prior: box offsets (4), face/background logits (2), landmark
    offsets (10)."""

    def __init__(self):
        super().__init__()
        self.body = ResNet(Bottleneck, (3, 4, 6, 3))
        self.fpn = FPN()
        self.ssh1, self.ssh2, self.ssh3 = SSH(), SSH(), SSH()
        self.ClassHead = _heads(2)
        self.BboxHead = _heads(4)
        self.LandmarkHead = _heads(10)

    def forward(self, x):
        levels = [ssh(f) for ssh, f in zip((self.ssh1, self.ssh2, self.ssh3), self.fpn(self.body(x)))]

        def run(heads, size):
            return torch.cat([h.conv1x1(f).permute(0, 2, 3, 1).reshape(f.shape[0], -1, size)
                              for h, f in zip(heads, levels)], dim=1)

        return run(self.BboxHead, 4), run(self.ClassHead, 2), run(self.LandmarkHead, 10)


def priors(height: int, width: int) -> torch.Tensor:
    """(cx, cy, w, h) of every anchor, normalised to the image, in the heads' order (cell row-major, then size)."""
    anchors = []
    for step, sizes in zip(STEPS, MIN_SIZES):
        for i, j in product(range(-(-height // step)), range(-(-width // step))):
            for size in sizes:
                anchors.append(((j + 0.5) * step / width, (i + 0.5) * step / height, size / width, size / height))
    return torch.tensor(anchors, dtype=torch.float32)


def decode(loc: torch.Tensor, landmarks: torch.Tensor, anchors: torch.Tensor):
    """SSD-style decoding: (N x 4 xyxy boxes, N x 10 landmarks), normalised to the image."""
    centre = anchors[:, :2] + loc[:, :2] * VARIANCES[0] * anchors[:, 2:]
    size = anchors[:, 2:] * torch.exp(loc[:, 2:] * VARIANCES[1])
    boxes = torch.cat([centre - size / 2, centre + size / 2], dim=1)
    points = anchors[:, None, :2] + landmarks.view(-1, 5, 2) * VARIANCES[0] * anchors[:, None, 2:]
    return boxes, points.reshape(-1, 10)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """torchvision's NMS (continuous areas; suppress IoU > iou), highest score first."""
    x1, y1, x2, y2 = boxes.T.astype(np.float64)
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        w = np.clip(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0, None)
        inter = w * h
        order = rest[inter / (areas[best] + areas[rest] - inter) <= iou]
    return keep


def detect_faces(net: RetinaFace, bgr: np.ndarray, device: torch.device) -> np.ndarray:
    """K x 15 (box, score, five landmarks) in pixels, faces scoring over 0.97 after NMS, best first."""
    height, width = bgr.shape[:2]
    x = torch.from_numpy(bgr.astype(np.float32).transpose(2, 0, 1)[None].copy())
    x = x - torch.tensor(BGR_MEAN).view(1, 3, 1, 1)
    loc, conf, landmarks = net(x.to(device))
    boxes, points = decode(loc[0].float().cpu(), landmarks[0].float().cpu(), priors(height, width))
    boxes = (boxes * torch.tensor([width, height] * 2)).numpy()
    points = (points * torch.tensor([width, height] * 5)).numpy()
    scores = F.softmax(conf[0].float(), dim=-1)[:, 1].cpu().numpy()
    keep = scores > FACE_SCORE
    boxes, points, scores = boxes[keep], points[keep], scores[keep]
    order = np.argsort(-scores, kind="stable")
    boxes, points, scores = boxes[order], points[order], scores[order]
    kept = nms(boxes.astype(np.float32), scores.astype(np.float32), NMS_IOU)
    return np.concatenate([boxes, scores[:, None], points], axis=1)[kept]


def centre_face(faces: np.ndarray, height: int, width: int) -> np.ndarray:
    """The face whose box centre is nearest the image centre (the first of equals)."""
    centres = (faces[:, 0:2] + faces[:, 2:4]) / 2
    distances = np.linalg.norm(centres - np.array([width / 2, height / 2]), axis=1)
    return faces[int(np.argmin(distances))]


def align_face(bgr: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    matrix = cv2.estimateAffinePartial2D(landmarks.reshape(5, 2), FACE_TEMPLATE, method=cv2.LMEDS)[0]
    return cv2.warpAffine(bgr, matrix, (FACE_SIZE, FACE_SIZE), borderMode=cv2.BORDER_CONSTANT,
                          borderValue=BORDER_GREY)


# --- BiSeNet ---------------------------------------------------------------------------------------------------
class ConvBnRelu(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, 1, kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class AttentionRefinement(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = ConvBnRelu(cin, cout)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x):
        feat = self.conv(x)
        return feat * torch.sigmoid(self.bn_atten(self.conv_atten(feat.mean(dim=(2, 3), keepdim=True))))


class ContextPath(nn.Module):
    def __init__(self):
        super().__init__()
        self.resnet = ResNet(BasicBlock, (2, 2, 2, 2))
        self.arm16 = AttentionRefinement(256, 128)
        self.arm32 = AttentionRefinement(512, 128)
        self.conv_head32 = ConvBnRelu(128, 128)
        self.conv_head16 = ConvBnRelu(128, 128)
        self.conv_avg = ConvBnRelu(512, 128, 1)

    def forward(self, x):
        feat8, feat16, feat32 = self.resnet(x)
        avg = self.conv_avg(feat32.mean(dim=(2, 3), keepdim=True))
        up32 = self.arm32(feat32) + F.interpolate(avg, size=feat32.shape[2:], mode="nearest")
        up32 = self.conv_head32(F.interpolate(up32, size=feat16.shape[2:], mode="nearest"))
        up16 = self.arm16(feat16) + up32
        up16 = self.conv_head16(F.interpolate(up16, size=feat8.shape[2:], mode="nearest"))
        return feat8, up16, up32


class FeatureFusion(nn.Module):
    def __init__(self, cin: int = 256, cout: int = 256):
        super().__init__()
        self.convblk = ConvBnRelu(cin, cout, 1)
        self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)

    def forward(self, spatial, context):
        feat = self.convblk(torch.cat([spatial, context], dim=1))
        attention = torch.sigmoid(self.conv2(F.relu(self.conv1(feat.mean(dim=(2, 3), keepdim=True)))))
        return feat * attention + feat


class BiSeNetOutput(nn.Module):
    def __init__(self, cin: int, mid: int, classes: int):
        super().__init__()
        self.conv = ConvBnRelu(cin, mid)
        self.conv_out = nn.Conv2d(mid, classes, 1, bias=False)

    def forward(self, x):
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    """ImageNet-normalised RGB -> 19 face-part logits at the input size (the main output; the two auxiliary
    heads are part of the file and used only in training)."""

    def __init__(self, classes: int = 19):
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusion()
        self.conv_out = BiSeNetOutput(256, 256, classes)
        self.conv_out16 = BiSeNetOutput(128, 64, classes)
        self.conv_out32 = BiSeNetOutput(128, 64, classes)

    def forward(self, x):
        feat8, cp8, _cp16 = self.cp(x)
        out = self.conv_out(self.ffm(feat8, cp8))
        return F.interpolate(out, size=x.shape[2:], mode="bilinear", align_corners=True)


RETINAFACE = NetSpec("RetinaFace ResNet-50", WeightFile(
    ("detection_Resnet50_Final.pth",), "facexlib",
    urls={"detection_Resnet50_Final.pth": f"{FACEXLIB_RELEASES}/v0.1.0/detection_Resnet50_Final.pth"}),
    lambda state: RetinaFace())
BISENET = NetSpec("BiSeNet face parsing", WeightFile(
    ("parsing_bisenet.pth",), "facexlib",
    urls={"parsing_bisenet.pth": f"{FACEXLIB_RELEASES}/v0.2.0/parsing_bisenet.pth"}),
    lambda state: BiSeNet())


def face_features_tensor(face_rgb: np.ndarray, parser: BiSeNet, device: torch.device) -> torch.Tensor:
    """The aligned face in grey (0.299 R + 0.587 G + 0.114 B) with the WHITE_CLASSES white: [1, 3, H, W] in
    [0, 1] on `device` (what the reference hands PuLID's EVA-CLIP, `return_tensor=True`)."""
    x = torch.from_numpy(face_rgb.astype(np.float32) / 255.0).permute(2, 0, 1)[None].to(device)
    normalised = (x - torch.tensor(PARSE_MEAN, dtype=x.dtype, device=device).view(1, 3, 1, 1)) / torch.tensor(
        PARSE_STD, dtype=x.dtype, device=device).view(1, 3, 1, 1)
    classes = parser(normalised).argmax(dim=1, keepdim=True)
    white = torch.zeros_like(classes, dtype=torch.bool)
    for c in WHITE_CLASSES:
        white |= classes == c
    grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).repeat(1, 3, 1, 1)
    return torch.where(white, torch.ones_like(grey), grey)


def face_features(face_rgb: np.ndarray, parser: BiSeNet, device: torch.device) -> np.ndarray:
    """face_features_tensor as an HxWx3 image, truncated to uint8."""
    out = face_features_tensor(face_rgb, parser, device)
    return (out[0].permute(1, 2, 0) * 255.0).to(torch.uint8).cpu().numpy()


def aligned_face(image: np.ndarray, detector: RetinaFace, device: torch.device) -> np.ndarray:
    """The centre-most face of `image`, aligned to 512 x 512 RGB (422 naming the image when there is none)."""
    img = pad_to(resize_short_side(hwc3(image), WORK_RESOLUTION))
    bgr = np.ascontiguousarray(img[:, :, ::-1])
    faces = detect_faces(detector, bgr, device)
    if not len(faces):
        raise InputError("facexlib found no face in the image", field="image")
    face = centre_face(faces, *bgr.shape[:2])
    return np.ascontiguousarray(align_face(bgr, face[5:15])[:, :, ::-1])


def facexlib(image: np.ndarray, resolution: float = WORK_RESOLUTION, models: AnnotatorModels | None = None
             ) -> np.ndarray:
    """The 512 x 512 face-features image of the centre-most face (`resolution` is not used: the reference's
    slider is hidden, and the face is cropped to 512 x 512 whatever the input size)."""
    models = default_models() if models is None else models
    detector, parser = models.get(RETINAFACE), models.get(BISENET)
    with models.running(detector, parser) as device:
        return face_features(aligned_face(image, detector, device), parser, device)


def facexlib_tensor(image: np.ndarray, models: AnnotatorModels | None = None) -> torch.Tensor:
    """The same face-features image unrounded, [1, 3, 512, 512] float32 in [0, 1] on the CPU (PuLID's input)."""
    models = default_models() if models is None else models
    detector, parser = models.get(RETINAFACE), models.get(BISENET)
    with models.running(detector, parser) as device:
        return face_features_tensor(aligned_face(image, detector, device), parser, device).float().cpu()

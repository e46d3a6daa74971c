"""The CMU OpenPose networks (body, hand, face) in the layout of the published files.

All three are a VGG-19 trunk followed by cascaded "CPM" stages, each stage refining the previous stage's
maps from the trunk features. The files (body_pose_model.pth, hand_pose_model.pth, facenet.pth in
lllyasviel/Annotators) store every convolution under its Caffe layer name at the top level ("conv1_1.weight",
"Mconv3_stage4_L2.bias", ...), so each convolution here is an attribute with exactly that name.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

POOL = "pool"

# (name, in, out, kernel). Pooling (2x2, stride 2) after conv1_2, conv2_2 and conv3_4.
_VGG_HEAD = [("conv1_1", 3, 64, 3), ("conv1_2", 64, 64, 3), POOL,
             ("conv2_1", 64, 128, 3), ("conv2_2", 128, 128, 3), POOL,
             ("conv3_1", 128, 256, 3), ("conv3_2", 256, 256, 3), ("conv3_3", 256, 256, 3), ("conv3_4", 256, 256, 3),
             POOL, ("conv4_1", 256, 512, 3), ("conv4_2", 512, 512, 3)]
BODY_TRUNK = _VGG_HEAD + [("conv4_3_CPM", 512, 256, 3), ("conv4_4_CPM", 256, 128, 3)]
HAND_FACE_TRUNK = _VGG_HEAD + [("conv4_3", 512, 512, 3), ("conv4_4", 512, 512, 3), ("conv5_1", 512, 512, 3),
                               ("conv5_2", 512, 512, 3), ("conv5_3_CPM", 512, 128, 3)]
TRUNK_CHANNELS = 128


def _refinement(suffix: str, in_channels: int, out_channels: int) -> list[tuple[str, int, int, int]]:
    """A stage 2..6 branch: five 7x7 convolutions, then two 1x1."""
    return ([(f"Mconv1_{suffix}", in_channels, 128, 7)]
            + [(f"Mconv{i}_{suffix}", 128, 128, 7) for i in range(2, 6)]
            + [(f"Mconv6_{suffix}", 128, 128, 1), (f"Mconv7_{suffix}", 128, out_channels, 1)])


class CascadedPoseNet(nn.Module):
    """Trunk, then stages of parallel branches. A stage's input is its predecessor's branch outputs
    concatenated with the trunk features; every convolution but each branch's last is followed by ReLU."""

    def __init__(self, trunk, stages: list[list[list[tuple[str, int, int, int]]]], relu_after_last=()):
        super().__init__()
        self.trunk = trunk
        self.stages = stages
        self.relu_after_last = set(relu_after_last)
        for layer in trunk + [layer for stage in stages for branch in stage for layer in branch]:
            if layer != POOL:
                name, cin, cout, k = layer
                self.add_module(name, nn.Conv2d(cin, cout, k, padding=k // 2))

    def _branch(self, layers, x):
        for index, layer in enumerate(layers):
            if layer == POOL:
                x = F.max_pool2d(x, 2, 2)
                continue
            x = getattr(self, layer[0])(x)
            if index < len(layers) - 1 or layer[0] in self.relu_after_last:
                x = F.relu(x)
        return x

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """Per stage, the list of branch outputs."""
        features = self._trunk(x)
        outputs, previous = [], []
        for stage in self.stages:
            stage_in = torch.cat(previous + [features], 1) if previous else features
            previous = [self._branch(branch, stage_in) for branch in stage]
            outputs.append(previous)
        return outputs

    def _trunk(self, x):
        for layer in self.trunk:
            x = F.max_pool2d(x, 2, 2) if layer == POOL else F.relu(getattr(self, layer[0])(x))
        return x


PAF_CHANNELS = 38  # 19 limbs x (dx, dy)
BODY_HEATMAPS = 19  # 18 joints + background
HAND_HEATMAPS = 22  # 21 joints + background
FACE_HEATMAPS = 71  # 70 points + background


def body_net(_state=None) -> CascadedPoseNet:
    """Six stages with a PAF branch (L1) and a heatmap branch (L2)."""
    first = [[(f"conv5_{i}_CPM_L{b}", TRUNK_CHANNELS, TRUNK_CHANNELS, 3) for i in (1, 2, 3)]
             + [(f"conv5_4_CPM_L{b}", TRUNK_CHANNELS, 512, 1), (f"conv5_5_CPM_L{b}", 512, out, 1)]
             for b, out in ((1, PAF_CHANNELS), (2, BODY_HEATMAPS))]
    stage_in = PAF_CHANNELS + BODY_HEATMAPS + TRUNK_CHANNELS
    later = [[_refinement(f"stage{s}_L{b}", stage_in, out) for b, out in ((1, PAF_CHANNELS), (2, BODY_HEATMAPS))]
             for s in range(2, 7)]
    # The reference's layer table names Mconv7_stage6_L1 twice in its "no ReLU" list and never
    # Mconv7_stage6_L2, so the final heatmaps pass through a ReLU; the published results include it.
    return CascadedPoseNet(BODY_TRUNK, [first] + later, relu_after_last=("Mconv7_stage6_L2",))


def _single_branch_net(heatmaps: int) -> CascadedPoseNet:
    first = [[("conv6_1_CPM", TRUNK_CHANNELS, 512, 1), ("conv6_2_CPM", 512, heatmaps, 1)]]
    later = [[_refinement(f"stage{s}", heatmaps + TRUNK_CHANNELS, heatmaps)] for s in range(2, 7)]
    return CascadedPoseNet(HAND_FACE_TRUNK, [first] + later)


def hand_net(_state=None) -> CascadedPoseNet:
    return _single_branch_net(HAND_HEATMAPS)


def face_net(_state=None) -> CascadedPoseNet:
    return _single_branch_net(FACE_HEATMAPS)

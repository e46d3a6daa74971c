"""recolor_luminance / recolor_intensity: the decoded image keeps the control's brightness exactly.

The recolor ControlNet colourises a grey picture; afterwards the image's LAB L (luminance) or HSV V
(intensity) channel is replaced by the control map's first channel, as the reference does.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from . import ControlRequest, Controls

CONVERSIONS = {"luminance": (cv2.COLOR_RGB2LAB, cv2.COLOR_LAB2RGB, 0), "intensity": (cv2.COLOR_RGB2HSV,
                                                                                      cv2.COLOR_HSV2RGB, 2)}


class Recolor:
    def __init__(self, maps: list[np.ndarray], channel_of: str):
        self.feeds = [np.ascontiguousarray(m[:, :, 0]) for m in maps]
        self.to_space, self.from_space, self.channel = CONVERSIONS[channel_of]

    def __call__(self, image: torch.Tensor, index: int) -> torch.Tensor:
        feed = self.feeds[index if index < len(self.feeds) else 0]
        h = (image.detach().float().cpu().numpy().transpose(1, 2, 0) * 255).clip(0, 255).astype(np.uint8)
        if feed.shape != h.shape[:2]:  # another extension changed the output size: fit the feed to it
            feed = cv2.resize(feed, (h.shape[1], h.shape[0]), interpolation=cv2.INTER_LINEAR)
        converted = cv2.cvtColor(h, self.to_space)
        converted[:, :, self.channel] = feed
        rgb = cv2.cvtColor(converted, self.from_space).astype(np.float32) / 255.0
        return torch.from_numpy(rgb.transpose(2, 0, 1)).clamp(0, 1).to(image)


def build(request: ControlRequest) -> Controls:
    kind = "luminance" if "luminance" in request.module else "intensity"
    return Controls(post=[Recolor(request.maps_hires or request.maps, kind)])

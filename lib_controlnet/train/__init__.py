"""Training ControlNets: `python -m lib_controlnet.train` (see `trainer`), and the toy models the standalone host
embeds (`toy`). Never imported by the hosts' runtime.

Modules: pairs (the tutorial's folder layout), schedule (the base's noise schedule), controlnet_init (the
paper's initialisation from the base encoder), inject (residuals into the frozen UNet, with gradients), loop
(AdamW, accumulation, precision, progress, resume), trainer (the ControlNet run), edges (edge F1: how well an
image follows a canny map).
"""

from .trainer import ControlNetTrainer, ControlNetTraining, train_controlnet

__all__ = ["ControlNetTrainer", "ControlNetTraining", "train_controlnet"]

"""reference_only / reference_adain / reference_adain+attn: no model — the UNet looks at a reference image.

Per UNet call, for each reference unit (the reference extension's method, through module hooks only):

1. write: the reference latent VAE(hint), noised to this call's timestep (q_sample, seeded noise), goes
   through the UNet once more with every unit's contributions suspended. Self-attention blocks whose layer
   weight is below the unit's weight bank their input (reference_only, +attn); the selected blocks bank
   their output's per-channel mean and variance (adain);
2. read (the real call): those self-attentions attend to [their own tokens, banked tokens]; those blocks'
   outputs are renormalised to the banked statistics (AdaIN). With style fidelity f, the uncond rows are
   mixed back towards the plain result: `f·out_c + (1 − f)·out_uc`, where out_c equals out_uc but for the
   uncond rows, which keep the plain computation.

Layer weights (the reference's): self-attention blocks sorted by width, widest first, block i of N has
weight i/N; group-norm points are the middle block (0), input blocks 4, 5, 7, 8, 10, 11 (SDXL: 4, 5, 7, 8)
at 1 − k/K, output blocks 0–7 (SDXL: 0–5) at k/K, all doubled. A unit writes where its weight exceeds the
layer's. Style fidelity is threshold_a, cubed on SDXL, 1 in "ControlNet is more important" mode, 0 in
"My prompt is more important" mode and in the hires pass.

Deliberate differences: the write passes never read banks (the reference lets a later reference_only
unit's write pass consume an earlier adain unit's statistics), and the reference noise is drawn from a
generator seeded by the generation seed, so a reference unit's images are reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

import torch
from torch import nn

from ..enums import ControlMode
from ..hook.call import CallInfo, UNetCall
from ..hook.effect import Effect, ModuleHooks
from ..units.hint_size import hint_tensor, stack_hints
from . import ControlRequest, Controls
from .latent_hint import LatentHint
from .schedule import coefficients, q_sample
from .window import Window

ATTENTION_MODULES = ("reference_only", "reference_adain+attn")
ADAIN_MODULES = ("reference_adain", "reference_adain+attn")
EPS = 1e-6


def transformer_blocks(unet: nn.Module) -> list[nn.Module]:
    """ldm/sgm BasicTransformerBlocks (self-attention attn1 on norm1's output), widest first, stable."""
    blocks = [m for m in unet.modules() if all(hasattr(m, a) for a in ("attn1", "attn2", "norm1", "ff"))]
    return sorted(blocks, key=lambda b: -b.norm1.normalized_shape[0])


def group_norm_points(unet: nn.Module) -> list[tuple[nn.Module, float]]:
    sdxl = len(unet.input_blocks) == 9
    inputs = [4, 5, 7, 8] if sdxl else [4, 5, 7, 8, 10, 11]
    outputs = list(range(6 if sdxl else 8))
    points = [(unet.middle_block, 0.0)]
    points += [(unet.input_blocks[i], 1.0 - k / len(inputs)) for k, i in enumerate(inputs)]
    points += [(unet.output_blocks[i], k / len(outputs)) for k, i in enumerate(outputs)]
    return [(m, 2.0 * w) for m, w in points]


class _Bank:
    def __init__(self, weight: float):
        self.weight = weight
        self.items: list = []
        self.fidelities: list[float] = []
        self.reading = None  # (x_norm1, fidelity) between attn1's pre-hook and its forward hook

    def fidelity(self) -> float:
        return sum(self.fidelities) / len(self.fidelities)

    def clear(self) -> None:
        self.items, self.fidelities, self.reading = [], [], None


class ReferenceBanks:
    """The hooks and banks all reference units of one hook share (registered once, see ModuleHooks.shared)."""

    def __init__(self, hooks: ModuleHooks):
        self.hooks = hooks
        self.owner: UNetCall | None = None  # the call the banks were written for
        self.writing = False
        self.attn_weight: float | None = None  # the writing unit's weight, if it writes attention
        self.gn_weight: float | None = None  # ... if it writes group-norm statistics
        self.fidelity = 0.0
        self._inner = 0
        blocks = transformer_blocks(hooks.unet)
        self.attention = {}
        for i, block in enumerate(blocks):
            if getattr(block, "disable_self_attn", False):
                continue  # attn1 is a cross-attention there: nothing to reference
            bank = self.attention[block.attn1] = _Bank(i / len(blocks))
            hooks.forward_pre(block.attn1, self._attn_pre(bank), with_kwargs=True)
            hooks.forward(block.attn1, self._attn_post(bank), with_kwargs=True)
        self.norms = {}
        for module, weight in group_norm_points(hooks.unet):
            bank = self.norms[module] = _Bank(weight)
            hooks.forward(module, self._adain(bank))

    # --- phases ------------------------------------------------------------------------------------------
    def start(self, call: UNetCall) -> None:
        for bank in (*self.attention.values(), *self.norms.values()):
            bank.clear()
        self.owner = call

    @contextmanager
    def write(self, attn_weight: float | None, gn_weight: float | None, fidelity: float):
        self.writing, self.attn_weight, self.gn_weight, self.fidelity = True, attn_weight, gn_weight, fidelity
        try:
            with self.hooks.suspended():
                yield
        finally:
            self.writing, self.attn_weight, self.gn_weight = False, None, None

    def _reading(self) -> bool:
        return not self.writing and not self._inner and self.owner is not None and self.owner is self.hooks.current

    def _uncond_rows(self, batch: int) -> list[int]:
        rows = self.owner.info.cond_rows if self.owner is not None else None
        return [] if rows is None else [i for i in range(batch) if i not in rows]

    # --- module hooks ------------------------------------------------------------------------------------
    def _attn_pre(self, bank: _Bank):
        def pre(module, args, kwargs):
            if self._inner:
                return None
            x_norm1 = args[0]
            if self.writing:
                if self.attn_weight is not None and self.attn_weight > bank.weight:
                    bank.items.append(x_norm1.detach().clone())
                    bank.fidelities.append(self.fidelity)
                return None
            if not bank.items or not self._reading():
                return None
            bank.reading = (x_norm1, bank.fidelity())
            context = torch.cat([x_norm1, *bank.items], dim=1)
            bank.items, bank.fidelities = [], []
            return args, {**kwargs, "context": context}

        return pre

    def _attn_post(self, bank: _Bank):
        def post(module, args, kwargs, output):
            if self._inner or bank.reading is None:
                return None
            x_norm1, fidelity = bank.reading
            bank.reading = None
            uncond = self._uncond_rows(output.shape[0])
            with_reference = output
            mixed = with_reference.clone()
            if uncond and fidelity > 1e-5:
                self._inner += 1
                try:
                    plain = {**kwargs, "context": x_norm1[uncond]}
                    mixed[uncond] = module(x_norm1[uncond], **plain).to(mixed.dtype)
                finally:
                    self._inner -= 1
            return fidelity * mixed + (1.0 - fidelity) * with_reference

        return post

    def _adain(self, bank: _Bank):
        def post(module, args, output):
            if self._inner:
                return None
            if self.writing:
                if self.gn_weight is not None and self.gn_weight > bank.weight:
                    var, mean = torch.var_mean(output, dim=(2, 3), keepdim=True, correction=0)
                    bank.items.append((mean, var))
                    bank.fidelities.append(self.fidelity)
                return None
            if not bank.items or not self._reading():
                return None
            fidelity = bank.fidelity()
            var, mean = torch.var_mean(output, dim=(2, 3), keepdim=True, correction=0)
            std = torch.clamp(var, min=EPS) ** 0.5
            mean_acc = sum(m for m, _ in bank.items) / len(bank.items)
            var_acc = sum(v for _, v in bank.items) / len(bank.items)
            std_acc = torch.clamp(var_acc, min=EPS) ** 0.5
            with_reference = ((output - mean) / std) * std_acc + mean_acc
            mixed = with_reference.clone()
            uncond = self._uncond_rows(output.shape[0])
            if uncond and fidelity > 1e-5:
                mixed[uncond] = output.to(mixed.dtype)[uncond]
            bank.clear()
            return (fidelity * mixed + (1.0 - fidelity) * with_reference).to(output.dtype)

        return post


class ReferenceUnit(Effect):
    def __init__(self, latents: LatentHint, module: str, *, window: Window, weight: float, style_fidelity: float,
                 control_mode: ControlMode, sdxl: bool, seed: int, index: int = 0):
        self.latents = latents
        self.module = module
        self.window = window
        self.weight = float(weight)
        self.style_fidelity = max(0.0, min(1.0, float(style_fidelity)))
        self.control_mode = ControlMode.parse(control_mode, unit=index, field="control_mode")
        self.sdxl = sdxl
        self.seed = int(seed)
        self.index = index
        self.banks: ReferenceBanks | None = None
        self.generator: torch.Generator | None = None
        self.host = None

    def active(self, info: CallInfo) -> bool:
        return self.weight > 0 and self.window.contains(info)

    def group_key(self):
        return "reference"  # every reference unit writes into the same banks before the real call

    def attach(self, hooks: ModuleHooks) -> None:
        self.host = hooks.host
        self.latents.encode(self.host)
        if self.host.alphas_cumprod is None:
            from ..errors import IncompatibleModelError

            raise IncompatibleModelError("this host gives ControlNet no noise schedule, which reference needs",
                                         unit=self.index, field="module")
        self.banks = hooks.shared("reference", lambda: ReferenceBanks(hooks))
        self.generator = torch.Generator("cpu").manual_seed(self.seed)

    def release(self) -> None:
        self.banks = None

    def fidelity(self, info: CallInfo) -> float:
        fidelity = self.style_fidelity ** 3 if self.sdxl else self.style_fidelity
        if self.control_mode == ControlMode.CONTROL:
            return 1.0
        if self.control_mode == ControlMode.PROMPT or info.hires:
            return 0.0
        return fidelity

    @classmethod
    def contribute_group(cls, effects: Sequence[ReferenceUnit], call: UNetCall) -> None:
        banks = effects[0].banks
        banks.start(call)
        for effect in effects:
            effect.write(call)

    def write(self, call: UNetCall) -> None:
        x = call.x
        ref_x0 = self.latents.at(x[:, :4]).float()
        noise = torch.randn(ref_x0.shape, generator=self.generator).to(ref_x0.device)
        a, s = coefficients(self.host.alphas_cumprod, call.timesteps, ref_x0)
        ref_xt = q_sample(ref_x0, noise, a, s)
        if x.shape[1] == 9:  # inpainting UNets: empty mask channel, then the reference's own latent
            ref_xt = torch.cat([ref_xt, torch.zeros_like(ref_xt[:, :1]), ref_x0], dim=1)
        attn = self.weight if self.module in ATTENTION_MODULES else None
        gn = self.weight if self.module in ADAIN_MODULES else None
        extra = {} if call.y is None else {"y": call.y}
        with self.banks.write(attn, gn, self.fidelity(call.info)):
            self.banks.hooks.unet(ref_xt.to(x.dtype), call.timesteps, call.context, **extra)


def build(request: ControlRequest) -> Controls:
    pixels = stack_hints([hint_tensor(m[:, :, :3]) for m in request.maps])
    hires = stack_hints([hint_tensor(m[:, :, :3]) for m in request.maps_hires]) if request.maps_hires else None
    unit = ReferenceUnit(LatentHint(pixels, hires, unit=request.index), request.module, window=Window.of(request),
                         weight=request.weight, style_fidelity=request.params.slider_1,
                         control_mode=request.control_mode, sdxl=request.family == "sdxl", seed=request.seed,
                         index=request.index)
    return Controls(effects=[unit])

"""An IP-Adapter unit: image tokens attended to by every cross-attention of the UNet, via module hooks.

Per cross-attention (attn2) of the host UNet — whatever attention implementation runs it (ldm's, sgm's,
A1111's sdp/xformers/split optimisations all call `to_q(x)` and `to_out[0](out)`):

- a forward hook on `attn2.to_q` keeps the query q;
- a forward pre-hook on `attn2.to_out[0]` adds `w · mask · softmax(q k_ipᵀ / √d) v_ip` to the attention
  output before the output projection, where `k_ip, v_ip = to_k_ip(tokens), to_v_ip(tokens)` of the unit's
  image tokens — the cond rows attend to the image's tokens, the uncond rows to the uncond tokens (a zero
  image's), as the reference and diffusers' `IPAdapterAttnProcessor2_0` do.

The UNet's own forward and attention modules are never replaced, so other extensions' patches keep
working; outside the unit's start/end window, at weight 0, or for a layer whose weight is 0 the hooks
return nothing and the layer's output is bit for bit the plain one.

PuLID (ToTheBeginning/PuLID's IDAttnProcessor2_0) adds its ID attention the same way, with the unit's
`pulid_mode` as the reference's two settings: the ID keys/values get zero tokens appended (8 for Fidelity,
16 for Extremely style), and what is added is the ID attention made orthogonal to the text attention's output
`o` (the to_out[0] input), per channel over the image tokens: with p = (Σ o·a / Σ o·o) o, Extremely style adds
a − p; Fidelity adds a + (m − 1) p, m being the share of softmax(q k_idᵀ) (unscaled, averaged over heads) that
falls on the five body tokens. The reference projects onto the attention's input instead (its hook sees only
that); we follow PuLID.

Layers, in the order the file numbers them (diffusers' processor order): the input blocks' attn2, then
the output blocks', then the middle block's; the file's pair n is `ip_adapter.{2n+1}`. Weight slots
(`advanced_weighting`, 16 for SD1.x/2.x, 11 for SDXL) count transformer *blocks* in UNet call order: input
blocks, the middle block, output blocks (SDXL's ten transformer layers in one block share one slot).
Start/end follow the sampling fraction; an effective-region mask multiplies the added attention at each
layer's resolution (bilinear). Multiple images of one unit average their tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..enums import HiResFixOption, PuLIDMode
from ..errors import IncompatibleModelError, InputError
from ..hook.call import CallInfo, UNetCall
from ..hook.effect import Effect, HookTarget, ModuleHooks

# The published SD1.x/2.x UNet has 16 transformer blocks with a cross-attention, SDXL's 11 (advanced_weighting)
WEIGHT_SLOTS = {"sd1": 16, "sd2": 16, "sdxl": 11}
# PuLID's two settings (the reference's PULID_SETTING_FIDELITY / PULID_SETTING_STYLE): zero tokens appended to
# the ID tokens, and which orthogonalisation
PULID_SETTINGS = {PuLIDMode.FIDELITY: (8, "ortho_v2"), PuLIDMode.STYLE: (16, "ortho")}


@dataclass(frozen=True)
class CrossAttentionLayer:
    attn: nn.Module  # attn2 of a transformer block
    number: int  # its index in the file's order
    slot: int  # its weight slot (advanced_weighting index)


def _attn2_in(block: nn.Module) -> list[nn.Module]:
    return [m.attn2 for m in block.modules() if hasattr(m, "attn1") and hasattr(m, "attn2")]


def cross_attention_layers(unet: nn.Module) -> list[CrossAttentionLayer]:
    """Every attn2 of an ldm/sgm UNet, in the file's order, with its weight slot."""
    slots: dict[int, int] = {}
    ordered = [*unet.input_blocks, unet.middle_block, *unet.output_blocks]  # call order: weight slots
    for block in ordered:
        if _attn2_in(block):
            slots[id(block)] = len(slots)
    layers = []
    for block in [*unet.input_blocks, *unet.output_blocks, unet.middle_block]:  # file order
        for attn in _attn2_in(block):
            layers.append(CrossAttentionLayer(attn, len(layers), slots[id(block)]))
    return layers


def weight_slots(unet: nn.Module) -> int:
    return len({layer.slot for layer in cross_attention_layers(unet)})


@dataclass(eq=False)
class IPAdapterUnit(Effect):
    model: Any  # kinds.ip_adapter.IPAdapterModel
    cond: torch.Tensor  # [1, T, width] fp32 image tokens
    uncond: torch.Tensor  # [1, T, width]
    weight: float = 1.0
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    advanced_weighting: Sequence[float] | None = None
    effective_region_mask: torch.Tensor | None = None  # [H, W] in [0, 1]
    hr_option: HiResFixOption = HiResFixOption.BOTH
    low_vram: bool = False
    index: int = 0
    pulid_mode: PuLIDMode = PuLIDMode.FIDELITY  # read for PuLID models only
    _call: UNetCall | None = field(default=None, repr=False)
    _q: dict = field(default_factory=dict, repr=False)
    _kv: dict = field(default_factory=dict, repr=False)
    _masks: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.hr_option = HiResFixOption.parse(self.hr_option, unit=self.index, field="hr_option")
        self.pulid_mode = PuLIDMode.parse(self.pulid_mode, unit=self.index, field="pulid_mode")
        if not 0.0 <= self.guidance_start <= self.guidance_end <= 1.0:
            raise InputError(f"guidance_start ({self.guidance_start}) and guidance_end ({self.guidance_end}) must "
                             "satisfy 0 <= start <= end <= 1", unit=self.index, field="guidance_start")
        if self.advanced_weighting is not None:
            slots = WEIGHT_SLOTS.get(self.model.family)
            values = list(self.advanced_weighting)
            if slots is not None and len(values) != slots:
                raise InputError(f"an IP-Adapter on {self.model.family} takes {slots} values (one per transformer "
                                 f"layer), got {len(values)}", unit=self.index, field="advanced_weighting")
            self.advanced_weighting = [float(w) for w in values]

    # --- construction from the preprocessor's output ---------------------------------------------------
    @classmethod
    def from_embeddings(cls, model, embeddings: Sequence[dict], *, unit, index: int = 0,
                        hr_option=HiResFixOption.BOTH) -> IPAdapterUnit:
        """The unit for `embeddings` (one dict per input image) and the user-level `units.unit.Unit`."""
        from ..units.image_input import decode_region_mask
        from .ip_adapter import average_tokens

        if not embeddings:
            raise InputError("an IP-Adapter unit needs at least one image", unit=index, field="image")
        cond, uncond = average_tokens([model.tokens(e, unit=index) for e in embeddings])
        region = decode_region_mask(unit.effective_region_mask, unit=index)
        return cls(model, cond, uncond, weight=unit.weight, guidance_start=unit.guidance_start,
                   guidance_end=unit.guidance_end, advanced_weighting=unit.advanced_weighting,
                   effective_region_mask=None if region is None else torch.from_numpy(region),
                   hr_option=hr_option, low_vram=unit.low_vram, index=index, pulid_mode=unit.pulid_mode)

    # --- Effect ----------------------------------------------------------------------------------------
    def check(self, target: HookTarget) -> None:
        model = self.model
        if target.family is not None and model.family != target.family:
            raise IncompatibleModelError(f"{model.path.name} is a {model.family} IP-Adapter but the checkpoint is "
                                         f"{target.family}", unit=self.index, field="model")
        layers = cross_attention_layers(target.unet)
        if len(layers) != model.num_layers:
            raise IncompatibleModelError(
                f"{model.path.name} has key/value weights for {model.num_layers} cross-attention layers, this UNet "
                f"has {len(layers)}", unit=self.index, field="model")
        for layer, inner in zip(layers, model.arch.inner_dims):
            to_k = layer.attn.to_k
            if (to_k.in_features, to_k.out_features) != (model.arch.cross_dim, inner):
                raise IncompatibleModelError(
                    f"{model.path.name} makes {inner}-wide keys from {model.arch.cross_dim}-wide tokens at "
                    f"cross-attention {layer.number}, this UNet's makes {to_k.out_features} from {to_k.in_features}",
                    unit=self.index, field="model")
        slots = len({layer.slot for layer in layers})
        if self.advanced_weighting is not None and len(self.advanced_weighting) != slots:
            raise InputError(f"this UNet has {slots} transformer layers, advanced_weighting has "
                             f"{len(self.advanced_weighting)} values", unit=self.index, field="advanced_weighting")

    def models(self):
        return (self.model,)

    def layer_weight(self, slot: int) -> float:
        return self.weight if self.advanced_weighting is None else self.advanced_weighting[slot]

    def active(self, info: CallInfo) -> bool:
        if info.fraction < self.guidance_start or info.fraction > self.guidance_end:
            return False
        if self.hr_option == HiResFixOption.LOW_RES_ONLY and info.hires:
            return False
        if self.hr_option == HiResFixOption.HIGH_RES_ONLY and not info.hires:
            return False
        weights = [self.weight] if self.advanced_weighting is None else self.advanced_weighting
        return any(w != 0 for w in weights)

    def contribute(self, call: UNetCall) -> None:
        self._call = call  # the module hooks act in this call only (not in other units' extra passes)
        self._q.clear()

    def attach(self, hooks: ModuleHooks) -> None:
        self._hooks = hooks
        for layer in cross_attention_layers(hooks.unet):
            hooks.forward(layer.attn.to_q, self._keep_query(layer))
            hooks.forward_pre(layer.attn.to_out[0], self._add_attention(layer))

    def release(self) -> None:
        self._call = None
        self._q.clear()
        self._kv.clear()
        self._masks.clear()

    # --- module hooks ------------------------------------------------------------------------------------
    def _acting(self, layer: CrossAttentionLayer) -> bool:
        call = self._call
        return call is not None and call is self._hooks.current and self.layer_weight(layer.slot) != 0

    def _keep_query(self, layer: CrossAttentionLayer):
        def keep(module, args, output):
            if self._acting(layer):
                self._q[layer.number] = output
            return None

        return keep

    def _add_attention(self, layer: CrossAttentionLayer):
        def add(module, args):
            q = self._q.pop(layer.number, None)
            if q is None or not self._acting(layer):
                return None
            out = args[0]
            if q.shape[:2] != out.shape[:2]:
                raise IncompatibleModelError(
                    f"the cross-attention's query {tuple(q.shape)} and output {tuple(out.shape)} do not match "
                    "(an attention implementation that splits the query?)", unit=self.index, field="model")
            added = self.attention(layer, q, self._call, out) * self.layer_weight(layer.slot)
            mask = self.region_mask(q.shape[1], self._call)
            if mask is not None:
                added = added * mask
            return (out + added.to(out.dtype), *args[1:])

        return add

    # --- the image attention -----------------------------------------------------------------------------
    def key_values(self, layer: int, device, dtype) -> tuple[torch.Tensor, ...]:
        """(k_cond, v_cond, k_uncond, v_uncond) [1, T, inner] of one layer, computed once per device/dtype."""
        key = (layer, device, dtype)
        kv = self._kv.get(key)
        if kv is None:
            with torch.no_grad():
                kc, vc = self.model.net.key_value(layer, self.cond)
                ku, vu = self.model.net.key_value(layer, self.uncond)
            kv = self._kv[key] = tuple(t.to(device, dtype) for t in (kc, vc, ku, vu))
        return kv

    @property
    def is_pulid(self) -> bool:
        return self.model.arch.projection == "pulid"

    def attention(self, layer: CrossAttentionLayer, q: torch.Tensor, call: UNetCall,
                  text_out: torch.Tensor | None = None) -> torch.Tensor:
        """softmax(q k_ipᵀ/√d) v_ip for every row, [B, N, inner]; uncond rows use the uncond tokens. PuLID:
        that attention over the ID tokens and zeros, made orthogonal to `text_out` (the text attention's
        output) as the unit's pulid_mode says."""
        kc, vc, ku, vu = self.key_values(layer.number, q.device, q.dtype)
        batch, n, inner = q.shape
        heads = layer.attn.heads
        rows = call.info.cond_rows
        if rows is None or len(rows) == batch:
            k, v = kc.expand(batch, -1, -1), vc.expand(batch, -1, -1)
        else:
            is_cond = torch.zeros(batch, 1, 1, dtype=torch.bool, device=q.device)
            is_cond[list(rows)] = True
            k, v = torch.where(is_cond, kc, ku), torch.where(is_cond, vc, vu)
        if self.is_pulid:  # to_k/to_v (no bias) of the appended zero tokens are zeros
            zeros = k.new_zeros(batch, PULID_SETTINGS[self.pulid_mode][0], inner)
            k, v = torch.cat([k, zeros], dim=1), torch.cat([v, zeros], dim=1)

        def split(t):
            return t.reshape(batch, t.shape[1], heads, inner // heads).transpose(1, 2)

        with torch.no_grad():
            qh, kh = split(q), split(k)
            out = F.scaled_dot_product_attention(qh, kh, split(v)).transpose(1, 2).reshape(batch, n, inner)
            if not self.is_pulid:
                return out
            return self.pulid_orthogonal(out, text_out, qh, kh)

    def pulid_orthogonal(self, id_out: torch.Tensor, text_out: torch.Tensor, qh: torch.Tensor,
                         kh: torch.Tensor) -> torch.Tensor:
        """PuLID's orthogonalisation (in float32, as published) of the ID attention `id_out` [B, N, C] against
        the text attention's output [B, N, C]; qh, kh: the split query and ID keys [B, H, N|T, D]."""
        text, ident = text_out.float(), id_out.float()
        projection = (text * ident).sum(dim=-2, keepdim=True) / (text * text).sum(dim=-2, keepdim=True) * text
        if PULID_SETTINGS[self.pulid_mode][1] == "ortho":
            return (ident - projection).to(id_out.dtype)
        share = (qh.float() @ kh.float().transpose(-2, -1)).softmax(dim=-1).mean(dim=1)
        share = share[:, :, : self.model.arch.id_tokens].sum(dim=-1, keepdim=True)
        return (ident + (share - 1) * projection).to(id_out.dtype)

    def region_mask(self, tokens: int, call: UNetCall) -> torch.Tensor | None:
        """The effective-region mask at the resolution of a layer with `tokens` query positions, [1, N, 1]."""
        if self.effective_region_mask is None:
            return None
        h, w = call.x.shape[-2:]
        key = (tokens, h, w)
        mask = self._masks.get(key)
        if mask is None:
            size = next(((math.ceil(h / 2**k), math.ceil(w / 2**k)) for k in range(8)
                         if math.ceil(h / 2**k) * math.ceil(w / 2**k) == tokens), None)
            if size is None:
                raise IncompatibleModelError(f"cannot place {tokens} attention positions on a {h}x{w} latent",
                                             unit=self.index, field="effective_region_mask")
            m = self.effective_region_mask.float().reshape(1, 1, *self.effective_region_mask.shape[-2:])
            m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
            mask = self._masks[key] = m.reshape(1, tokens, 1).to(call.x.device)
        return mask

    def image_context(self, call: UNetCall) -> torch.Tensor:
        """The image tokens as a whole text context for `call`'s rows (cond / uncond): what the InstantID
        ControlNet that follows this unit sees instead of the prompt."""
        rows = call.info.cond_rows
        device = call.x.device
        dtype = call.context.dtype if call.context is not None else call.x.dtype
        cond, uncond = self.cond.to(device, dtype), self.uncond.to(device, dtype)
        if rows is None:
            return cond.expand(call.batch, -1, -1)
        out = uncond.expand(call.batch, -1, -1).clone()
        out[list(rows)] = cond
        return out


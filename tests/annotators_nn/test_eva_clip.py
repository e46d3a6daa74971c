"""EVA02-CLIP-L-14-336's vision tower (annotator/neural/eva_clip.py), PuLID's image encoder.

- Layout: the digest of the upstream tower's "key:shape" lines (eva_clip's EVAVisionTransformer built from
  EVA02-CLIP-L-14-336.json, its 50 rotary buffers left out: the reference drops them on load), 512 keys and
  304.4 M values, as the `visual.*` part of EVA02_CLIP_L_336_psz14_s6B.pt.
- Peer: the upstream class itself (consisid_eva_clip's copy, eva_oracle.py) on the same random weights gives
  the same head output and the same five hidden states, and its rotary buffers are our tables. During
  development the same comparison at the published size gave 1.5e-6 relative (head) and 1.0e-6 (hidden).
- The file: a whole-CLIP `.pt` (visual, text, logit_scale, rotary buffers) read with weights_only; a pickle
  that needs code is refused; a missing one is a 404 naming the file, the folder and where it is published.
- The input: bicubic without antialiasing (what torchvision's tensor resize did in the versions the reference
  and PuLID ran), checked against OpenCV's INTER_CUBIC away from the border; OpenAI's mean and std.
"""

from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest
import torch
from eva_oracle import upstream_tower
from test_published_layouts import layout_digest

from annotator.neural import eva_clip as ev
from annotator.neural.runtime import AnnotatorModels
from lib_controlnet.errors import NotFoundError, UnsafeFileError

PUBLISHED = ("57665febeed5e38410819368ad22ac4a40aa356ba1ebfcf01649a91b6c3fbf2b", 512, 304_432_832)
# depth 21 is the least that has all five hidden states PuLID reads (blocks 4 ... 20)
TINY = dict(image_size=42, patch=14, width=64, depth=21, out=32)
WIDE = dict(image_size=28, patch=14, width=128, depth=9, out=48)  # two heads; two hidden states


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny networks: a second thread only adds hand-offs (seconds on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_layout_is_the_published_towers():
    with torch.device("meta"):
        state = ev.EVA_CLIP.build(None).state_dict()
    assert layout_digest(state) == PUBLISHED
    assert {"cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.23.attn.q_bias", "blocks.0.attn.v_bias",
            "blocks.7.attn.inner_attn_ln.weight", "blocks.3.attn.k_proj.weight", "blocks.11.mlp.ffn_ln.bias",
            "blocks.0.mlp.w3.weight", "norm.weight", "head.bias"} <= set(state)
    assert "blocks.0.attn.k_bias" not in state and not any("fc_norm" in k for k in state)
    assert tuple(state["blocks.0.mlp.w1.weight"].shape) == (2730, 1024)
    assert tuple(state["pos_embed"].shape) == (1, 577, 1024) and tuple(state["head.weight"].shape) == (768, 1024)


def _upstream(config, seed):
    torch.manual_seed(seed)
    net = upstream_tower(**config).eval()
    with torch.no_grad():
        for p in net.parameters():  # zero-initialised biases and LayerNorms vary too
            p.add_(torch.randn_like(p) * 0.05)
    return net


@pytest.mark.parametrize("config", [TINY, WIDE], ids=["tiny", "two-heads"])
def test_tower_equals_the_upstream_eva_vision_transformer(config):
    upstream = _upstream(config, seed=3)
    state = upstream.state_dict()
    ours = ev.EVA_CLIP.build(state).eval()
    assert set(ours.state_dict()) == {k for k in state if ".rope." not in k and not k.startswith("rope.")}
    ours.load_state_dict({k: v for k, v in state.items() if k in ours.state_dict()})
    assert torch.equal(upstream.rope.freqs_cos, ours.rope_cos) and torch.equal(upstream.rope.freqs_sin, ours.rope_sin)
    x = torch.randn(2, 3, config["image_size"], config["image_size"], generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected, expected_hidden = upstream(x, return_all_features=False, return_hidden=True, shuffle=False)
        got, hidden = ours(x)
    assert got.shape == (2, config["out"])
    assert ((got - expected).norm() / expected.norm()).item() <= 1e-5
    assert len(hidden) == len(expected_hidden) == (5 if config["depth"] > 20 else (config["depth"] - 1) // 4)
    for a, b in zip(hidden, expected_hidden):
        assert a.shape == (2, (config["image_size"] // 14) ** 2 + 1, config["width"])
        assert ((a - b).norm() / b.norm()).item() <= 1e-5


def test_rotary_tables_follow_the_formula():
    # row r, column c of a 3 x 3 grid; channel pair i of the first half turns by r * 16/3 * 10000^(-2i/32)
    cos, sin = ev.rope_tables(3, 64)
    assert cos.shape == (9, 64)
    r, c, i = 2, 1, 5
    row_angle, col_angle = r * 16 / 3 * 10000 ** (-2 * i / 32), c * 16 / 3 * 10000 ** (-2 * i / 32)
    token = 3 * r + c
    assert np.allclose(cos[token, [2 * i, 2 * i + 1]], np.cos(row_angle), atol=1e-6)
    assert np.allclose(sin[token, [32 + 2 * i, 32 + 2 * i + 1]], np.sin(col_angle), atol=1e-6)
    assert torch.equal(ev.rotate_pairs(torch.tensor([1.0, 2.0, 3.0, 4.0])), torch.tensor([-2.0, 1.0, -4.0, 3.0]))


def _clip_file(state, path):
    """The published file's structure: the whole CLIP model's state dict, the tower under `visual.`."""
    whole = {f"visual.{k}": v.half() for k, v in state.items()}
    whole.update({"text.token_embedding.weight": torch.zeros(10, 8), "text.positional_embedding": torch.zeros(4, 8),
                  "logit_scale": torch.tensor(4.6)})
    torch.save(whole, path)
    return path


def test_the_published_files_structure_loads_with_weights_only(tmp_path):
    upstream = _upstream(TINY, seed=5)
    path = _clip_file(upstream.state_dict(), tmp_path / ev.EVA_CLIP_FILE)
    net = AnnotatorModels(device="cpu", folder=tmp_path).get(ev.EVA_CLIP)
    assert net.image_size == 42 and len(net.blocks) == 21
    assert torch.equal(net.blocks[4].mlp.w1.weight, upstream.blocks[4].mlp.w1.weight.half().float())
    face = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        cond, hidden = ev.eva_features(net, face)
        expected, _ = upstream.half().float()(ev.eva_input(face, 42), return_hidden=True)
    assert torch.allclose(cond, expected / expected.norm(dim=1, keepdim=True), atol=1e-5)
    assert abs(float(cond.norm()) - 1) < 1e-6 and len(hidden) == 5
    assert path.exists()


class _Code:
    def __reduce__(self):
        return (print, ("never runs",))


def test_a_pickle_that_needs_code_is_refused_and_a_missing_file_named(tmp_path):
    with open(tmp_path / ev.EVA_CLIP_FILE, "wb") as f:
        pickle.dump({"visual.cls_token": _Code()}, f, protocol=2)
    with pytest.raises(UnsafeFileError, match=ev.EVA_CLIP_FILE):
        AnnotatorModels(device="cpu", folder=tmp_path).get(ev.EVA_CLIP)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NotFoundError) as info:
        AnnotatorModels(device="cpu", folder=empty).get(ev.EVA_CLIP)
    message = str(info.value)
    assert info.value.status_code == 404 and ev.EVA_CLIP_FILE in message and str(empty) in message
    assert "huggingface.co/QuanSun/EVA-CLIP" in message and "clip_vision" in message


def test_input_is_bicubic_without_antialiasing_then_openai_normalised():
    image = np.random.default_rng(7).random((96, 96, 3)).astype(np.float32)
    x = torch.from_numpy(image).permute(2, 0, 1)[None]
    got = ev.eva_input(x, 64)
    mean, std = np.array(ev.MEAN, np.float32), np.array(ev.STD, np.float32)
    expected = (cv2.resize(image, (64, 64), interpolation=cv2.INTER_CUBIC) - mean) / std  # no antialiasing either
    inner = (slice(4, -4), slice(4, -4))
    assert np.abs(got[0].permute(1, 2, 0).numpy()[inner] - expected[inner]).max() <= 1e-4
    flat = ev.eva_input(torch.full((1, 3, 10, 10), 0.5), 14)
    assert torch.allclose(flat[0, :, 3, 3], (0.5 - torch.tensor(ev.MEAN)) / torch.tensor(ev.STD))

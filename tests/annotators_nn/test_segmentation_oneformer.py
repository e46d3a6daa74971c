"""seg_ofade20k / seg_ofcoco: OneFormer Swin-L in plain torch, in the layout of the published detectron2
checkpoints.

- Layout: digests of the "key:shape" lines for the two published configurations (250 queries / 150 ADE20K
  classes, 150 queries / 133 COCO classes). The names are the original OneFormer modules' (SHI-Labs OneFormer,
  vendored in the reference's annotator/oneformer), as transformers' conversion script for these checkpoints
  spells them; the strict load below into transformers' OneFormer through that script's renaming proves the
  correspondence key for key. 219.3 M values (877 MB in float32; the published files add the training-only
  text encoder, which is ignored).
- Peer: transformers' OneFormerForUniversalSegmentation (an independent implementation, made to load these
  checkpoints) with a tiny Swin configuration and the same random weights gives the same class and mask logits.
- The task text's CLIP token ids are checked against transformers' CLIP tokenizer built from the CLIP BPE
  vocabulary file (open_clip's copy), where that file is installed.
"""

import gzip
import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from nn_test_helpers import PreloadedModels
from test_published_layouts import layout_digest

from annotator.neural import oneformer as of
from annotator.neural.seg_palettes import ADE20K, COCO_PANOPTIC

PUBLISHED = {
    of.ONEFORMER_ADE20K: ("253d3e20cab79bce670e49f051890157d702cdea22920a9e27597e45d28105bf", 692, 219_308_811),
    of.ONEFORMER_COCO: ("415a1f9e7546a23a5c5ca0310174230f795baa1d41180a0ef94f2f72615e4dc0", 692, 219_278_842),
}
TINY = of.Config(embed_dim=32, depths=(2, 2, 2, 2), heads=(1, 2, 2, 4), window=4, dim=32, enc_layers=1, enc_ffn=64,
                 nheads=4, dec_layers=2, class_dec_layers=1, ffn=64, queries=6, classes=5)


@pytest.mark.parametrize("spec", list(PUBLISHED), ids=lambda s: s.weight.name)
def test_layouts_are_the_published_ones(spec):
    with torch.device("meta"):
        state = spec.build(None).state_dict()
    assert layout_digest(state) == PUBLISHED[spec]
    assert {"backbone.layers.2.blocks.17.attn.relative_position_index", "backbone.layers.3.blocks.1.mlp.fc2.bias",
            "backbone.norm3.weight", "sem_seg_head.pixel_decoder.adapter_1.norm.bias",
            "sem_seg_head.pixel_decoder.transformer.encoder.layers.5.self_attn.sampling_offsets.weight",
            "sem_seg_head.predictor.class_transformer.decoder.layers.1.multihead_attn.in_proj_weight",
            "sem_seg_head.predictor.transformer_self_attention_layers.8.self_attn.in_proj_bias",
            "sem_seg_head.predictor.mask_embed.layers.2.bias", "task_mlp.layers.0.weight"} <= set(state)
    assert spec.ignore == ("text_encoder.*", "text_projector.*", "prompt_ctx.*", "criterion.*")


HF_RULES = [
    (r"^backbone\.patch_embed\.proj\.", "pixel_level_module.encoder.embeddings.patch_embeddings.projection."),
    (r"^backbone\.patch_embed\.norm\.", "pixel_level_module.encoder.embeddings.norm."),
    (r"^backbone\.norm(\d)\.", lambda m: f"pixel_level_module.encoder.hidden_states_norms.stage{int(m[1]) + 1}."),
    (r"^backbone\.layers\.", "pixel_level_module.encoder.encoder.layers."),
    (r"\.norm1\.(weight|bias)$", r".layernorm_before.\1"), (r"\.norm2\.(weight|bias)$", r".layernorm_after.\1"),
    (r"\.attn\.relative_position", ".attention.self.relative_position"),
    (r"\.attn\.proj\.", ".attention.output.dense."),
    (r"\.mlp\.fc1\.", ".intermediate.dense."), (r"\.mlp\.fc2\.", ".output.dense."),
    (r"^sem_seg_head\.pixel_decoder\.(adapter_1|layer_1)\.norm\.", r"pixel_level_module.decoder.\1.1."),
    (r"^sem_seg_head\.pixel_decoder\.(adapter_1|layer_1)\.weight", r"pixel_level_module.decoder.\1.0.weight"),
    (r"^sem_seg_head\.pixel_decoder\.input_proj\.", "pixel_level_module.decoder.input_projections."),
    (r"^sem_seg_head\.pixel_decoder\.transformer\.level_embed", "pixel_level_module.decoder.level_embed"),
    (r"^sem_seg_head\.pixel_decoder\.mask_features\.", "pixel_level_module.decoder.mask_projection."),
    (r"^sem_seg_head\.pixel_decoder\.transformer\.encoder\.", "pixel_level_module.decoder.encoder."),
    (r"(decoder\.encoder\.layers\.\d+)\.linear(\d)\.", r"\1.fc\2."),
    (r"(decoder\.encoder\.layers\.\d+)\.layernorm_before\.", r"\1.self_attn_layer_norm."),
    (r"(decoder\.encoder\.layers\.\d+)\.layernorm_after\.", r"\1.final_layer_norm."),
    (r"^sem_seg_head\.predictor\.query_embed\.", "transformer_module.queries_embedder."),
    (r"^sem_seg_head\.predictor\.level_embed\.", "transformer_module.level_embed."),
    (r"^sem_seg_head\.predictor\.decoder_norm\.", "transformer_module.decoder.decoder_norm."),
    (r"^sem_seg_head\.predictor\.class_input_proj\.", "transformer_module.decoder.query_input_projection."),
    (r"^sem_seg_head\.predictor\.class_embed\.", "transformer_module.decoder.class_embed."),
    (r"^sem_seg_head\.predictor\.mask_embed\.layers\.(\d)\.", r"transformer_module.decoder.mask_embed.layers.\1.0."),
    (r"^sem_seg_head\.predictor\.class_transformer\.", "transformer_module.decoder.query_transformer."),
    (r"(query_transformer\.decoder\.layers\.\d+)\.layernorm_before\.", r"\1.norm1."),
    (r"(query_transformer\.decoder\.layers\.\d+)\.layernorm_after\.", r"\1.norm2."),
    (r"^sem_seg_head\.predictor\.transformer_cross_attention_layers\.(\d+)\.",
     r"transformer_module.decoder.layers.\1.cross_attn."),
    (r"^sem_seg_head\.predictor\.transformer_self_attention_layers\.(\d+)\.",
     r"transformer_module.decoder.layers.\1.self_attn."),
    (r"^sem_seg_head\.predictor\.transformer_ffn_layers\.(\d+)\.", r"transformer_module.decoder.layers.\1.ffn."),
    (r"^task_mlp\.layers\.(\d)\.", r"task_encoder.task_mlp.layers.\1.0."),
]


def _to_hf(state: dict) -> dict:
    out = {}
    for key, value in state.items():
        new = key
        for pattern, replacement in HF_RULES:
            new = re.sub(pattern, replacement, new)
        if new.endswith("attn.qkv.weight") or new.endswith("attn.qkv.bias"):
            base, kind = new.rsplit(".attn.qkv.", 1)
            for part, name in zip(value.chunk(3), ("query", "key", "value")):
                out[f"model.{base}.attention.self.{name}.{kind}"] = part
            continue
        match = re.match(r"(transformer_module\.decoder\.layers\.\d+\.self_attn)\.self_attn\.in_proj_(weight|bias)",
                         new)
        if match:
            for part, name in zip(value.chunk(3), ("q_proj", "k_proj", "v_proj")):
                out[f"model.{match[1]}.self_attn.{name}.{match[2]}"] = part
            continue
        new = re.sub(r"(decoder\.layers\.\d+\.self_attn)\.self_attn\.out_proj", r"\1.self_attn.out_proj", new)
        out["model." + new] = value
    return out


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    net = of.OneFormer(TINY).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.add_(torch.randn(p.shape, generator=generator) * (0.05 if "bias" in name or p.dim() == 1 else 0.02))
    return net


def test_tiny_oneformer_matches_transformers(tiny):
    transformers = pytest.importorskip("transformers")
    backbone = transformers.SwinConfig(embed_dim=32, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4], window_size=4,
                                       out_features=["stage1", "stage2", "stage3", "stage4"], drop_path_rate=0.0)
    config = transformers.OneFormerConfig(
        backbone_config=backbone, num_labels=5, num_queries=6, hidden_dim=32, conv_dim=32, mask_dim=32,
        encoder_feedforward_dim=64, dim_feedforward=64, encoder_layers=1, decoder_layers=3, num_attention_heads=4,
        query_dec_layers=1, is_training=False, use_task_norm=True, dropout=0.0)
    peer = transformers.OneFormerForUniversalSegmentation(config).eval()
    missing, unexpected = peer.load_state_dict(_to_hf(tiny.state_dict()), strict=False)
    assert unexpected == [] and all(k.startswith("criterion.") for k in missing), (missing, unexpected)
    x = torch.randn(1, 3, 160, 192)  # every Swin stage larger than its window (transformers shrinks it otherwise)
    with torch.no_grad():
        out = peer(pixel_values=x, task_inputs=of.task_tokens())
        classes, masks = tiny(x, of.task_tokens())
    assert classes.shape == out.class_queries_logits.shape == (1, 6, 6)
    assert masks.shape == out.masks_queries_logits.shape == (1, 6, 40, 48)
    for got, expected in ((classes, out.class_queries_logits), (masks, out.masks_queries_logits)):
        assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()


def _clip_vocabulary() -> Path | None:
    """open_clip's copy of the CLIP BPE file, found without importing open_clip (which needs torchvision)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "bpe_simple_vocab_16e6.txt.gz"
    return path if path.exists() else None


def test_task_tokens_are_clips_bpe_of_the_task_text(tmp_path):
    transformers = pytest.importorskip("transformers")
    vocabulary = _clip_vocabulary()
    if vocabulary is None:
        pytest.skip("no CLIP BPE vocabulary file installed (open_clip)")
    with gzip.open(vocabulary) as f:
        merges = f.read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    tokens = list(transformers.models.clip.tokenization_clip.bytes_to_unicode().values())
    tokens = tokens + [t + "</w>" for t in tokens] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    (tmp_path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges))
    tokenizer = transformers.CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    assert tuple(tokenizer("The task is semantic")["input_ids"]) == of.TASK_TOKENS
    assert of.task_tokens()[0, :7].tolist() == list(of.TASK_TOKENS) and of.task_tokens()[0, 7:].sum() == 0


def test_test_size_is_detectrons_resize_shortest_edge():
    assert of.test_size(512, 704, 640, 2560) == (640, 880)
    assert of.test_size(512, 704, 800, 1333) == (800, 1100)
    assert of.test_size(512, 1024, 800, 1333) == (667, 1333)  # the long side limits
    x, size = of.network_input(np.zeros((512, 704, 3), np.uint8), 640, 2560)
    assert size == (640, 880) and x.shape == (1, 3, 640, 896)  # padded to a multiple of 32
    assert torch.allclose(x[0, :, 0, 0], -of.MEAN[:, 0, 0] / of.STD[:, 0, 0]) and (x[0, :, :, 880:] == 0).all()


@pytest.mark.parametrize("dataset", ["ade20k", "coco"])
def test_map_is_the_palette_of_semantic_inference(photo, tiny, dataset, monkeypatch):
    variant = of.VARIANTS[dataset]
    monkeypatch.setitem(of.VARIANTS, dataset, of.Variant(variant.spec, variant.palette, 128, 256))  # quick
    models = PreloadedModels({variant.spec.weight.name: tiny})
    out = (of.seg_ofade20k if dataset == "ade20k" else of.seg_ofcoco)(photo, 256, models=models)
    palette = ADE20K if dataset == "ade20k" else COCO_PANOPTIC
    assert out.shape == (256, 320, 3) and out.dtype == np.uint8
    with torch.no_grad():
        classes = of.semantic_classes(tiny, photo, torch.device("cpu"), 128, 256)
    assert np.array_equal(out, palette[classes]) and classes.max() < 5

"""mobile_sam: MobileSAM (TinyViT + SAM's prompt encoder and mask decoder) in the layout of mobile_sam.pt, and
SAM's automatic mask generator.

- Layout: the digest of the upstream Sam module's "key:shape" lines (controlnet_aux segment_anything
  build_sam_vit_t, the code the reference runs), 10.1 M values like the 38.8 MB published file.
- Peer: transformers' SamModel (prompt encoder + mask decoder, an independent port) on the same random weights
  and image embedding gives the same low-resolution masks and IoU predictions.
- During development the whole network was run against the upstream code with the same random weights
  (outside the repository): the 1024 x 1024 image embedding agreed within 3e-6, prompt tokens exactly, masks
  within 7e-7; the generator gave the same masks.
"""

import re

import numpy as np
import pytest
import torch
from nn_test_helpers import PreloadedModels, random_network
from test_published_layouts import layout_digest

from annotator.neural import mobile_sam

PUBLISHED = ("065aac8717e269da99b8086a57e570d1a09627e31db73b4633473ea5ced2fadf", 439, 10_140_231)


def test_layout_is_the_published_one():
    with torch.device("meta"):
        state = mobile_sam.MOBILE_SAM.build(None).state_dict()
    assert layout_digest(state) == PUBLISHED
    assert {"image_encoder.patch_embed.seq.0.c.weight", "image_encoder.layers.0.blocks.1.conv3.bn.running_var",
            "image_encoder.layers.2.blocks.5.attn.attention_biases", "image_encoder.layers.3.blocks.1.mlp.fc2.bias",
            "image_encoder.layers.2.downsample.conv2.c.weight", "image_encoder.head.weight",
            "image_encoder.neck.3.bias", "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
            "prompt_encoder.mask_downscaling.6.weight", "mask_decoder.transformer.layers.1.norm4.weight",
            "mask_decoder.output_hypernetworks_mlps.3.layers.2.bias", "mask_decoder.iou_prediction_head.layers.0.weight"
            } <= set(state)
    assert "image_encoder.layers.1.blocks.0.attn.attention_bias_idxs" not in state  # a derived, unsaved buffer


HF_RULES = [
    (r"^prompt_encoder\.pe_layer\.positional_encoding_gaussian_matrix", "shared_image_embedding.positional_embedding"),
    (r"^prompt_encoder\.point_embeddings\.", "prompt_encoder.point_embed."),
    (r"mask_downscaling\.0\.", "mask_embed.conv1."), (r"mask_downscaling\.1\.", "mask_embed.layer_norm1."),
    (r"mask_downscaling\.3\.", "mask_embed.conv2."), (r"mask_downscaling\.4\.", "mask_embed.layer_norm2."),
    (r"mask_downscaling\.6\.", "mask_embed.conv3."),
    (r"output_upscaling\.0\.", "upscale_conv1."), (r"output_upscaling\.1\.", "upscale_layer_norm."),
    (r"output_upscaling\.3\.", "upscale_conv2."),
    (r"(mlps\.\d|iou_prediction_head)\.layers\.0\.", r"\1.proj_in."),
    (r"(mlps\.\d|iou_prediction_head)\.layers\.1\.", r"\1.layers.0."),
    (r"(mlps\.\d|iou_prediction_head)\.layers\.2\.", r"\1.proj_out."),
    (r"\.norm(\d)\.", r".layer_norm\1."), (r"norm_final_attn", "layer_norm_final_attn"),
]


def test_prompt_encoder_and_mask_decoder_match_transformers_sam():
    transformers = pytest.importorskip("transformers")
    ours = random_network(mobile_sam.MOBILE_SAM, seed=7, scale=0.02)
    state = {}
    for key, value in ours.state_dict().items():
        if key.startswith(("prompt_encoder.", "mask_decoder.")):
            for pattern, replacement in HF_RULES:
                key = re.sub(pattern, replacement, key)
            state[key] = value
    state["prompt_encoder.shared_embedding.positional_embedding"] = state["shared_image_embedding.positional_embedding"]
    config = transformers.SamConfig(vision_config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=1,
                                                       mlp_dim=16, global_attn_indexes=[0]))
    peer = transformers.SamModel(config).eval()
    missing, unexpected = peer.load_state_dict(state, strict=False)
    assert unexpected == [] and all(k.startswith("vision_encoder.") for k in missing)  # ours is TinyViT
    torch.manual_seed(1)
    embedding = torch.randn(1, 256, 64, 64)
    points = torch.rand(4, 1, 2, dtype=torch.float64) * 1000
    with torch.no_grad():
        out = peer(image_embeddings=embedding, input_points=points[None].float(), input_labels=torch.ones(1, 4, 1),
                   multimask_output=True)
        sparse, dense = ours.prompt_encoder(points, torch.ones(4, 1))
        masks, iou = ours.mask_decoder(embedding, ours.prompt_encoder.dense_pe(), sparse, dense)
    assert masks.shape == out.pred_masks[0].shape == (4, 3, 256, 256)
    assert (masks - out.pred_masks[0]).abs().max() <= 1e-4 * masks.abs().max()
    assert (iou - out.iou_scores[0]).abs().max() <= 1e-4 * iou.abs().max()


def test_tiny_vit_embedding_is_a_sixteenth_of_the_padded_image():
    torch.manual_seed(0)
    encoder = mobile_sam.TinyViT().eval()
    with torch.no_grad():
        assert encoder(torch.randn(1, 3, 224, 224)).shape == (1, 256, 14, 14)  # windows padded at 28 / 14 / 14


def test_generator_pieces():
    grid = mobile_sam.point_grid(2)
    assert grid.tolist() == [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]  # x fastest
    assert mobile_sam.longest_side_size(256, 320, 1024) == (819, 1024)
    assert mobile_sam.detect_size(256, 320, 256) == (256, 320) and mobile_sam.detect_size(300, 451, 512) == (512, 768)
    logits = torch.tensor([[[2.0, 0.5, -0.5, -2.0]]])
    assert mobile_sam.stability_score(logits).item() == pytest.approx(1 / 3)  # > +1: one; > -1: three
    masks = torch.zeros(2, 5, 6, dtype=torch.bool)
    masks[0, 1:3, 2:5] = True
    assert mobile_sam.mask_boxes(masks).tolist() == [[2, 1, 4, 2], [0, 0, 0, 0]]
    boxes = torch.tensor([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]], dtype=torch.float)
    assert mobile_sam.box_nms(boxes, torch.tensor([0.5, 0.9, 0.1])).tolist() == [1, 2]  # IoU 9/11 > 0.7
    a, b = np.zeros((4, 4), bool), np.zeros((4, 4), bool)
    a[:, :3], b[1:3, 1:3] = True, True
    canvas = mobile_sam.paint([b, a], 4, 4)
    colours = np.random.default_rng(mobile_sam.COLOUR_SEED).integers(0, 255, size=(2, 3), dtype=np.uint8)
    assert (canvas[1, 1] == colours[0]).all() and (canvas[0, 0] == colours[1]).all()  # the small one on top
    assert (canvas[:, 3] == 0).all()


def test_mobile_sam_on_a_photo_paints_the_surviving_masks(photo, monkeypatch):
    """A small MobileSAM (256 x 256 frame) whose IoU head says "good" and whose masks are sharp, so that masks
    survive the thresholds; every painted pixel belongs to a kept mask in its colour."""
    torch.manual_seed(3)
    sam = mobile_sam.MobileSam(image_size=256).eval()
    with torch.no_grad():
        sam.mask_decoder.iou_prediction_head.layers[2].bias += 5.0
        for mlp in sam.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[2].weight *= 40
    monkeypatch.setattr(mobile_sam, "STABILITY_THRESHOLD", 0.5)
    with torch.no_grad():
        masks = mobile_sam.generate_masks(sam, photo, torch.device("cpu"), points_per_side=4, batch=5)
    assert masks and all(m.shape == (256, 320) and m.dtype == bool for m in masks)
    models = PreloadedModels({"mobile_sam.pt": sam})
    out = mobile_sam.mobile_sam(photo, 256, models=models, points_per_side=4)
    assert out.shape == (256, 320, 3) and out.dtype == np.uint8
    assert np.array_equal(out, mobile_sam.paint(masks, 256, 320))
    monkeypatch.setattr(mobile_sam, "PRED_IOU_THRESHOLD", 100.0)  # nothing survives: a black map
    assert not mobile_sam.mobile_sam(photo, 256, models=models, points_per_side=2).any()

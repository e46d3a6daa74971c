"""CLIP vision encoders: files in the published (transformers) layout are read whatever their size, the
embeddings equal transformers' own pipeline (CLIPImageProcessor + CLIPVisionModelWithProjection) on the same
weights, the CLIP mask works as the reference's, a missing file is named, and /controlnet/detect returns the
embeddings in a form `torch.load(weights_only=True)` reads."""

import base64
import io

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPVisionConfig, CLIPVisionModelWithProjection

from annotator.neural import clip_vision
from annotator.neural.weights import set_weights_folder
from lib_controlnet.errors import NotFoundError
from lib_controlnet.preprocessors import default_registry, resolve_params, run_preprocessor
from lib_controlnet.preprocessors.cache import ResultCache

TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=16, patch_size=14,
            image_size=224, projection_dim=24, layer_norm_eps=1e-5, hidden_act="gelu")


def tiny_encoder(seed=0) -> CLIPVisionModelWithProjection:
    torch.manual_seed(seed)
    return CLIPVisionModelWithProjection(CLIPVisionConfig(**TINY)).eval()


@pytest.fixture()
def folder(tmp_path):
    set_weights_folder(tmp_path)
    yield tmp_path
    set_weights_folder()


def embed(module, image, folder):
    preprocessor = default_registry().get(module)
    return run_preprocessor(preprocessor, image, resolve_params(preprocessor), cache=ResultCache(0)).map


def oracle(net, image, mask=None):
    processor = CLIPImageProcessor(crop_size=224, do_center_crop=True, do_convert_rgb=True, do_normalize=True,
                                   do_resize=True, image_mean=list(clip_vision.MEAN), image_std=list(clip_vision.STD),
                                   resample=3, size=224)
    pixels = processor(images=cv2.resize(image, (224, 224), interpolation=cv2.INTER_AREA), return_tensors="pt")
    values = pixels["pixel_values"]
    if mask is not None:
        keep = 1 - torch.from_numpy(cv2.resize(mask, (224, 224), interpolation=cv2.INTER_AREA)).float() / 255
        values = values * keep
    with torch.no_grad():
        return net(pixel_values=values, output_hidden_states=True)


def test_embeddings_equal_transformers_pipeline(photo, folder):
    net = tiny_encoder()
    save_file(net.state_dict(), str(folder / "clip_h.safetensors"))
    out = embed("ip-adapter_clip_h", photo, folder)
    expected = oracle(net, photo)
    assert set(out) == {"image_embeds", "last_hidden_state", "penultimate_hidden_state",
                        "uncond_penultimate_hidden_state"}
    assert out["image_embeds"].dtype == torch.float32 and out["image_embeds"].shape == (1, 24)
    assert torch.allclose(out["image_embeds"], expected.image_embeds, rtol=1e-5, atol=1e-6)
    assert torch.allclose(out["last_hidden_state"], expected.last_hidden_state, rtol=1e-5, atol=1e-6)
    assert torch.allclose(out["penultimate_hidden_state"], expected.hidden_states[-2], rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # the published uncond: the encoder on all-zero pixel values
        zero = net(pixel_values=torch.zeros(1, 3, 224, 224), output_hidden_states=True).hidden_states[-2]
    assert torch.allclose(out["uncond_penultimate_hidden_state"], zero, rtol=1e-5, atol=1e-6)


def test_the_clip_mask_blanks_the_masked_pixels(photo, folder):
    net = tiny_encoder(1)
    save_file(net.state_dict(), str(folder / "clip_g.safetensors"))
    mask = np.zeros(photo.shape[:2], np.uint8)
    mask[:, : photo.shape[1] // 2] = 255
    out = embed("ip-adapter_clip_g", np.dstack([photo, mask]), folder)
    assert torch.allclose(out["image_embeds"], oracle(net, photo, mask).image_embeds, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(out["image_embeds"], oracle(net, photo).image_embeds, atol=1e-4)


def test_openais_full_clip_file_is_read_for_its_vision_tower(photo, folder):
    torch.manual_seed(3)
    full = CLIPModel(CLIPConfig(text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                                 num_attention_heads=4, max_position_embeddings=77),
                                vision_config={**TINY, "hidden_act": "quick_gelu"}, projection_dim=24)).eval()
    torch.save(full.state_dict(), folder / "clip_vitl.pth")  # text tower, logit scale and all, as OpenAI's file
    out = embed("t2ia_style_clipvision", photo, folder)
    vision = CLIPVisionModelWithProjection(full.config.vision_config).eval()
    vision.load_state_dict({k: v for k, v in full.state_dict().items() if k.startswith(("vision_model.",
                                                                                         "visual_projection."))})
    assert torch.allclose(out["image_embeds"], oracle(vision, photo).image_embeds, rtol=1e-5, atol=1e-6)


def test_published_encoders_have_the_published_shapes():
    with torch.device("meta"):
        for name, (width, inner, layers, projection) in clip_vision.PUBLISHED.items():
            net = clip_vision.ENCODERS[name].build(None)
            state = net.state_dict()
            assert state["visual_projection.weight"].shape == (projection, width), name
            assert f"vision_model.encoder.layers.{layers - 1}.mlp.fc1.weight" in state, name
            assert state["vision_model.encoder.layers.0.mlp.fc1.weight"].shape == (inner, width), name
            assert net.config.hidden_act == ("quick_gelu" if name == "clip_vitl" else "gelu"), name
            assert clip_vision.config_from_state(state).to_dict()["num_hidden_layers"] == layers


def test_a_missing_encoder_is_named_with_its_folder_and_source(photo, folder):
    with pytest.raises(NotFoundError) as e:
        embed("revision_clipvision", photo, folder)
    message = str(e.value)
    assert "clip_g.pth" in message and str(folder) in message and "lllyasviel/Annotators" in message


def test_detect_returns_embeddings_that_load_without_pickled_code(photo, folder):
    from lib_controlnet.api.detect import DetectRequest, detect

    save_file(tiny_encoder().state_dict(), str(folder / "clip_h.safetensors"))
    buffer = io.BytesIO()
    from PIL import Image

    Image.fromarray(photo).save(buffer, format="PNG")
    request = DetectRequest(controlnet_module="ip-adapter_clip_h",
                            controlnet_input_images=[base64.b64encode(buffer.getvalue()).decode()])
    response = detect(request, default_registry(), ResultCache(0))
    assert "images" not in response and len(response["tensor"]) == 1
    loaded = torch.load(io.BytesIO(base64.b64decode(response["tensor"][0])), weights_only=True)
    assert loaded["image_embeds"].shape == (1, 24)


@pytest.mark.parametrize("module, encoder", [("t2ia_style_clipvision", "clip_vitl"), ("revision_clipvision", "clip_g"),
                                             ("ip-adapter_clip_h", "clip_h")])
def test_every_clip_encoder_in_a_unit_sees_the_image_and_its_mask(photo, folder, module, encoder):
    """A unit's input reaches the encoders as RGBA (the mask as alpha, zero when there is none): each applies
    the CLIP mask as the reference does, whether or not its declaration offers a mask upload; an RGBA input
    was once composited over white for the ones that do not (t2ia_style_clipvision, revision)."""
    from lib_controlnet.units.image_input import control_input
    from lib_controlnet.units.unit import uses_clip

    torch.manual_seed(3)
    net = CLIPVisionModelWithProjection(CLIPVisionConfig(**{**TINY, "hidden_act": clip_vision.ACTIVATIONS[encoder]}))
    save_file(net.eval().state_dict(), str(folder / f"{encoder}.safetensors"))
    preprocessor = default_registry().get(module)
    mask = np.zeros(photo.shape[:2], np.uint8)
    mask[: photo.shape[0] // 2] = 255
    for alpha, expected in ((np.zeros_like(mask), oracle(net, photo)), (mask, oracle(net, photo, mask))):
        rgba = np.dstack([photo, alpha])
        source = control_input(rgba, keep_rgba=preprocessor.accepts_mask or uses_clip(preprocessor.name))
        out = embed(module, source, folder)
        assert torch.allclose(out["image_embeds"], expected.image_embeds, atol=1e-5)

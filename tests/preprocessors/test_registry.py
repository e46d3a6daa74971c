"""The registry: the reference's names, labels, sliders and order (§5), lookup, parameter resolution."""

import numpy as np
import pytest
from reference_modules import REFERENCE as ALL_REFERENCE_MODULES

from lib_controlnet.errors import InputError
from lib_controlnet.preprocessors import (
    Params,
    Preprocessor,
    Registry,
    Slider,
    default_registry,
    module_detail,
    module_list,
    resolve_params,
    run_preprocessor,
)
from lib_controlnet.preprocessors.registry import builtin_preprocessors

# From the reference's preprocessor table (§5): name -> (label, priority, tags, slider A, slider B), sliders
# as (label, default, min, max, step). The reference's names and labels are what infotexts and API clients use.
REFERENCE = {
    "none": ("none", 10, ("InstructP2P",), None, None),
    "tile_resample": ("tile_resample", 100, ("Tile",), ("Down Sampling Rate", 1.0, 1.0, 8.0, 0.01), None),
    "recolor_luminance": ("recolor_luminance", 100, ("Recolor",), ("Gamma Correction", 1.0, 0.1, 2.0, 0.001), None),
    "lineart_standard": ("lineart_standard (from white bg & black line)", 100, ("Lineart",), None, None),
    "inpaint_only": ("inpaint_only", 100, ("Inpaint",), None, None),
    "canny": ("canny", 100, ("Canny",), ("Low Threshold", 100, 1, 255, 1), ("High Threshold", 200, 1, 255, 1)),
    "invert": ("invert (from white bg & black line)", 20, ("Canny", "Lineart", "Scribble", "MLSD"), None, None),
    "tile_colorfix+sharp": ("tile_colorfix+sharp", 0, ("Tile",), ("Variation", 8.0, 3.0, 32.0, 1.0),
                            ("Sharpness", 1.0, 0.0, 2.0, 0.01)),
    "tile_colorfix": ("tile_colorfix", 0, ("Tile",), ("Variation", 8.0, 3.0, 32.0, 1.0), None),
    "threshold": ("threshold", 0, (), ("Binarization Threshold", 127, 0, 255, 0.01), None),
    "color": ("t2ia_color_grid", 0, ("T2I-Adapter",), None, None),
    "shuffle": ("shuffle", 0, ("Shuffle",), None, None),
    "scribble_xdog": ("scribble_xdog", 0, ("Scribble", "SparseCtrl"), ("XDoG Threshold", 32, 1, 64, 0.01), None),
    "recolor_intensity": ("recolor_intensity", 0, ("Recolor",), ("Gamma Correction", 1.0, 0.1, 2.0, 0.001), None),
    "mediapipe_face": ("mediapipe_face", 0, (), ("Max Faces", 1, 1, 10, 1),
                       ("Min Face Confidence", 0.5, 0.01, 1.0, 0.01)),
    "inpaint": ("inpaint_global_harmonious", 0, ("Inpaint",), None, None),
    "blur_gaussian": ("blur_gaussian", 0, ("Tile",), ("Sigma", 9.0, 0.01, 64.0, 0.01), None),
}
# The neural modules (annotator/neural, weights from lllyasviel/Annotators), from the same table.
NEURAL_REFERENCE = {
    "openpose": ("openpose", 0, ("OpenPose",), None, None),
    "openpose_hand": ("openpose_hand", 0, ("OpenPose",), None, None),
    "openpose_face": ("openpose_face", 0, ("OpenPose",), None, None),
    "openpose_faceonly": ("openpose_faceonly", 0, ("OpenPose",), None, None),
    "openpose_full": ("openpose_full", 100, ("OpenPose",), None, None),
    "hed": ("softedge_hed", 0, ("SoftEdge",), None, None),
    "hed_safe": ("softedge_hedsafe", 0, ("SoftEdge",), None, None),
    "scribble_hed": ("scribble_hed", 0, ("Scribble", "SparseCtrl"), None, None),
    "pidinet": ("softedge_pidinet", 100, ("SoftEdge",), None, None),
    "pidinet_safe": ("softedge_pidisafe", 0, ("SoftEdge",), None, None),
    "pidinet_scribble": ("scribble_pidinet", 100, ("Scribble", "SparseCtrl"), None, None),
    "pidinet_sketch": ("t2ia_sketch_pidi", 0, ("T2I-Adapter",), None, None),
    "lineart": ("lineart_realistic", 0, ("Lineart",), None, None),
    "lineart_coarse": ("lineart_coarse", 0, ("Lineart",), None, None),
    "lineart_anime": ("lineart_anime", 0, ("Lineart",), None, None),
    "lineart_anime_denoise": ("lineart_anime_denoise", 0, ("Lineart",), None, None),
    "mlsd": ("mlsd", 100, ("MLSD",), ("MLSD Value Threshold", 0.1, 0.01, 2.0, 0.01),
             ("MLSD Distance Threshold", 0.1, 0.01, 20.0, 0.01)),
    "depth": ("depth_midas", 100, ("Depth",), None, None),
    "normal_map": ("normal_midas", 0, ("NormalMap",), ("Normal Background Threshold", 0.4, 0.0, 1.0, 0.01), None),
    "depth_anything_v2": ("depth_anything_v2", 0, ("Depth",), None, None),
    "normal_bae": ("normal_bae", 100, ("NormalMap",), None, None),
    "dw_openpose_full": ("dw_openpose_full", 0, ("OpenPose",), None, None),
    "animal_openpose": ("animal_openpose", 0, ("OpenPose",), None, None),
    "depth_anything": ("depth_anything", 0, ("Depth",), None, None),
    "depth_zoe": ("depth_zoe", 0, ("Depth",), None, None),
    "depth_leres": ("depth_leres", 0, ("Depth",), ("Remove Near %", 0, 0, 100, 0.1),
                    ("Remove Background %", 0, 0, 100, 0.1)),
    "depth_leres++": ("depth_leres++", 0, ("Depth",), ("Remove Near %", 0, 0, 100, 0.1),
                      ("Remove Background %", 0, 0, 100, 0.1)),
    "depth_hand_refiner": ("depth_hand_refiner", 0, ("Depth",), None, None),
    "normal_dsine": ("normal_dsine", 0, ("NormalMap",), ("Fov", 60, 0, 360, 0.1), ("Iterations", 5, 1, 20, 1)),
    "softedge_teed": ("softedge_teed", 0, ("SoftEdge",), ("Safe Steps", 2, 0, 10, 1), None),
    "softedge_anyline": ("softedge_anyline", 0, ("SoftEdge",), ("Safe Steps", 2, 0, 10, 1), None),
}
# The reference shows Resolution (512, 64-2048, step 8) for all of these, and hides it for the others.
HIDDEN_RESOLUTION = {"invert", "inpaint", "inpaint_only", "shuffle"}
NEW_MODULES = {"scribble_sketch", "seg_passthrough", "mediapipe_openpose", "mediapipe_openpose_hand",
               "mediapipe_openpose_face", "mediapipe_openpose_faceonly", "mediapipe_openpose_full"}


# Model-free modules (no ControlNet: their control runs in the hook, lib_controlnet/controls/).
MODEL_FREE_REFERENCE = {
    "reference_only": ("reference_only", 100, ("Reference",), ("Style Fidelity (only for Balanced mode)", 0.5, 0.0,
                                                                1.0, 0.01), None),
    "reference_adain": ("reference_adain", 0, ("Reference",), ("Style Fidelity (only for Balanced mode)", 0.5, 0.0,
                                                                1.0, 0.01), None),
    "reference_adain+attn": ("reference_adain+attn", 0, ("Reference",), ("Style Fidelity (only for Balanced mode)",
                                                                          0.5, 0.0, 1.0, 0.01), None),
}


def _slider_tuple(slider):
    return None if not slider.visible else (slider.label, slider.value, slider.minimum, slider.maximum, slider.step)


def test_every_reference_weight_free_module_is_declared_as_the_reference_declares_it():
    registry = default_registry()
    for name, (label, priority, tags, slider_a, slider_b) in REFERENCE.items():
        p = registry.get(name)
        assert p is not None, name
        assert (p.label, p.priority, p.tags) == (label, priority, tags), name
        assert (_slider_tuple(p.slider_1), _slider_tuple(p.slider_2)) == (slider_a, slider_b), name
        assert p.resolution.visible == (name not in HIDDEN_RESOLUTION), name
        assert p.weight_file is None and not p.model_free
    names = {p.name for p in registry}
    assert names >= set(REFERENCE) | NEW_MODULES | set(NEURAL_REFERENCE) | set(MODEL_FREE_REFERENCE)
    assert names <= set(ALL_REFERENCE_MODULES) | NEW_MODULES  # test_reference_module_list checks the rest


def test_model_free_modules_are_declared_as_the_reference_declares_them():
    registry = default_registry()
    for name, (label, priority, tags, slider_a, slider_b) in MODEL_FREE_REFERENCE.items():
        p = registry.get(name)
        assert p is not None and p.model_free and p.control == "reference", name
        assert (p.label, p.priority, p.tags) == (label, priority, tags), name
        assert (_slider_tuple(p.slider_1), _slider_tuple(p.slider_2)) == (slider_a, slider_b), name
        assert p.resolution.visible, name  # the reference shows its default Resolution slider


def test_every_neural_module_is_declared_as_the_reference_declares_it():
    registry = default_registry()
    for name, (label, priority, tags, slider_a, slider_b) in NEURAL_REFERENCE.items():
        p = registry.get(name)
        assert p is not None and registry.get(label) is p, name
        assert (p.label, p.priority, p.tags) == (label, priority, tags), name
        assert (_slider_tuple(p.slider_1), _slider_tuple(p.slider_2)) == (slider_a, slider_b), name
        assert p.resolution.visible and p.weight_file and not p.model_free, name


def test_masks_poses_seeds_and_hires_flags():
    registry = default_registry()
    assert {p.name for p in registry if p.requires_mask} == {"inpaint", "inpaint_only", "inpaint_only+lama"}
    assert {p.name for p in registry if p.accepts_mask} == {"inpaint", "inpaint_only", "inpaint_only+lama",
                                                             "scribble_sketch", "ip-adapter_clip_sd15",
                                                             "ip-adapter_clip_sdxl", "ip-adapter_clip_sdxl_plus_vith"}
    assert {p.name for p in registry if p.returns_pose} == {n for n in NEW_MODULES | set(NEURAL_REFERENCE)
                                                            if "openpose" in n}
    assert {p.name for p in registry if p.uses_seed} == {"shuffle"}
    assert {p.name for p in registry if p.soft_injection_in_hires} == {"canny", "mlsd"}
    assert registry.get("shuffle").resolution.value == 512


def test_lookup_by_name_label_and_alias():
    registry = default_registry()
    assert registry.get("inpaint_global_harmonious") is registry.get("inpaint")
    assert registry.get("t2ia_color_grid").name == "color"
    assert registry.get("tile_gaussian").name == "tile_resample"  # the module's name before the rename
    assert registry.get("Canny") is None and registry.get("nope") is None and registry.get(None) is None


def test_module_list_order_follows_the_reference_rule():
    names = module_list(default_registry())
    assert names[0] == "none"
    # the reference's own order of its priority > 0 entries (reference-extension.md section 5); modules other
    # issues add later slot in between, so only the relative order is asserted
    reference_order = ["ip-adapter-auto", "tile_resample", "pidinet", "oneformer_ade20k", "pidinet_scribble",
                       "revision_clipvision", "reference_only", "recolor_luminance", "openpose_full", "normal_bae",
                       "mlsd", "lineart_standard", "ip-adapter_clip_sd15", "inpaint_only", "depth", "canny",
                       "invert"]
    present = [n for n in reference_order if n in names]
    assert [n for n in names if n in present] == present
    assert {"tile_resample", "reference_only", "canny", "invert"} <= set(present)
    registry = default_registry()
    keys = [str(registry.get(n).priority).zfill(8) + registry.get(n).label for n in names[1:]]
    assert keys == sorted(keys, reverse=True)
    labels = module_list(default_registry(), alias_names=True)
    assert "inpaint_global_harmonious" in labels and "inpaint" not in labels
    # Priority 0 modules come in descending label order.
    zero = [p.label for p in default_registry().sorted() if p.priority == 0]
    assert zero == sorted(zero, reverse=True)


def test_module_detail_matches_the_reference_for_canny():
    detail = module_detail(default_registry())["canny"]
    assert detail == {"model_free": False, "sliders": [
        {"name": "Resolution", "value": 512, "min": 64, "max": 2048, "step": 8},
        {"name": "Low Threshold", "value": 100, "min": 1, "max": 255, "step": 1},
        {"name": "High Threshold", "value": 200, "min": 1, "max": 255, "step": 1},
    ]}
    assert module_detail(default_registry())["invert"]["sliders"] == []
    assert [s["name"] for s in module_detail(default_registry())["tile_resample"]["sliders"]] == \
        ["Resolution", "Down Sampling Rate"]


def test_every_declaration_file_contributes_and_registering_twice_fails():
    found = builtin_preprocessors()
    assert len(found) == len(default_registry())
    registry = Registry(found)
    with pytest.raises(ValueError, match="already registered"):
        registry.register(Preprocessor(name="other", label="canny", run=lambda image, params: image))


def test_a_new_preprocessor_is_one_declaration():
    registry = Registry()
    registry.register(Preprocessor(name="half", run=lambda image, p: image // 2, tags=("Test",),
                                   slider_1=Slider("Amount", 1, 0, 2)))
    assert registry.tags() == ["All", "Test"]
    assert module_detail(registry)["half"]["sliders"][1]["name"] == "Amount"


def test_resolve_params_defaults_ranges_and_ignored_sliders():
    registry = default_registry()
    canny = registry.get("canny")
    assert resolve_params(canny) == Params(512, 100, 200)
    assert resolve_params(canny, 768, 50, 150) == Params(768, 50, 150)
    assert resolve_params(canny, None, -1, 255.0) == Params(512, 100, 255)
    with pytest.raises(InputError) as info:
        resolve_params(canny, 512, 300, 200)
    assert info.value.field == "threshold_a" and "1 and 255" in info.value.message
    with pytest.raises(InputError) as info:
        resolve_params(canny, 32, fields=("controlnet_processor_res", "a", "b"))
    assert info.value.field == "controlnet_processor_res"
    with pytest.raises(InputError):
        resolve_params(canny, 512, float("nan"))
    # Sliders a module does not have, or shows but does not use, take any value and keep their default.
    assert resolve_params(registry.get("invert"), 99999, 64, 64) == Params(512, 0.5, 0.5)
    assert resolve_params(registry.get("tile_resample"), 99999, 2.0).slider_1 == 2.0
    assert resolve_params(registry.get("shuffle"), 1024).resolution == 512
    assert resolve_params(registry.get("shuffle"), seed=2**32 + 5).seed == 5


@pytest.mark.parametrize("name", sorted(REFERENCE.keys() - {"inpaint", "inpaint_only"}
                                        | {"scribble_sketch", "mediapipe_openpose_full"}))
def test_every_module_runs_on_a_real_photo_through_the_registry(name, chelsea_rgb, grace_hopper_rgb):
    p = default_registry().get(name)
    photo = grace_hopper_rgb if "mediapipe" in name else chelsea_rgb
    detection = run_preprocessor(p, photo, resolve_params(p, 384, seed=1))
    out = detection.map
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    if p.resolution.visible and p.resolution.affects_output:
        assert min(out.shape[:2]) == 384  # at the processing resolution
    assert out.any() and detection.display is not None
    assert (detection.pose is not None) == p.returns_pose


def test_inpaint_modules_need_and_keep_the_mask(astronaut_rgb):
    mask = np.zeros((512, 512, 1), np.uint8)
    mask[200:300] = 255
    rgba = np.concatenate([astronaut_rgb, mask], axis=2)
    for name in ("inpaint", "inpaint_only"):
        p = default_registry().get(name)
        detection = run_preprocessor(p, rgba, resolve_params(p))
        assert np.array_equal(detection.map, rgba)
        assert (detection.display[200:300, :, 3] == 128).all()
        with pytest.raises(InputError) as info:
            run_preprocessor(p, astronaut_rgb, resolve_params(p))
        assert info.value.field == "mask"


def test_seg_passthrough_through_the_registry_refuses_photos(astronaut_rgb):
    p = default_registry().get("seg_passthrough")
    with pytest.raises(InputError):
        run_preprocessor(p, astronaut_rgb, resolve_params(p))

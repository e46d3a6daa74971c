"""Union units from user units: the control type from `union_control_type` or the preprocessor's tags,
recorded in infotext, refused naming unit and field when the model has no such task slot."""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from lib_controlnet import InputError, ModelCache
from lib_controlnet.enums import UnionControlType as T
from lib_controlnet.generation import GenerationInputs, prepare_units
from lib_controlnet.kinds.union_unit import UnionUnit
from lib_controlnet.models.registry import ModelRegistry
from lib_controlnet.preprocessors import ResultCache, default_registry
from lib_controlnet.units.infotext import infotext_params, parse_infotext, parse_parameters, quote
from lib_controlnet.units.unit import Unit
from tests.tiny_models import save_state_dict, sdxl_like_unet, union_state_dict_from_unet


def b64png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ControlNet")
    unet = sdxl_like_unet(seed=51)
    save_state_dict(union_state_dict_from_unet(unet, slots=6, seed=52), folder / "xl_promax_tiny.safetensors")
    quadrants = np.zeros((64, 64, 3), np.uint8)  # flat colours: a segmentation map, and edges for canny
    quadrants[:32, 32:] = (120, 120, 80)
    quadrants[32:, :32] = (6, 230, 230)
    quadrants[32:, 32:] = (204, 5, 255)
    image = b64png(quadrants)
    return ModelRegistry([folder]), image


def prepare(env, units):
    registry, image = env
    return prepare_units([Unit.from_dict({"image": image, "model": "xl_promax_tiny", **u}, index=i)
                          for i, u in enumerate(units)],
                         GenerationInputs(width=64, height=64), models=registry, model_cache=ModelCache(),
                         preprocessors=default_registry(), result_cache=ResultCache())


@pytest.mark.parametrize("unit, expected", [
    ({"module": "canny"}, T.HARD_EDGE),
    ({"module": "invert"}, T.HARD_EDGE),  # tags Canny, Lineart, Scribble, MLSD: the first a slot serves
    ({"module": "scribble_xdog"}, T.SOFT_EDGE),
    ({"module": "seg_passthrough"}, T.SEGMENTATION),
    ({"module": "none"}, T.UNKNOWN),  # nothing to go by: the reference's plain path
    ({"module": "none", "union_control_type": "Depth"}, T.DEPTH),
    ({"module": "canny", "union_control_type": 4}, T.NORMAL_MAP),  # explicit wins, int index as the reference
])
def test_the_control_type_comes_from_the_unit_or_its_preprocessor(env, unit, expected):
    (p,) = prepare(env, [unit])
    assert isinstance(p.bound, UnionUnit) and p.bound.control_type == expected
    assert p.unit.union_control_type == expected  # what infotext records


def test_infotext_records_the_type_and_pastes_it_back(env):
    prepared = prepare(env, [{"module": "canny"}, {"module": "none"}])
    params = infotext_params({p.index: p.unit for p in prepared})
    assert "Union Control Type: Hard Edge" in params["ControlNet 0"]
    assert "Union Control Type" not in params["ControlNet 1"]  # Unknown is not written
    text = ", ".join(f"{k}: {quote(v)}" for k, v in params.items())
    pasted = parse_infotext(parse_parameters(text))
    assert pasted[0].union_control_type == T.HARD_EDGE and pasted[1].union_control_type == T.UNKNOWN


def test_a_task_the_model_lacks_fails_naming_unit_and_field(env):
    with pytest.raises(InputError, match="Tile is task slot 6") as e:
        prepare(env, [{"module": "canny"}, {"module": "tile_resample"}])
    assert e.value.unit == 1 and e.value.field == "union_control_type"

"""Where the TEED/MTEED, ZoeDepth, LeReS, DSINE and Depth Anything V1 files are published and looked for, and
how their wrappers ({"depth_model": ...}, {"model": ...}, ZoeDepth's extra keys) are read."""

import pytest
import torch

from annotator.neural import depth_anything, dsine, leres, teed, zoe
from annotator.neural.runtime import AnnotatorModels
from annotator.neural.weights import load_checked
from lib_controlnet.errors import ModelFileError, NotFoundError
from lib_controlnet.models.files import read_model

PUBLISHED_AT = {
    teed.TEED: ("7_model.pth", "TEED",
                "https://huggingface.co/bdsqlsz/qinglong_controlnet-lllite/blob/main/Annotators/7_model.pth"),
    teed.MTEED: ("MTEED.pth", "TEED", "https://huggingface.co/TheMistoAI/MistoLine/blob/main/Anyline/MTEED.pth"),
    zoe.ZOE: ("ZoeD_M12_N.pt", "zoedepth", "https://huggingface.co/lllyasviel/Annotators/blob/main/ZoeD_M12_N.pt"),
    leres.LERES: ("res101.pth", "leres", "https://huggingface.co/lllyasviel/Annotators/blob/main/res101.pth"),
    leres.MERGE: ("latest_net_G.pth", "leres", "https://huggingface.co/lllyasviel/Annotators/blob/main/latest_net_G.pth"),
    dsine.DSINE: ("dsine.pt", "normal_dsine",
                  "https://huggingface.co/bdsqlsz/qinglong_controlnet-lllite/blob/main/Annotators/dsine.pt"),
    depth_anything.DEPTH_ANYTHING_V1: (
        "depth_anything_vitl14.pth", "depth_anything",
        "https://huggingface.co/spaces/LiheYoung/Depth-Anything/blob/main/checkpoints/depth_anything_vitl14.pth"),
}


@pytest.mark.parametrize("spec", list(PUBLISHED_AT), ids=lambda s: s.weight.name)
def test_missing_file_names_file_folder_and_where_it_is_published(tmp_path, spec):
    name, subfolder, url = PUBLISHED_AT[spec]
    with pytest.raises(NotFoundError) as info:
        AnnotatorModels(device="cpu", folder=tmp_path).get(spec)
    message = str(info.value)
    assert info.value.status_code == 404 and name in message and url in message
    assert str(tmp_path) in message and f"'{subfolder}' sub-folder" in message


def test_depth_anything_v1_names_every_size_it_reads():
    message = str(pytest.raises(NotFoundError, AnnotatorModels(device="cpu", folder="/nonexistent").get,
                                depth_anything.DEPTH_ANYTHING_V1).value)
    assert "depth_anything_vitb14.pth" in message and "depth_anything_vits14.pth" in message


def test_res101_keeps_the_network_under_depth_model_beside_other_networks(tmp_path):
    path = tmp_path / "res101.pth"
    inner = {"module.depth_model.decoder_modules.conv1.bias": torch.zeros(256)}
    torch.save({"depth_model": inner, "shift_model": {"module.fc.weight": torch.zeros(1)},
                "focal_model": {"module.fc.weight": torch.zeros(1)}}, path)
    state = leres.LERES.adapt(read_model(path).state_dict)
    assert list(state) == ["depth_model.decoder_modules.conv1.bias"]


def test_zoedepth_file_extras_are_accepted_and_anything_else_refused(tmp_path):
    size = zoe.ZoeSize(dim=32, depth=2, heads=2, hooks=(0, 0, 1, 1), neck=(8, 8, 16, 16), features=8, window=4,
                       relative_features=4, bins=8, bin_embedding=8, attractors=(2, 1, 1, 1))
    net = zoe.ZoeDepth(size)
    state = dict(net.state_dict())
    state.update({f"core.core.pretrained.model.blocks.{i}.attn.relative_position_index":
                  zoe.relative_position_index(4, 4) for i in range(2)})
    state.update({"core.core.pretrained.model.fc_norm.weight": torch.ones(32),
                  "core.core.pretrained.model.head.weight": torch.zeros(1000, 32)})
    path = tmp_path / "ZoeD_M12_N.pt"
    torch.save({"model": state}, path)  # as published: the state dict under "model"
    loaded = read_model(path).state_dict
    load_checked(zoe.ZoeDepth(size), loaded, file_name=path.name, title="ZoeDepth", url="u", ignore=zoe.ZOE.ignore)
    loaded["core.core.pretrained.model.norm.weight"] = torch.ones(32)
    with pytest.raises(ModelFileError, match="core.core.pretrained.model.norm.weight"):
        load_checked(zoe.ZoeDepth(size), loaded, file_name=path.name, title="ZoeDepth", url="u", ignore=zoe.ZOE.ignore)

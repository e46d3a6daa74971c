"""densepose / densepose_parula: the published file is a TorchScript program, run only after an audit.

Tested with TorchScript stand-ins of the published signature (a uint8 3 x H x W image in; boxes, coarse and
fine segmentation, U, V out) that call the torchvision operators the real detector calls, and with archives
edited to do what the audit must refuse (read a file, name a foreign pickle global, use a TorchBind class or a
c10d operator, carry an extra member)."""

import io
import zipfile

import cv2
import numpy as np
import pytest
import torch
from nn_test_helpers import PreloadedModels

from annotator.neural import densepose, torchscript_audit, torchvision_ops
from annotator.neural.runtime import AnnotatorModels
from lib_controlnet.errors import ModelFileError

torchvision_ops.ensure_torchvision_ops()  # the stand-ins below call torch.ops.torchvision.* when scripted


class StandIn(torch.nn.Module):
    """One "person" box (x 40..120, y 20..180 of the image it is given); its fine segmentation is part 12 in the
    left half of the box and part 24 in the right half, and the coarse one says "body" in the top 3/4."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))

    def forward(self, image: torch.Tensor):
        x = image.float()[None] * self.weight
        boxes = torch.tensor([[40.0, 20.0, 120.0, 180.0], [41.0, 20.0, 121.0, 180.0]])
        scores = torch.tensor([0.9, 0.8])
        keep = torch.ops.torchvision.nms(boxes, scores, 0.5)  # the second box overlaps: gone
        rois = torch.cat([torch.zeros(1, 1), boxes[keep]], dim=1)
        pooled = torch.ops.torchvision.roi_align(x, rois, 1.0, 8, 8, 0, True)  # the real head's operator
        size = 16
        fine = torch.zeros(1, 25, size, size) + pooled.mean() * 0.0
        fine[0, 12, :, : size // 2] = 10.0
        fine[0, 24, :, size // 2:] = 10.0
        coarse = torch.zeros(1, 2, size, size)
        coarse[0, 1, : size * 3 // 4] = 10.0
        uv = torch.rand(1, 25, size, size)
        return boxes[keep], coarse, fine, uv, uv


def _save(module: torch.nn.Module, path):
    torch.jit.script(module).save(str(path))
    return path


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    return _save(StandIn(), tmp_path_factory.mktemp("densepose") / "densepose_r50_fpn_dl.torchscript")


def _edited(source, target, suffix: str, old: bytes, new: bytes):
    """A copy of the archive `source` with `old` replaced by `new` in the member ending with `suffix`, or with a
    member `suffix` added (holding `new`) when `old` is empty."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        root = zin.namelist()[0].split("/")[0]
        for info in zin.infolist():
            data = zin.read(info.filename)
            zout.writestr(info, data.replace(old, new) if old and info.filename.endswith(suffix) else data)
        if not old:
            zout.writestr(f"{root}/{suffix}", new)
    return target


def test_the_stand_in_loads_after_the_audit_and_runs_our_torchvision_operators(published):
    torchscript_audit.audit_torchscript(published)
    net = densepose.DENSEPOSE.load(published)
    boxes, coarse, fine, u, v = net(torch.zeros(3, 200, 160, dtype=torch.uint8))
    assert boxes.tolist() == [[40.0, 20.0, 120.0, 180.0]] and fine.shape == (1, 25, 16, 16)


CODE = "test_densepose.py"  # the stand-in's code file in the archive


@pytest.mark.parametrize("suffix, old, new, message", [
    (CODE, b"    x = torch.mul(", b'    _f = torch.from_file("/etc/hostname", None, 3)\n    x = torch.mul(',
     "torch.from_file"),
    (CODE, b"    x = torch.mul(", b"    _b = ops.c10d.barrier()\n    x = torch.mul(", "ops.c10d.barrier"),
    (CODE, b"  training : bool", b"  training : bool\n  store : __torch__.torch.classes.dist_c10d.FileStore",
     "TorchBind"),
    ("data.pkl", b"c__torch__.test_densepose\nStandIn", b"cos\nsystem", "os.system"),
    ("lib/evil.so", b"", b"\x7fELF", "evil.so"),
])
def test_the_audit_refuses_what_could_reach_outside_tensor_code(published, tmp_path, suffix, old, new, message):
    edited = _edited(published, tmp_path / "densepose_r50_fpn_dl.torchscript", suffix, old, new)
    assert edited.read_bytes() != published.read_bytes()
    with pytest.raises(ModelFileError, match="refused to load this TorchScript file") as info:
        AnnotatorModels(device="cpu", folder=tmp_path).get(densepose.DENSEPOSE)
    assert message in str(info.value)


def test_a_state_dict_or_a_pickle_under_the_name_is_refused_and_never_unpickled(tmp_path):
    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(1)}, buffer)  # a torch zip of another kind: no code/, data.pkl at the root
    (tmp_path / "densepose_r50_fpn_dl.torchscript").write_bytes(buffer.getvalue())
    with pytest.raises(ModelFileError, match="refused"):
        AnnotatorModels(device="cpu", folder=tmp_path).get(densepose.DENSEPOSE)
    (tmp_path / "densepose_r50_fpn_dl.torchscript").write_bytes(b"\x80\x02cos\nsystem\n.")  # a raw pickle
    with pytest.raises(ModelFileError, match="not a TorchScript"):
        AnnotatorModels(device="cpu", folder=tmp_path).get(densepose.DENSEPOSE)


class OtherSignature(torch.nn.Module):
    def forward(self, image: torch.Tensor):
        return image.float()


def test_a_torchscript_with_another_signature_is_refused(tmp_path):
    _save(OtherSignature(), tmp_path / "densepose_r50_fpn_dl.torchscript")
    with pytest.raises(ModelFileError, match="does not hold the DensePose R50-FPN-DL network"):
        AnnotatorModels(device="cpu", folder=tmp_path).get(densepose.DENSEPOSE)


def test_roi_align_and_nms_follow_torchvisions_definitions():
    ramp = torch.arange(20, dtype=torch.float32).repeat(10, 1)[None, None]  # value = x
    out = torchvision_ops.roi_align(ramp, torch.tensor([[0.0, 2.0, 1.0, 10.0, 9.0]]), 1.0, 2, 4, 0, True)
    # aligned: the box is x 1.5..9.5, y 0.5..8.5; 4 bins of width 2 along x, centres 2.5, 4.5, 6.5, 8.5
    assert torch.allclose(out[0, 0], torch.tensor([[2.5, 4.5, 6.5, 8.5]] * 2))
    out = torchvision_ops.roi_align(ramp, torch.tensor([[0.0, 2.0, 1.0, 10.0, 9.0]]), 1.0, 2, 4, 2, False)
    assert torch.allclose(out[0, 0], torch.tensor([[3.0, 5.0, 7.0, 9.0]] * 2))  # not aligned: no half pixel
    edge = torchvision_ops.roi_align(ramp, torch.tensor([[0.0, -3.0, 0.0, -1.0, 2.0]]), 1.0, 1, 1, 1, False)
    assert edge.item() == 0.0  # the sample at x = -2 lies more than a pixel outside
    keep = torchvision_ops.nms(torch.tensor([[0, 0, 10, 10], [1, 0, 11, 10], [20, 0, 30, 10]], dtype=torch.float),
                               torch.tensor([0.5, 0.9, 0.7]), 0.5)
    assert keep.tolist() == [1, 2]
    assert torch.ops.torchvision.nms(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []


@pytest.mark.parametrize("cmap", ["viridis", "parula"])
def test_densepose_map_paints_the_parts_of_each_box(photo, published, cmap):
    net = densepose.DENSEPOSE.load(published)
    models = PreloadedModels({"densepose_r50_fpn_dl.torchscript": net})
    out = densepose.densepose(photo, 256, cmap, models=models)
    assert out.shape == (256, 320, 3) and out.dtype == np.uint8
    colormap = cv2.COLORMAP_VIRIDIS if cmap == "viridis" else cv2.COLORMAP_PARULA

    def colour(part):
        return cv2.applyColorMap(np.array([[int(part * 255 / 24)]], np.uint8), colormap)[0, 0, ::-1]

    background = np.array(densepose.VIRIDIS_ZERO if cmap == "viridis" else (0, 0, 0))
    assert (out[5, 5] == background).all()  # outside the box
    assert (out[40, 60] == colour(12)).all() and (out[40, 100] == colour(24)).all()  # left / right half
    assert (out[170, 60] == background).all()  # the box's bottom quarter is not body
    assert densepose.densepose_parula is not None and densepose.int_box(torch.tensor([1.7, 2.2, 10.6, 9.0])) == (
        1, 2, 8, 6)

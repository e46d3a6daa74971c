"""Model discovery, `stem [hash]` names with A1111's old hash, name resolution, and names that try to be paths."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from lib_controlnet.errors import NotFoundError
from lib_controlnet.models import registry as model_registry
from lib_controlnet.models.registry import ModelRegistry, old_model_hash

MiB = 1 << 20


def write_model(path: Path, size: int = MiB + 80_000, seed: int = 0) -> bytes:
    """A real file with distinct bytes in A1111's hash window (1 MiB .. 1 MiB + 64 KiB)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    content = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()
    path.write_bytes(content)
    return content


def expected_hash(content: bytes) -> str:
    return hashlib.sha256(content[0x100000:0x100000 + 0x10000]).hexdigest()[:8]


@pytest.fixture
def folders(tmp_path):
    main, extra, outside = tmp_path / "ControlNet", tmp_path / "extra", tmp_path / "outside"
    contents = {
        "canny": write_model(main / "control_v11p_sd15_canny.pth", seed=1),
        "depth": write_model(main / "sub" / "deeper" / "control_v11f1p_sd15_depth.safetensors", seed=2),
        "canny_xl": write_model(main / "diffusers_xl_canny_full.SAFETENSORS", seed=3),
        "t2i": write_model(extra / "t2ia_canny_sd15.pth", seed=4),
    }
    write_model(main / "None.pth", seed=5)
    (main / "notes.txt").write_text("not a model")
    write_model(outside / "secret.safetensors", seed=6)
    return main, extra, outside, contents


# --- hashes ---------------------------------------------------------------------------------------------
def test_old_hash_reads_64k_at_one_mebibyte(tmp_path):
    big = write_model(tmp_path / "big.bin", size=3 * MiB, seed=7)
    assert old_model_hash(tmp_path / "big.bin") == expected_hash(big)
    partial = write_model(tmp_path / "partial.bin", size=MiB + 1000, seed=8)  # window cut short by the end
    assert old_model_hash(tmp_path / "partial.bin") == hashlib.sha256(partial[MiB:]).hexdigest()[:8]
    write_model(tmp_path / "tiny.pt", size=1000, seed=9)  # nothing in the window: the hash of no bytes
    assert old_model_hash(tmp_path / "tiny.pt") == hashlib.sha256(b"").hexdigest()[:8]
    assert old_model_hash(tmp_path / "missing.pt") == "NOFILE"


def test_names_are_stem_and_hash_in_folder_then_name_order(folders):
    main, extra, _, contents = folders
    names = ModelRegistry([main, extra, main / "does-not-exist"]).list_names()
    assert names == [
        f"control_v11f1p_sd15_depth [{expected_hash(contents['depth'])}]",  # sorted by file name, recursively
        f"control_v11p_sd15_canny [{expected_hash(contents['canny'])}]",
        f"diffusers_xl_canny_full [{expected_hash(contents['canny_xl'])}]",
        f"t2ia_canny_sd15 [{expected_hash(contents['t2i'])}]",  # the second folder after the first
    ]


def test_hash_is_cached_until_the_file_changes(folders, monkeypatch):
    main, _, _, _ = folders
    calls = []
    real = model_registry.old_model_hash
    monkeypatch.setattr(model_registry, "old_model_hash", lambda p: calls.append(p) or real(p))
    model_registry._hash_cache.clear()
    registry = ModelRegistry([main])
    registry.list_names()
    first = len(calls)
    assert first == 3
    registry.list_names(refresh=True)
    assert len(calls) == first  # rescanning costs no rereading
    path = main / "control_v11p_sd15_canny.pth"
    new = write_model(path, seed=42)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    names = registry.list_names(refresh=True)
    assert f"control_v11p_sd15_canny [{expected_hash(new)}]" in names
    assert len(calls) == first + 1


def test_diffusers_folders_are_one_model_named_by_folder(tmp_path):
    root = tmp_path / "models"
    weights = write_model(root / "controlnet-canny-sdxl" / "diffusion_pytorch_model.safetensors", seed=11)
    (root / "controlnet-canny-sdxl" / "config.json").write_text("{}")
    write_model(root / "controlnet-canny-sdxl" / "extra.bin", seed=12)  # inside the folder: part of it
    write_model(root / "half-folder" / "diffusion_pytorch_model.bin", seed=13)  # no config: plain files
    registry = ModelRegistry([root])
    names = registry.list_names()
    assert f"controlnet-canny-sdxl [{expected_hash(weights)}]" in names
    assert not any(n.startswith("extra ") for n in names)
    assert any(n.startswith("diffusion_pytorch_model [") for n in names)
    assert registry.resolve("controlnet-canny-sdxl").path == root / "controlnet-canny-sdxl"


# --- resolution -----------------------------------------------------------------------------------------
def test_resolve_exact_then_stem_then_shortest_containing(folders):
    main, extra, _, contents = folders
    registry = ModelRegistry([main, extra])
    canny = f"control_v11p_sd15_canny [{expected_hash(contents['canny'])}]"
    assert registry.resolve(canny).path == main / "control_v11p_sd15_canny.pth"
    assert registry.resolve("CONTROL_V11P_SD15_CANNY").path == main / "control_v11p_sd15_canny.pth"
    # "canny" is in three stems; the shortest wins
    assert registry.resolve("canny").path == extra / "t2ia_canny_sd15.pth"
    assert registry.resolve("Depth").path.name == "control_v11f1p_sd15_depth.safetensors"


@pytest.mark.parametrize("name", ["control_v11p_sd15_canny [00000000]", "openpose", "None", "", "   "])
def test_unknown_names_raise_not_found_naming_the_model(folders, name):
    main, extra, _, _ = folders
    with pytest.raises(NotFoundError) as info:
        ModelRegistry([main, extra]).resolve(name)
    assert info.value.field == "model" and info.value.status_code == 404
    assert repr(name) in info.value.message
    assert str(main) not in str(info.value)  # server paths stay out of API messages


def test_resolve_rescans_for_a_file_added_later(folders):
    main, _, _, _ = folders
    registry = ModelRegistry([main])
    registry.list_names()
    write_model(main / "control_v11p_sd15_openpose.pth", seed=20)
    assert registry.resolve("openpose").path.name == "control_v11p_sd15_openpose.pth"


def test_first_folder_wins_and_none_is_skipped(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    same = write_model(a / "m.pth", seed=30)
    (b / "m.pth").parent.mkdir()
    (b / "m.pth").write_bytes(same)
    write_model(b / "M.safetensors", seed=31)
    write_model(a / "None.safetensors", seed=32)
    registry = ModelRegistry([a, b])
    names = registry.list_names()
    assert names.count(f"m [{expected_hash(same)}]") == 1 and len(names) == 2
    assert registry.resolve(f"m [{expected_hash(same)}]").path == a / "m.pth"
    assert registry.resolve("m").path == a / "m.pth"
    assert any(p.name == "None.safetensors" for p, _ in registry.skipped)
    with pytest.raises(NotFoundError):
        registry.resolve("None")


def test_sort_orders_and_name_filter(tmp_path):
    root = tmp_path / "m"
    for i, name in enumerate(["b.pth", "a.pth", "c.pth"]):
        write_model(root / name, size=100, seed=i)
        os.utime(root / name, (1_000_000 + i, 1_000_000 + i))
    stems = lambda reg: [n.split(" [")[0] for n in reg.list_names()]
    assert stems(ModelRegistry([root])) == ["a", "b", "c"]
    assert stems(ModelRegistry([root], sort_by="date")) == ["c", "a", "b"]
    assert stems(ModelRegistry([root], name_filter=" B ")) == ["b"]


# --- names are never paths ------------------------------------------------------------------------------
def test_path_like_names_are_refused(folders):
    main, extra, outside, _ = folders
    registry = ModelRegistry([main, extra])
    for name in ["../outside/secret", "../outside/secret.safetensors", str(outside / "secret.safetensors"),
                 str(main / "control_v11p_sd15_canny.pth"), "sub/deeper/control_v11f1p_sd15_depth",
                 "..\\outside\\secret", "..", "canny\0"]:
        with pytest.raises(NotFoundError) as info:
            registry.resolve(name)
        assert info.value.field == "model"
    assert registry.resolve("depth").path.is_relative_to(main)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_symlinks_pointing_outside_are_not_models(folders):
    main, _, outside, _ = folders
    os.symlink(outside / "secret.safetensors", main / "innocent.safetensors")
    os.symlink(outside, main / "linked_dir")
    inside = main / "alias.pth"
    os.symlink(main / "control_v11p_sd15_canny.pth", inside)  # a link within the folder is fine
    os.symlink(main, main / "sub" / "loop")  # a loop back up
    registry = ModelRegistry([main])
    names = registry.list_names()
    assert not any("innocent" in n or "secret" in n for n in names)
    assert any(n.startswith("alias [") for n in names)
    skipped = {p.name for p, why in registry.skipped if "outside" in why}
    assert skipped == {"innocent.safetensors", "linked_dir"}
    for name in ("innocent", "secret"):
        with pytest.raises(NotFoundError):
            registry.resolve(name)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_a_file_swapped_for_an_outside_link_after_the_scan_is_refused(folders):
    main, _, outside, _ = folders
    registry = ModelRegistry([main])
    entry = registry.resolve("canny")
    entry.path.unlink()
    os.symlink(outside / "secret.safetensors", entry.path)
    with pytest.raises(NotFoundError, match="outside the model folders"):
        registry.resolve("control_v11p_sd15_canny")


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_a_model_folder_that_is_itself_a_link_works(tmp_path, folders):
    main, _, _, contents = folders
    link = tmp_path / "link_to_models"
    os.symlink(main, link)
    registry = ModelRegistry([link])
    assert f"control_v11p_sd15_canny [{expected_hash(contents['canny'])}]" in registry.list_names()
    assert registry.resolve("canny_full").path.name == "diffusers_xl_canny_full.SAFETENSORS"

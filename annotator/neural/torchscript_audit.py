"""Reading a published TorchScript file (densepose_r50_fpn_dl.torchscript) only after checking what it can do.

What `torch.jit.load` does with an archive: it unpickles `data.pkl` / `constants.pkl` with torch's own C++
unpickler, which builds only tensors, containers and the classes defined in the archive's `code/` (no Python
globals, so none of pickle's code execution); it compiles `code/**.py`, which is TorchScript, a typed subset of
Python that can call Python nothing but every operator registered with torch - and among those are some that
touch the outside world: `aten::from_file` reads any file into a tensor, `aten::save` writes one, `c10d`
operators and TorchBind classes (`torch.classes.*`, e.g. distributed stores) open files and sockets, and
`__setstate__` methods run while loading.

So a TorchScript file is a program, and we run one only if it stays within pure tensor computation: before it is
loaded, every member of the zip, every global its pickles name and every name its code uses is checked, and the
file is refused (422, saying what was found) if it
- holds anything but the archive's usual members (pickles, code, tensor data, version records, extra files),
- names in a pickle anything but its own `__torch__` classes and torch's tensor-rebuilding functions,
- uses TorchBind classes, operators outside the aten / prim / torchvision namespaces, or an aten operator that
  reads or writes files.
What it can still do: any tensor computation (so, like any model, use memory and time, or compute a wrong
map), and the C++ reader's own robustness against a crafted archive is torch's. That is what running the
reference's own file needs; the reference loads it with no check at all.
"""

from __future__ import annotations

import ast
import pickletools
import re
import zipfile
from pathlib import Path

from lib_controlnet.errors import ModelFileError

ALLOWED_NAMESPACES = {"aten", "prim", "torchvision"}
# Operators (under torch.* or torch.ops.aten.*) that read or write files.
FILE_OPERATORS = {"from_file", "save", "load", "load_tensor", "_load_for_mobile", "_save_for_mobile"}
PICKLE_GLOBALS = {
    ("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor"),
    ("torch.jit._pickle", "build_intlist"), ("torch.jit._pickle", "build_doublelist"),
    ("torch.jit._pickle", "build_boollist"), ("torch.jit._pickle", "build_tensorlist"),
    ("torch.jit._pickle", "build_tensor_from_id"), ("torch.jit._pickle", "restore_type_tag"),
    ("torch", "device"),
}
_STORAGE = re.compile(r"[A-Za-z0-9]*Storage")
_MEMBER = re.compile(r"[^/]+/(data\.pkl|constants\.pkl|version|byteorder|\.data/[^/]+|data/\d+|constants/\d+"
                     r"|code/.+\.py|code/.+\.py\.debug_pkl|code/.+\.pkl|extra/.+)")


def _refuse(path: Path, what: str) -> ModelFileError:
    return ModelFileError(f"{path.name}: refused to load this TorchScript file, {what}. Only the published file "
                          "(pure tensor code) is run", field="module")


def _check_pickle(path: Path, member: str, data: bytes) -> None:
    try:
        opcodes = list(pickletools.genops(data))
    except Exception as exc:  # a corrupt pickle
        raise _refuse(path, f"its {member} is not a readable pickle ({exc})") from exc
    for opcode, arg, _pos in opcodes:
        if opcode.name == "STACK_GLOBAL":
            raise _refuse(path, f"its {member} builds objects in a way TorchScript archives do not")
        if opcode.name in ("GLOBAL", "INST"):
            module, name = str(arg).split(" ", 1)
            ours = module == "__torch__" or module.startswith("__torch__.")
            if ours and ".torch.classes" not in module + ".":
                continue
            if (module, name) in PICKLE_GLOBALS or (module == "torch" and _STORAGE.fullmatch(name)):
                continue
            raise _refuse(path, f"its {member} names {module}.{name}")


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _check_name(path: Path, member: str, name: str) -> None:
    parts = name.split(".")
    if "classes" in parts and parts[0] in ("torch", "__torch__"):
        raise _refuse(path, f"its code uses a TorchBind class ({name}, in {member})")
    if parts[0] == "ops" or parts[:2] == ["torch", "ops"]:
        rest = parts[1:] if parts[0] == "ops" else parts[2:]
        namespace = rest[0] if rest else ""
        if namespace and namespace not in ALLOWED_NAMESPACES:
            raise _refuse(path, f"its code calls {name} (in {member}), an operator outside "
                                f"{', '.join(sorted(ALLOWED_NAMESPACES))}")
    if parts[0] in ("torch", "ops") and parts[-1] in FILE_OPERATORS:
        raise _refuse(path, f"its code calls {name} (in {member}), which reads or writes files")


def audit_torchscript(path: str | Path) -> None:
    """Raise ModelFileError unless `path` is a TorchScript archive of pure tensor code (see the module doc)."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise _refuse(path, f"it is not a TorchScript (zip) archive ({exc})") from exc
    with archive:
        names = archive.namelist()
        roots = {n.split("/", 1)[0] for n in names}
        if len(roots) != 1 or not any(n.endswith("/data.pkl") for n in names):
            raise _refuse(path, "it does not have the layout of a TorchScript archive")
        for name in names:
            if name.endswith("/"):
                continue
            if not _MEMBER.fullmatch(name):
                raise _refuse(path, f"it holds {name}, which a TorchScript archive does not")
            if name.endswith(".pkl"):
                _check_pickle(path, name, archive.read(name))
            elif name.endswith(".py"):
                try:
                    tree = ast.parse(archive.read(name).decode("utf-8"))
                except (SyntaxError, UnicodeDecodeError, ValueError) as exc:
                    raise _refuse(path, f"its code {name} could not be checked ({exc})") from exc
                for node in ast.walk(tree):
                    if isinstance(node, ast.Attribute | ast.Name) and not isinstance(
                            getattr(node, "ctx", None), ast.Store):
                        dotted = _dotted(node)
                        if dotted:
                            _check_name(path, name, dotted)

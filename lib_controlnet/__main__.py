"""`python -m lib_controlnet [PATH ...] [--demo]`: what are these control model files?

Prints, per file or diffusers folder, its format, family, SDXL variant, residual count and size, or the
error that explains why it cannot be used. Files that are readable but hold no control model (the SD
checkpoint `launch.py` writes, VAEs, annotator weights) are listed together on one line. Without paths it
scans `models/`. `--demo` first writes a small random-weight ControlNet in the original layout (clearly named
as such) and runs it once.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from .errors import ControlNetError, NotAControlModelError
from .models.files import MODEL_SUFFIXES
from .models.loading import load_control_model

ROOT = Path(__file__).resolve().parent.parent


def candidates(paths: list[Path]) -> list[Path]:
    found = []
    for p in paths:
        if p.is_dir() and not (p / "config.json").exists():
            found += sorted(
                q for q in p.rglob("*") if q.suffix.lower() in MODEL_SUFFIXES or (q / "config.json").exists()
            )
        else:
            found.append(p)
    return found


def describe(path: Path) -> str:
    """One line about the file; NotAControlModelError for a readable file that holds no control model."""
    try:
        model = load_control_model(path)
    except NotAControlModelError:
        raise
    except ControlNetError as e:
        return f"{path.name}: cannot be used: {e.message}"
    return f"{path.name}: {model.describe()}"


def write_demo_model(folder: Path) -> Path:
    """A random-weight SD1-layout ControlNet at 1/10 width: real key names, not a real model."""
    from safetensors.torch import save_file

    from .models.networks.arch import ControlNetArch, DownSpec, HintConv, ResSpec
    from .models.networks.controlnet import ControlNet

    widths = (3, 16, 16, 32, 32, 96, 96, 256, 32)
    hint = tuple(HintConv(widths[i], widths[i + 1], 3, 2 if i in (2, 4, 6) else 1) for i in range(8))
    blocks = []
    for level, ch in enumerate((32, 64, 64, 64)):
        prev = 32 if level == 0 else (32, 64, 64, 64)[level - 1]
        depth = 1 if level < 3 else None
        blocks += [ResSpec(prev, ch, depth, level), ResSpec(ch, ch, depth, level)]
        if level < 3:
            blocks.append(DownSpec(ch, level))
    arch = ControlNetArch(4, 32, hint, tuple(blocks), ("res", "attn", "res"), 1, 32, False, None, num_heads=8)
    torch.manual_seed(0)
    net = ControlNet(arch)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.05)
    path = folder / "demo_random_weights_controlnet.safetensors"
    save_file({"control_model." + k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib_controlnet", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="model files or folders (default: models/)")
    parser.add_argument("--demo", action="store_true", help="also write and run a random-weight demo ControlNet")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        paths = list(args.paths) or [ROOT / "models"]
        if args.demo:
            demo = write_demo_model(Path(tmp))
            model = load_control_model(demo)
            g = torch.Generator().manual_seed(0)
            outs = model(torch.randn(2, 4, 32, 32, generator=g), torch.rand(1, 3, 256, 256, generator=g),
                         torch.tensor([999.0, 999.0]), torch.randn(2, 77, 32, generator=g))
            print("demo (random weights, not a real model): residual shapes",
                  ", ".join("x".join(map(str, o.shape[1:])) for o in outs))
            paths.append(demo)
        files = candidates(paths)
        if not files:
            print("no model files found in " + ", ".join(map(str, paths)))
        others = []
        for path in files:
            try:
                print(describe(path))
            except NotAControlModelError:
                others.append(path.name)
        if others:
            print(f"not control models (SD checkpoints, VAEs, annotator weights...), skipped: {', '.join(others)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The CLIP BPE vocabulary as `vocab.json` + `merges.txt`, derived offline from a file an installed package ships.

OpenAI's CLIP tokenizer (and so SD1.x's, `openai/clip-vit-large-patch14`) is defined by one file,
`bpe_simple_vocab_16e6.txt.gz`: a header line, then BPE merges by rank. The `open_clip_torch` wheel ships it
inside its `open_clip/` folder; we locate that folder with `importlib.util.find_spec`, which does not run the
package (importing open_clip would import torchvision). The ids follow the original construction:
256 byte symbols, the same 256 with `</w>`, one entry per merge (48 894 of them), then `<|startoftext|>` (49406)
and `<|endoftext|>` (49407): 49 408 tokens, as the published text encoder's embedding table.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
from pathlib import Path

from lib_controlnet.errors import MissingDependencyError

BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
NUM_MERGES = 49152 - 256 - 2  # the original tokenizer uses this many merges of the file, no more
START_TOKEN, END_TOKEN = "<|startoftext|>", "<|endoftext|>"
VOCAB_SIZE = 256 * 2 + NUM_MERGES + 2


def find_bpe_file() -> Path:
    """The BPE file inside the installed open_clip package, found without importing it."""
    spec = importlib.util.find_spec("open_clip")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / BPE_FILE
        if path.exists():
            return path
    raise MissingDependencyError(
        f"the CLIP tokenizer vocabulary ({BPE_FILE}) was not found: install it with "
        "`pip install --no-deps open_clip_torch==3.3.0` (--no-deps: its dependencies would pull torchvision)"
    )


def byte_symbols() -> list[str]:
    """The 256 printable stand-ins for bytes that byte-level BPE uses (GPT-2's table), in vocabulary order.

    Printable Latin-1 bytes stand for themselves and come first; the other bytes follow in byte order,
    mapped to code points from 256 upwards. The order matters: it fixes the ids of the first 512 tokens.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256)]
    others = [b for b in range(256) if b not in set(printable)]
    return [chr(b) for b in printable] + [chr(256 + n) for n in range(len(others))]


def read_merges(bpe_file: Path) -> list[str]:
    with gzip.open(bpe_file) as f:
        lines = f.read().decode("utf-8").split("\n")
    merges = lines[1 : NUM_MERGES + 1]  # line 0 is the header ("...#version: 0.2")
    if len(merges) != NUM_MERGES or any(len(m.split()) != 2 for m in merges):
        raise MissingDependencyError(f"{bpe_file}: not the CLIP BPE file (expected {NUM_MERGES} merges)")
    return merges


def build_vocab(merges: list[str]) -> dict[str, int]:
    base = byte_symbols()
    tokens = base + [s + "</w>" for s in base] + ["".join(m.split()) for m in merges] + [START_TOKEN, END_TOKEN]
    return {token: i for i, token in enumerate(tokens)}


def write_tokenizer_files(folder: Path, bpe_file: Path | None = None) -> tuple[Path, Path]:
    """Write `vocab.json` and `merges.txt` (the Hugging Face CLIPTokenizer files) into `folder`, once."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
    if vocab_path.exists() and merges_path.exists():
        return vocab_path, merges_path
    merges = read_merges(bpe_file or find_bpe_file())
    _write_atomic(merges_path, "#version: 0.2\n" + "\n".join(merges) + "\n")
    _write_atomic(vocab_path, json.dumps(build_vocab(merges), ensure_ascii=False))
    return vocab_path, merges_path


def _write_atomic(path: Path, text: str) -> None:
    # A second process (or an interrupted first one) never sees half a file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def load_tokenizer(folder: Path):
    """A `transformers.CLIPTokenizer` over the derived files; prompts are chunked by us, so no length cap."""
    from transformers import CLIPTokenizer

    vocab_path, merges_path = write_tokenizer_files(folder)
    return CLIPTokenizer(str(vocab_path), str(merges_path), model_max_length=10**6)

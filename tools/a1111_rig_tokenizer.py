"""The Hugging Face cache entry `openai/clip-vit-large-patch14` (tokenizer and config, no weights), made offline.

A1111's SD1.5 text encoder calls `from_pretrained("openai/clip-vit-large-patch14")` for its tokenizer and its
config (the weights come from the checkpoint). `vocab.json` and `merges.txt` are rebuilt from the BPE merges that
open_clip (and openai's `clip`) ship as `bpe_simple_vocab_16e6.txt.gz`, the way CLIP's own tokenizer builds its
vocabulary; `config.json` is the ViT-L/14 architecture. The result is checked against openai's tokenizer.

Run with the WebUI's python: `python tools/a1111_rig_tokenizer.py HF_HOME`. Idempotent: an entry with the same
files is left alone (and not checked again).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import sys
from pathlib import Path

REPO = "models--openai--clip-vit-large-patch14"
SPECIALS = ("<|startoftext|>", "<|endoftext|>")
N_MERGES = 49152 - 256 - 2  # CLIP's vocabulary: 256 bytes, 256 word-final bytes, these merges, 2 specials

TEXT = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
            max_position_embeddings=77, vocab_size=49408, hidden_act="quick_gelu", layer_norm_eps=1e-5,
            projection_dim=768, bos_token_id=0, eos_token_id=2, pad_token_id=1, attention_dropout=0.0,
            dropout=0.0, initializer_factor=1.0, initializer_range=0.02, model_type="clip_text_model")
VISION = dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=24,
              image_size=224, patch_size=14, num_channels=3, hidden_act="quick_gelu", layer_norm_eps=1e-5,
              projection_dim=768, attention_dropout=0.0, dropout=0.0, initializer_factor=1.0,
              initializer_range=0.02, model_type="clip_vision_model")
CONFIG = dict(architectures=["CLIPModel"], model_type="clip", projection_dim=768, logit_scale_init_value=2.6592,
              initializer_factor=1.0, text_config=TEXT, vision_config=VISION, torch_dtype="float32")
TOKENIZER_CONFIG = dict(tokenizer_class="CLIPTokenizer", model_max_length=77, do_lower_case=True,
                        add_prefix_space=False, errors="replace", bos_token=SPECIALS[0], eos_token=SPECIALS[1],
                        unk_token=SPECIALS[1], pad_token=SPECIALS[1])
SPECIAL_TOKENS = dict(bos_token=SPECIALS[0], eos_token=SPECIALS[1], unk_token=SPECIALS[1], pad_token=SPECIALS[1])


def byte_symbols() -> list[str]:
    """The printable stand-in for each byte value, in CLIP's (and GPT-2's) order: printable Latin-1 bytes stand
    for themselves, the others are shifted past 255."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = [b for b in range(256) if b not in kept]
    return [chr(b) for b in kept] + [chr(256 + i) for i in range(len(shifted))]


def bpe_file() -> bytes:
    for package in ("open_clip", "clip"):
        spec = importlib.util.find_spec(package)  # found, not imported: importing either would import torch
        for folder in (spec and spec.submodule_search_locations) or ():
            path = Path(folder) / "bpe_simple_vocab_16e6.txt.gz"
            if path.is_file():
                return path.read_bytes()
    raise SystemExit("neither open_clip nor clip (with bpe_simple_vocab_16e6.txt.gz) is installed")


def files() -> dict[str, bytes]:
    merges = gzip.decompress(bpe_file()).decode("utf-8").split("\n")[1:N_MERGES + 1]
    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges] + list(SPECIALS)
    vocab = {token: i for i, token in enumerate(tokens)}
    assert len(vocab) == len(tokens) == TEXT["vocab_size"], (len(vocab), len(tokens))

    def dump(obj) -> bytes:
        return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")

    return {"vocab.json": dump(vocab), "merges.txt": ("#version: 0.2\n" + "\n".join(merges) + "\n").encode("utf-8"),
            "config.json": dump(CONFIG), "tokenizer_config.json": dump(TOKENIZER_CONFIG),
            "special_tokens_map.json": dump(SPECIAL_TOKENS)}


def write(hf_home: Path) -> tuple[Path, bool]:
    """The snapshot folder, and whether it was (re)written."""
    content = files()
    digest = hashlib.sha1(b"".join(name.encode() + data for name, data in sorted(content.items()))).hexdigest()
    repo = hf_home / "hub" / REPO
    snapshot = repo / "snapshots" / digest
    if all((snapshot / n).is_file() and (snapshot / n).read_bytes() == d for n, d in content.items()) \
            and (repo / "refs" / "main").is_file() and (repo / "refs" / "main").read_text() == digest:
        return snapshot, False
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, data in content.items():
        (snapshot / name).write_bytes(data)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(digest)
    return snapshot, True


def check(snapshot: Path) -> None:
    """Our entry tokenizes as openai's own tokenizer does (CLIP's simple_tokenizer, in the WebUI's venv)."""
    from transformers import CLIPTokenizer

    ours = CLIPTokenizer.from_pretrained(str(snapshot))
    text = "A photo of a red house by the lake, 4k, très détaillé!! <lora:x:0.5> (masterpiece:1.2)"
    got = ours(text)["input_ids"]
    try:
        from clip.simple_tokenizer import SimpleTokenizer
    except ImportError:
        return
    theirs = SimpleTokenizer()
    want = [theirs.encoder[SPECIALS[0]], *theirs.encode(text), theirs.encoder[SPECIALS[1]]]
    if got != want:
        raise SystemExit(f"the rebuilt CLIP tokenizer differs from openai's:\n ours   {got}\n theirs {want}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python tools/a1111_rig_tokenizer.py HF_HOME")
    snap, written = write(Path(sys.argv[1]))
    if written:
        check(snap)
    print(f"[a1111-rig] CLIP tokenizer entry: {snap}", file=sys.stderr)

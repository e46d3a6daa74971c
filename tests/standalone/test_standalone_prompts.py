"""The CLIP vocabulary derived from the installed BPE file, and A1111's prompt syntax and chunking."""

from __future__ import annotations

import json

import pytest
import torch

from standalone.clip_vocab import NUM_MERGES, VOCAB_SIZE, build_vocab, byte_symbols, find_bpe_file, read_merges
from standalone.paths import tokenizer_dir
from standalone.prompt_encoder import CHUNK, PromptEncoder, pad_to_same_length
from standalone.prompt_parser import BREAK, parse_emphasis


@pytest.fixture(scope="module")
def tokenizer(sd_model):
    return sd_model.prompts.tokenizer


# Ids of openai/clip-vit-large-patch14's tokenizer (as SD1.x prompts are tokenized everywhere).
KNOWN_IDS = {
    "a photo of a cat": [320, 1125, 539, 320, 2368],
    "a dog": [320, 1929],
    "masterpiece, best quality": [12066, 267, 949, 3027],
    "Hello World!": [3306, 1002, 256],  # lower-cased; "!" alone is a byte token
    "A cat.": [320, 2368, 269],
}


@pytest.mark.parametrize("text", sorted(KNOWN_IDS))
def test_known_token_ids(tokenizer, text):
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == KNOWN_IDS[text]
    assert tokenizer(text)["input_ids"] == [49406, *KNOWN_IDS[text], 49407]


def test_vocabulary_shape_and_special_tokens(models_dir, sd_model):
    vocab = json.loads((tokenizer_dir(models_dir) / "vocab.json").read_text(encoding="utf-8"))
    assert len(vocab) == VOCAB_SIZE == 49408 == sd_model.prompts.model.config.vocab_size
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407
    assert sorted(vocab.values()) == list(range(VOCAB_SIZE))
    symbols = byte_symbols()
    assert len(set(symbols)) == 256 and symbols[0] == "!" and vocab["a</w>"] == 256 + symbols.index("a")
    merges = read_merges(find_bpe_file())
    assert len(merges) == NUM_MERGES and merges[0] == "i n"
    # each merge's result gets the next id after the 512 byte tokens, in rank order
    assert vocab["in"] == 512 and build_vocab(merges)["".join(merges[-1].split())] == 49405
    merges_file = (tokenizer_dir(models_dir) / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges_file[0].startswith("#version") and merges_file[1:] == merges


def test_emphasis_syntax():
    expected = [("a ", 1.0), ("red", 1.5), (" ", 1.0), ("cat", pytest.approx(1 / 1.1))]
    assert parse_emphasis("a (red:1.5) [cat]") == expected
    assert parse_emphasis("(a (b) c)") == [("a ", 1.1), ("b", pytest.approx(1.21)), (" c", 1.1)]
    assert parse_emphasis(r"\(not weighted\)") == [("(not weighted)", 1.0)]
    assert parse_emphasis("(open") == [("open", pytest.approx(1.1))]
    assert parse_emphasis("one BREAK two") == [("one", 1.0), (BREAK, -1.0), ("two", 1.0)]
    assert parse_emphasis("") == [("", 1.0)]
    assert parse_emphasis("time: 5") == [("time: 5", 1.0)]


def test_chunks_of_75_with_comma_backtrack(sd_model):
    enc: PromptEncoder = sd_model.prompts
    one = enc.chunks("cat")
    assert len(one) == 1 and one[0].ids[:3] == [49406, 2368, 49407] and len(one[0].ids) == 77
    assert set(one[0].ids[2:]) == {49407}
    words = " ".join(["cat"] * 80)
    two = enc.chunks(words)
    assert [c.ids.count(2368) for c in two] == [75, 5]
    # a comma within the last 20 tokens of a full chunk: the words after it move to the next chunk
    text = " ".join(["cat"] * 70) + ", " + " ".join(["dog"] * 10)
    parts = enc.chunks(text)
    assert parts[0].ids[1:72] == [2368] * 70 + [267] and parts[0].ids.count(1929) == 0
    assert parts[1].ids.count(1929) == 10
    assert len(enc.chunks("cat BREAK dog")) == 2


def test_encode_shapes_emphasis_and_padding(sd_model):
    enc: PromptEncoder = sd_model.prompts
    short = enc.encode(["a cat"])
    long = enc.encode([" ".join(["cat"] * 80)])
    hidden = enc.model.config.hidden_size
    assert short.shape == (1, 77, hidden) and long.shape == (1, 154, hidden)
    a, b = pad_to_same_length(short, long, enc.encode([""]))
    assert a.shape == b.shape == (1, 154, hidden)
    assert torch.equal(a[:, 77:], enc.encode([""]))
    plain, weighted = enc.encode(["a cat"]), enc.encode(["a (cat:1.5)"])
    assert not torch.equal(plain, weighted)
    assert torch.allclose(plain.mean(), weighted.mean(), atol=1e-6)  # "Original" emphasis keeps the mean
    assert not torch.equal(enc.encode(["a cat"], clip_skip=2), plain)
    assert len(enc.chunks("(" + " ".join(["cat"] * CHUNK) + ":1.2)")) == 1

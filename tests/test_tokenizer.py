"""Tests for ldm/tokenizer.py: parity with the reference CLIP tokenizer and SD v1 padding."""
import hashlib
import html
import re
from pathlib import Path

import ftfy
import pytest
import torch

from ldm.schedule import MAX_TOKENS
from ldm.tokenizer import BOS, DEFAULT_VOCAB, EOS, CLIPTokenizer, clean_text, get_tokenizer

# Expected ids computed by the reference, not by ldm.tokenizer: SimpleTokenizer().encode(text) from
# open_clip/tokenizer.py in the open_clip_torch 3.3.0 wheel (OpenAI CLIP's simple tokenizer), with ftfy 6.3.1.
REFERENCE_IDS = {
    "a photo of sks person": [320, 1125, 539, 48136, 2533],
    "joepenna person": [683, 1178, 8095, 2533],
    "A portrait of a man, oil painting": [320, 5352, 539, 320, 786, 267, 2870, 3086],
    "hello world!": [3306, 1002, 256],
    "it's 2026": [585, 568, 273, 271, 273, 277],
    "un château près de la mer": [2271, 48669, 24931, 766, 41210, 654, 1210, 2452],
    "wow!!! (masterpiece), best-quality: 8k... #art @home":
        [2781, 995, 263, 12066, 2361, 949, 268, 3027, 281, 279, 330, 678, 258, 794, 287, 1137],
    "it\u2019s a dog\u2019s life": [585, 568, 320, 1929, 568, 970],
    "salt &amp; pepper": [6611, 261, 8253],
    "  multiple   spaces\tand\nnew lines  ": [6470, 9006, 537, 686, 3418],
    "cafe\u0301 a cat \U0001F431 \u4e00\u53ea\u732b": [15304, 320, 2368, 22979, 19759, 222, 34517, 103, 163, 234, 360],
    "": [],
}

# Text users paste, and the text OpenAI's CLIP tokenizer (with ftfy 6.3.1) tokenizes in its place.
PASTED_TEXT = {
    "caf\u00c3\u00a9 au lait": "caf\u00e9 au lait",  # mojibake: UTF-8 bytes read as Latin-1
    "l\u2019\u00c3\u00a9t\u00c3\u00a9": "l'\u00e9t\u00e9",
    "\u00e2\u20ac\u0153smart\u00e2\u20ac\u009d quotes": '"smart" quotes',  # mojibake of curly quotes
    "\ufeffa photo of sks person": "a photo of sks person",  # byte-order mark from a text file
    "\uff21\uff22\uff23\uff11\uff12\uff13": "abc123",  # full-width letters and digits
    "\ufb01ne art, \ufb02oral": "fine art, floral",  # ligatures
    "\u4e00\u53ea\u732b\uff0c\u5f88\u53ef\u7231\u3002": "\u4e00\u53ea\u732b,\u5f88\u53ef\u7231\u3002",  # CJK punctuation
    "\x1b[31mred\x1b[0m dress": "red dress",  # ANSI colour escapes from a terminal
    "it\u2019s \u201cquoted\u201d": "it's \"quoted\"",
    "salt &amp;amp; pepper": "salt & pepper",  # entities escaped twice
    "a\u00a0b\u2003c\x1fd": "a b cd",  # no-break and em spaces; a control character dropped
    "  Multiple   SPACES\tand\nnew lines  ": "multiple spaces and new lines",
}


def openai_clean(text: str) -> str:
    """OpenAI CLIP simple_tokenizer's whitespace_clean(basic_clean(text)).lower(), step by step."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return re.sub(r"\s+", " ", text).strip().lower()


@pytest.mark.parametrize("raw, cleaned", PASTED_TEXT.items())
def test_clean_text_matches_openai_cleanup(raw, cleaned):
    assert openai_clean(raw) == cleaned  # the table says what the reference does
    assert clean_text(raw) == cleaned


@pytest.mark.parametrize("raw, cleaned", PASTED_TEXT.items())
def test_pasted_text_tokenizes_as_its_clean_form(tok, raw, cleaned):
    assert tok.encode(raw) == tok.encode(cleaned)


def test_full_width_text_has_reference_ids(tok):
    assert tok.encode("\uff21 \uff50\uff48\uff4f\uff54\uff4f of sks person") == REFERENCE_IDS["a photo of sks person"]


@pytest.fixture(scope="module")
def tok() -> CLIPTokenizer:
    return get_tokenizer()


@pytest.mark.parametrize("text, expected", REFERENCE_IDS.items())
def test_encode_matches_reference(tok, text, expected):
    assert tok.encode(text) == expected


def test_special_tokens(tok):
    assert (BOS, EOS) == (49406, 49407)
    assert tok.encoder["<|startoftext|>"] == BOS and tok.encoder["<|endoftext|>"] == EOS
    assert tok.vocab_size == 49408
    assert tok.encode("<|startoftext|>hi<|endoftext|>") == [BOS, 1883, EOS]


def test_call_pads_with_eos(tok):
    batch = tok(["a photo of sks person", ""])
    assert batch.dtype == torch.long and batch.shape == (2, MAX_TOKENS) == (2, 77)
    expected = [BOS, *REFERENCE_IDS["a photo of sks person"], EOS]
    assert batch[0].tolist() == expected + [EOS] * (77 - len(expected))
    assert batch[1].tolist() == [BOS] + [EOS] * 76


def test_call_truncates_long_prompt(tok):
    prompt = " ".join(f"word{i}" for i in range(200))
    ids = tok([prompt])
    assert ids.shape == (1, 77)
    assert ids[0, 0] == BOS and ids[0, -1] == EOS
    assert ids[0, 1:-1].tolist() == tok.encode(prompt)[:75]


def test_token_count(tok):
    assert tok.token_count("sks") == 1
    assert tok.token_count("joepenna") == 3
    assert tok.token_count("a photo of sks person") == 5


def test_decode_round_trip(tok):
    for text in ["a photo of sks person", "un château près de la mer", "hello world"]:
        assert tok.decode(tok.encode(text)) == text
    assert tok.decode(tok(["a photo of sks person"])[0]) == "a photo of sks person"


def test_decode_rejects_unknown_id(tok):
    with pytest.raises(ValueError, match="outside the CLIP vocabulary"):
        tok.decode([49408])


def test_vocab_sha256_matches_readme():
    readme = (DEFAULT_VOCAB.parent / "README.md").read_text()
    recorded = re.search(r"sha256: `([0-9a-f]{64})`", readme).group(1)
    assert hashlib.sha256(DEFAULT_VOCAB.read_bytes()).hexdigest() == recorded


def test_missing_vocab_is_a_clear_error(tmp_path: Path):
    with pytest.raises(ValueError, match="CLIP vocabulary not found"):
        CLIPTokenizer(tmp_path / "missing.txt.gz")


def test_get_tokenizer_is_cached():
    assert get_tokenizer() is get_tokenizer()

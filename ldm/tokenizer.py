"""Offline CLIP BPE tokenizer: the ids Stable Diffusion v1's text encoder expects.

A re-implementation of OpenAI CLIP's "simple tokenizer" (as used by openai/clip-vit-large-patch14):
clean the text as CLIP does (``ftfy.fix_text``, HTML entities unescaped twice, whitespace collapsed,
lower case), split it with CLIP's regex, map each UTF-8 byte to a printable character and apply the
BPE merges shipped in ``ldm/vocab/bpe_simple_vocab_16e6.txt.gz`` (see ``ldm/vocab/README.md``). Nothing is downloaded.

Usage::

    tok = get_tokenizer()                  # cached default instance; reads the vocabulary once
    ids = tok(["a photo of sks person"])   # LongTensor [1, 77]: BOS, ids, EOS, padded with EOS
    tok.token_count("sks")                 # 1: a good rare token is a single BPE token
"""
import functools
import gzip
import html
import re
from pathlib import Path

import ftfy
import regex
import torch

from ldm.schedule import MAX_TOKENS

DEFAULT_VOCAB = Path(__file__).parent / "vocab" / "bpe_simple_vocab_16e6.txt.gz"
NUM_MERGES = 49152 - 256 - 2  # merge lines used by CLIP; the file holds more
BOS_TEXT = "<|startoftext|>"
EOS_TEXT = "<|endoftext|>"
BOS = 49406  # id of <|startoftext|>
EOS = 49407  # id of <|endoftext|>; SD v1 also pads with it
END_OF_WORD = "</w>"
# CLIP's pre-tokenisation: special tokens, English contractions, letter runs, single digits, other symbols.
SPLIT_PATTERN = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
WHITESPACE = re.compile(r"\s+")  # the stdlib's \s, as OpenAI's whitespace_clean (regex's differs on \x1c-\x1f)


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
    """Map every byte 0..255 to a printable unicode character (OpenAI GPT-2/CLIP scheme)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    chars = [chr(b) for b in printable] + [chr(256 + n) for n in range(len(others))]
    return dict(zip(printable + others, chars))


def clean_text(text: str) -> str:
    """CLIP's text cleanup (OpenAI's basic_clean, whitespace_clean, lower case): ftfy repairs mojibake,
    full-width letters, ligatures, curly quotes and terminal escapes, then HTML entities are unescaped twice."""
    text = html.unescape(html.unescape(ftfy.fix_text(text)))
    return WHITESPACE.sub(" ", text).strip().lower()


def read_merges(vocab_path: Path) -> list[tuple[str, str]]:
    """The first NUM_MERGES merge pairs of a CLIP ``bpe_simple_vocab_16e6.txt.gz``."""
    if not vocab_path.is_file():
        raise ValueError(f"CLIP vocabulary not found at {vocab_path}; restore ldm/vocab/{DEFAULT_VOCAB.name} "
                         "or pass vocab_path= pointing at a copy of it")
    lines = gzip.decompress(vocab_path.read_bytes()).decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:NUM_MERGES + 1]]
    if len(merges) != NUM_MERGES or any(len(m) != 2 for m in merges):
        raise ValueError(f"{vocab_path} is not CLIP's bpe_simple_vocab_16e6.txt.gz "
                         f"(expected {NUM_MERGES} merge pairs after the header)")
    return merges


def build_vocab(merges: list[tuple[str, str]]) -> list[str]:
    """Token strings in id order: bytes, bytes + '</w>', merges, then the two special tokens."""
    byte_chars = list(bytes_to_unicode().values())
    return [*byte_chars, *(c + END_OF_WORD for c in byte_chars), *("".join(m) for m in merges), BOS_TEXT, EOS_TEXT]


def merge_pair(word: list[str], pair: tuple[str, str]) -> list[str]:
    """Replace every non-overlapping occurrence of ``pair``, left to right, by its concatenation."""
    merged, i = [], 0
    while i < len(word):
        if i < len(word) - 1 and (word[i], word[i + 1]) == pair:
            merged.append(word[i] + word[i + 1])
            i += 2
        else:
            merged.append(word[i])
            i += 1
    return merged


class CLIPTokenizer:
    """Byte-level BPE tokenizer equal to openai/clip-vit-large-patch14's; reads its vocabulary when built."""

    def __init__(self, vocab_path: str | Path = DEFAULT_VOCAB):
        merges = read_merges(Path(vocab_path))
        self.encoder = {token: i for i, token in enumerate(build_vocab(merges))}
        self.decoder = {i: token for token, i in self.encoder.items()}
        self.ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        self.pattern = regex.compile(SPLIT_PATTERN, regex.IGNORECASE)
        self.cache = {BOS_TEXT: [BOS_TEXT], EOS_TEXT: [EOS_TEXT]}

    @property
    def vocab_size(self) -> int:
        """Number of token ids (49408): the rows of the text encoder's token embedding."""
        return len(self.encoder)

    def bpe(self, piece: str) -> list[str]:
        """BPE tokens of one pre-token (already byte-mapped): merge the lowest-ranked pair until none applies."""
        if piece not in self.cache:
            word = [*piece[:-1], piece[-1] + END_OF_WORD]
            while len(word) > 1:
                pair = min(zip(word, word[1:]), key=lambda p: self.ranks.get(p, float("inf")))
                if pair not in self.ranks:
                    break
                word = merge_pair(word, pair)
            self.cache[piece] = word
        return self.cache[piece]

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without BOS/EOS and without truncation."""
        ids = []
        for piece in self.pattern.findall(clean_text(text)):
            mapped = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[token] for token in self.bpe(mapped))
        return ids

    def token_count(self, text: str) -> int:
        """Number of BPE tokens in ``text`` (BOS/EOS not counted); at most MAX_TOKENS - 2 reach the model."""
        return len(self.encode(text))

    def decode(self, ids) -> str:
        """Text of a list/tensor of ids; BOS and EOS (hence padding) are dropped, words joined by spaces."""
        tokens = []
        for i in (int(i) for i in ids):
            if i not in self.decoder:
                raise ValueError(f"token id {i} is outside the CLIP vocabulary (0..{self.vocab_size - 1})")
            if i not in (BOS, EOS):
                tokens.append(self.decoder[i])
        data = bytes(self.byte_decoder[c] for c in "".join(tokens))
        return data.decode("utf-8", errors="replace").replace(END_OF_WORD, " ").strip()

    def __call__(self, texts: list[str]) -> torch.LongTensor:
        """Prompts -> LongTensor [B, 77]: BOS + ids (at most 75) + EOS, padded with EOS; a str is a batch of one."""
        if isinstance(texts, str):
            texts = [texts]
        rows = []
        for text in texts:
            ids = [BOS, *self.encode(text)[:MAX_TOKENS - 2], EOS]
            rows.append(ids + [EOS] * (MAX_TOKENS - len(ids)))
        return torch.tensor(rows, dtype=torch.long).reshape(len(rows), MAX_TOKENS)


@functools.cache
def get_tokenizer() -> CLIPTokenizer:
    """The shared tokenizer on the shipped vocabulary, built on first use."""
    return CLIPTokenizer()

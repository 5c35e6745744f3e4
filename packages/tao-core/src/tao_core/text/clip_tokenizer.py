"""CLIP's byte-level byte-pair encoding (BPE) in plain Python: the token ids OneFormer's text encoder reads.

    from tao_core.text import tokenize
    tokenize(["The task is semantic"])          # int64 array [1, 77]: 49406, ..., 49407, 0, 0, ...

The ids equal those of OpenAI CLIP's `SimpleTokenizer` (the tokenizer SHI-Labs OneFormer and TAO
use), so checkpoints trained by those implementations see the same ids: a test pins them against
that tokenizer. The vocabulary is `bpe_simple_vocab_16e6.txt.gz` installed with this package
(MIT licence, from OpenAI's CLIP; see the package README); nothing is downloaded.

Text is cleaned as CLIP does (HTML entities decoded twice, whitespace collapsed, lower-cased) after
the fixed-table repairs of `ftfy.fix_text` that CLIP applies first: C1 controls read as
Windows-1252, Latin ligatures split, full/half-width forms to standard width, curly quotes
straightened, terminal escapes and control characters removed, NFC. What ftfy guesses rather
than looks up (mojibake repair such as "cafÃ©" -> "café") and its own HTML-entity pass (a third
decoding of triply escaped entities such as "&amp;amp;amp;", all-caps names such as "&EACUTE;") are
not done: such texts may tokenize differently from CLIP's. Pre-tokenization follows CLIP's pattern
(special tokens, English contractions, letter runs, single digits, runs of other symbols), with
letters and digits decided by `unicodedata` (Unicode of this Python), so no `regex` dependency.
"""

from __future__ import annotations

import gzip
import html
import re
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

VOCAB_FILE = Path(__file__).with_name("bpe_simple_vocab_16e6.txt.gz")
SOT_TEXT, EOT_TEXT = "<|startoftext|>", "<|endoftext|>"
SOT, EOT = 49406, 49407
VOCAB_SIZE = 49408
CONTEXT_LENGTH = 77
# CLIP keeps the first 49152 - 256 - 2 merges of the file (the vocabulary then has 49408 entries).
_NUM_MERGES = 49152 - 256 - 2
_WORD_END = "</w>"
_CONTRACTIONS = ("s", "t", "re", "ve", "m", "ll", "d")  # after an apostrophe, in CLIP's order

# --- the fixed-table repairs of ftfy.fix_text (default settings) ---------------------------
_LIGATURES = {
    "Ĳ": "IJ", "ĳ": "ij", "ŉ": "ʼn", "Ǳ": "DZ", "ǲ": "Dz", "ǳ": "dz", "Ǆ": "DŽ", "ǅ": "Dž", "ǆ": "dž",
    "Ǉ": "LJ", "ǈ": "Lj", "ǉ": "lj", "Ǌ": "NJ", "ǋ": "Nj", "ǌ": "nj",
    "ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "ſt", "ﬆ": "st",
}


def _repair_table() -> dict:
    table = {ord(k): v for k, v in _LIGATURES.items()}
    # C1 control characters are what a Windows-1252 byte became when read as Latin-1
    for cp in range(0x80, 0xA0):
        try:
            table[cp] = bytes([cp]).decode("cp1252")
        except UnicodeDecodeError:
            pass
    table[0x3000] = " "  # ideographic space
    for cp in range(0xFF01, 0xFFF0):  # full-width ASCII, half-width katakana / hangul
        standard = unicodedata.normalize("NFKC", chr(cp))
        if standard != chr(cp):
            table[cp] = standard
    for cp in [0x02BC, *range(0x2018, 0x201C)]:
        table[cp] = "'"
    for cp in range(0x201C, 0x2020):
        table[cp] = '"'
    return table


_REPAIRS = _repair_table()
_CONTROL = {cp: None for cp in [*range(0x00, 0x09), 0x0B, *range(0x0E, 0x20), 0x7F, *range(0x206A, 0x2070),
                                0xFEFF, *range(0xFFF9, 0xFFFD)]}
_TERMINAL_ESCAPE = re.compile("\033\\[[\\d;]*[a-zA-Z]")
_LINE_BREAK = re.compile("\r\n|[\r\u2028\u2029\u0085]")


def _repair(text: str) -> str:
    while True:  # ftfy repeats its fixes until the text stops changing
        before = text
        text = text.translate(_REPAIRS)
        text = _LINE_BREAK.sub("\n", text)
        text = _TERMINAL_ESCAPE.sub("", text).translate(_CONTROL)
        text = unicodedata.normalize("NFC", text)
        if text == before:
            return text


def _is_space(ch: str) -> bool:
    # the `regex` module's \s (Unicode White_Space); str.isspace also counts \x1c-\x1f
    return ch.isspace() and not "\x1c" <= ch <= "\x1f"


def clean_text(text: str) -> str:
    """The text as CLIP tokenizes it: repaired, HTML-decoded twice, whitespace collapsed, lower case."""
    text = html.unescape(html.unescape(_repair(text))).strip()
    words, word = [], []
    for ch in text:
        if _is_space(ch):
            if word:
                words.append("".join(word))
                word = []
        else:
            word.append(ch)
    if word:
        words.append("".join(word))
    return " ".join(words).lower()


def _kind(ch: str) -> str:
    if _is_space(ch):
        return " "
    category = unicodedata.category(ch)[0]
    return category if category in "LN" else "S"


def split_words(text: str) -> list[str]:
    """CLIP's pre-tokenization of cleaned text: the pieces BPE encodes one at a time."""
    pieces, i, n = [], 0, len(text)
    while i < n:
        if text.startswith(SOT_TEXT, i) or text.startswith(EOT_TEXT, i):
            end = i + len(SOT_TEXT if text.startswith(SOT_TEXT, i) else EOT_TEXT)
            pieces.append(text[i:end])
            i = end
            continue
        if text[i] == "'":
            # CLIP matches contractions case-insensitively; the long s (U+017F) folds to "s"
            rest = text[i + 1 : i + 3].replace("ſ", "s")
            suffix = next((c for c in _CONTRACTIONS if rest.startswith(c)), None)
            if suffix:
                pieces.append(text[i : i + 1 + len(suffix)])
                i += 1 + len(suffix)
                continue
        kind = _kind(text[i])
        if kind == " ":
            i += 1
            continue
        end = i + 1
        if kind != "N":  # a digit is a piece of its own; letters and other symbols run on
            while end < n and _kind(text[end]) == kind:
                end += 1
        pieces.append(text[i:end])
        i = end
    return pieces


@lru_cache(maxsize=1)
def _byte_alphabet() -> list[str]:
    """Byte b -> the printable character BPE works on: printable Latin-1 bytes stand for themselves,
    the other 68 take the code points 256, 257, ... in byte order."""
    keep = set(range(ord("!"), ord("~") + 1)) | set(range(ord("¡"), ord("¬") + 1)) | set(range(ord("®"), ord("ÿ") + 1))
    alphabet, extra = [], 0
    for b in range(256):
        if b in keep:
            alphabet.append(chr(b))
        else:
            alphabet.append(chr(256 + extra))
            extra += 1
    return alphabet


class ClipTokenizer:
    """CLIP's BPE over the vocabulary file `vocab_file` (the packaged one by default)."""

    def __init__(self, vocab_file: str | Path = VOCAB_FILE):
        with gzip.open(vocab_file, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")
        merges = [tuple(line.split()) for line in lines[1 : _NUM_MERGES + 1]]  # line 0 is a header
        if len(merges) != _NUM_MERGES or any(len(m) != 2 for m in merges):
            raise ValueError(f"{vocab_file}: not a CLIP BPE merges file (expected {_NUM_MERGES} pairs after a header)")
        # ids: 256 byte symbols, the same ending a word, one per merge, then the two special tokens
        # (the printable bytes first, in byte order, then the remapped ones in code-point order)
        symbols = sorted(_byte_alphabet(), key=lambda s: (ord(s) >= 256, ord(s)))
        vocab = symbols + [s + _WORD_END for s in symbols] + ["".join(m) for m in merges] + [SOT_TEXT, EOT_TEXT]
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.decoder = vocab
        self.merge_rank = {pair: rank for rank, pair in enumerate(merges)}
        self._cache: dict[str, list[int]] = {SOT_TEXT: [SOT], EOT_TEXT: [EOT]}

    def _bpe(self, piece: str) -> list[int]:
        """Ids of one pre-tokenized piece: merge the best-ranked adjacent pair until none is known."""
        ids = self._cache.get(piece)
        if ids is not None:
            return ids
        chars = "".join(_byte_alphabet()[b] for b in piece.encode("utf-8"))
        word = list(chars[:-1]) + [chars[-1] + _WORD_END]
        while len(word) > 1:
            ranks = [self.merge_rank.get(pair, -1) for pair in zip(word, word[1:])]
            known = [r for r in ranks if r >= 0]
            if not known:
                break
            best = min(known)
            word_pair = next(p for p, r in zip(zip(word, word[1:]), ranks) if r == best)
            first, second = word_pair
            merged, i = [], 0
            while i < len(word):  # merge every occurrence, left to right
                if i + 1 < len(word) and (word[i], word[i + 1]) == word_pair:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        ids = [self.encoder[token] for token in word]
        self._cache[piece] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """BPE ids of `text`, without the start / end tokens."""
        return [i for piece in split_words(clean_text(text)) for i in self._bpe(piece)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of BPE ids (padding zeros and special tokens included as such)."""
        to_byte = {ch: b for b, ch in enumerate(_byte_alphabet())}
        data = bytes(to_byte[c] for i in ids for c in self.decoder[int(i)])
        return data.decode("utf-8", errors="replace").replace(_WORD_END, " ")

    def tokenize(self, texts: str | Sequence[str], context_length: int = CONTEXT_LENGTH) -> np.ndarray:
        """int64 array [N, context_length]: SOT, the text's ids, EOT, zero padding.

        A text longer than the context is cut to its first `context_length` ids with the last one
        replaced by EOT (as CLIP and OneFormer truncate). A single string gives shape [1, L].
        """
        if context_length < 2:
            raise ValueError(f"context_length must be >= 2 (start and end tokens), got {context_length}")
        if isinstance(texts, str):
            texts = [texts]
        out = np.zeros((len(texts), context_length), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [SOT, *self.encode(text), EOT]
            if len(ids) > context_length:
                ids = ids[:context_length]
                ids[-1] = EOT
            out[row, : len(ids)] = ids
        return out


@lru_cache(maxsize=1)
def default_tokenizer() -> ClipTokenizer:
    """The tokenizer of the packaged vocabulary (read once per process)."""
    return ClipTokenizer()


def tokenize(texts: str | Sequence[str], context_length: int = CONTEXT_LENGTH) -> np.ndarray:
    """`ClipTokenizer.tokenize` with the packaged vocabulary: int64 [N, context_length]."""
    return default_tokenizer().tokenize(texts, context_length)


def task_text(task: str) -> str:
    """OneFormer's task prompt: "The task is semantic" (instance, panoptic)."""
    return f"The task is {task}"

"""CLIP BPE tokenizer (tao_core.text): ids pinned against the reference tokenizers.

The expected ids were produced by SHI-Labs OneFormer's `oneformer/data/tokenizer.py`
(`SimpleTokenizer` + `Tokenize`, with ftfy 6.3.1 and the open_clip 3.3.0 vocabulary file), which
open_clip's `SimpleTokenizer` agrees with on every text but the literal special tokens. Rows are
cut after the last non-zero id; the rest of the 77 is zero padding.
"""

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from tao_core.text import EOT, SOT, VOCAB_SIZE, ClipTokenizer, task_text, tokenize
from tao_core.text.clip_tokenizer import VOCAB_FILE

ORACLE = [
    ('a photo of a cat',
     [49406, 320, 1125, 539, 320, 2368, 49407]),
    ('The task is semantic',
     [49406, 518, 10549, 533, 29119, 1550, 49407]),
    ('The task is instance',
     [49406, 518, 10549, 533, 34572, 49407]),
    ('The task is panoptic',
     [49406, 518, 10549, 533, 1072, 24755, 49407]),
    ('a photo with a traffic light',
     [49406, 320, 1125, 593, 320, 3399, 1395, 49407]),
    ('a photo with a fire hydrant',
     [49406, 320, 1125, 593, 320, 1769, 8031, 773, 49407]),
    ('a photo with a potted plant',
     [49406, 320, 1125, 593, 320, 48581, 3912, 49407]),
    ('a photo with a wall-other-merged',
     [49406, 320, 1125, 593, 320, 2569, 268, 1010, 268, 46492, 49407]),
    ('a photo with a tv',
     [49406, 320, 1125, 593, 320, 1583, 49407]),
    ('a photo with a teddy bear',
     [49406, 320, 1125, 593, 320, 11798, 4298, 49407]),
    ('a semantic photo',
     [49406, 320, 29119, 1550, 1125, 49407]),
    ('an instance photo',
     [49406, 550, 34572, 1125, 49407]),
    ('a panoptic photo',
     [49406, 320, 1072, 24755, 1125, 49407]),
    ("Hello, World!!! What's up? I'm fine; you'll see... they've gone. He'd say 'no'.",
     [49406, 3306, 267, 1002, 995, 768, 568, 705, 286, 328, 880, 3797, 282, 592, 1342, 862, 678, 889, 1200, 3601, 269, 797, 1896, 1451, 262, 871, 4645, 49407]),
    ("rock'n'roll isn't DEAD",
     [49406, 2172, 262, 333, 262, 3341, 2923, 713, 2747, 49407]),
    ("!!'s ???",
     [49406, 1443, 262, 338, 3824, 49407]),
    ('e-mail: someone@example.com #tag $100.50 (50%)',
     [49406, 324, 268, 2614, 281, 2100, 287, 6228, 269, 2464, 258, 3640, 259, 272, 271, 271, 269, 276, 271, 263, 276, 271, 16063, 49407]),
    ('3.14159 2026-12-02 0x1F 1,000,000',
     [49406, 274, 269, 272, 275, 272, 276, 280, 273, 271, 273, 277, 268, 272, 273, 268, 271, 273, 271, 343, 272, 325, 272, 267, 271, 271, 271, 267, 271, 271, 271, 49407]),
    ('tabs\tand\nnewlines\r\n  and   spaces  ',
     [49406, 29163, 537, 1218, 3418, 537, 9006, 49407]),
    ('Café naïve façade résumé',
     [49406, 15304, 1097, 35689, 563, 778, 10067, 1928, 29106, 7054, 4166, 49407]),
    ('Café (combining accent)',
     [49406, 15304, 263, 23561, 18931, 264, 49407]),
    ('Straße über Öl',
     [49406, 1894, 127, 253, 324, 6522, 1516, 7255, 331, 49407]),
    ('Привет мир',
     [49406, 26302, 16370, 29503, 110, 22176, 141, 480, 38018, 16701, 141, 478, 49407]),
    ('你好，世界',
     [49406, 47466, 254, 29290, 377, 267, 19759, 244, 163, 243, 490, 49407]),
    ('日本語のテキスト',
     [49406, 39121, 44353, 34002, 252, 21575, 2429, 228, 47121, 32421, 486, 49407]),
    ('한국어 텍스트',
     [49406, 15197, 250, 31871, 255, 31625, 368, 169, 227, 235, 20305, 39820, 49407]),
    ('مرحبا بالعالم',
     [49406, 12986, 10948, 25722, 16378, 22625, 16378, 12973, 18843, 12973, 29945, 49407]),
    ('שלום',
     [49406, 147, 102, 147, 250, 147, 243, 147, 507, 49407]),
    ('ελληνικά',
     [49406, 138, 113, 138, 119, 138, 119, 138, 115, 138, 121, 138, 117, 138, 118, 138, 361, 49407]),
    ('emoji 😀🐱\u200d👤 🚗 👍🏽',
     [49406, 16327, 12832, 35710, 4244, 964, 353, 22783, 43722, 49407]),
    ('“curly” ‘quotes’ and ʼapostropheʼ',
     [49406, 257, 20795, 257, 262, 5808, 262, 537, 262, 4089, 3121, 19853, 262, 49407]),
    ('ﬁne ﬂower ﬀ ĳ',
     [49406, 3797, 4055, 1304, 72, 329, 49407]),
    ('ＬＯＵＤ\u3000ＮＯＩＳＥＳ ｶﾀｶﾅ',
     [49406, 7464, 31575, 37367, 34941, 37367, 2429, 488, 49407]),
    ('fish &amp; chips &lt;b&gt; &amp;amp; &#169; &#x263A;',
     [49406, 2759, 261, 8855, 283, 321, 285, 261, 5811, 8703, 49407]),
    ('<|endoftext|> inside <|startoftext|>',
     [49406, 49407, 2912, 49406, 49407]),
    ('zero\x00width\u200bjoiner\ufeff',
     [49406, 14867, 23571, 9844, 683, 5155, 49407]),
    ('ctrl\x07chars\x1b[31mred\x1b[0m',
     [49406, 35602, 75, 1054, 82, 736, 49407]),
    ('c1 \x85 \x96 dash',
     [49406, 322, 272, 959, 1224, 10206, 49407]),
    ('UPPER lower MiXeD',
     [49406, 7067, 4909, 6780, 49407]),
    ('   ',
     [49406, 49407]),
    ('',
     [49406, 49407]),
    ('a',
     [49406, 320, 49407]),
    ("'",
     [49406, 262, 49407]),
    ("'s",
     [49406, 568, 49407]),
    ("x'll",
     [49406, 343, 1342, 49407]),
    ("it'S",
     [49406, 585, 568, 49407]),
    ("'ſ",
     [49406, 6, 129, 379, 49407]),
    ("ALL'LL'VE'RE",
     [49406, 615, 1342, 1200, 982, 49407]),
    ('multi---dashes___under ... ellipsis …',
     [49406, 6400, 11079, 925, 2502, 13530, 1798, 678, 3367, 33041, 959, 49407]),
    ('½ ² Ⅻ ⑤ ٣',
     [49406, 33613, 41175, 158, 227, 375, 158, 239, 353, 149, 352, 49407]),
    ('math ∑ ∞ ≠ √',
     [49406, 6025, 17788, 495, 17788, 508, 22684, 510, 17788, 504, 49407]),
    ('line\u2028sep\u2029para',
     [49406, 1148, 10434, 8976, 49407]),
    ('wordwordwordwordwordwordwordwordwordwordwordwordwordwordwordwordwordwordwordwordwordwordwordwordwordwordwordwordwordword',
     [49406, 8272, 8272, 8272, 8272, 8272, 8272, 8272, 8272, 8272, 8272, 8272, 8272, 8272, 8272, 8272, 8272, 8272, 8272, 8272, 8272, 8272, 8272, 8272, 8272, 8272, 8272, 8272, 8272, 8272, 2653, 49407]),
    ('a very long description of a street scene with cars, buses, bicycles and many pedestrians a very long description of a street scene with cars, buses, bicycles and many pedestrians a very long description of a street scene with cars, buses, bicycles and many pedestrians a very long description of a street scene with cars, buses, bicycles and many pedestrians ',
     [49406, 320, 1070, 1538, 13951, 539, 320, 2012, 3562, 593, 3346, 267, 12879, 267, 31326, 537, 1346, 33895, 320, 1070, 1538, 13951, 539, 320, 2012, 3562, 593, 3346, 267, 12879, 267, 31326, 537, 1346, 33895, 320, 1070, 1538, 13951, 539, 320, 2012, 3562, 593, 3346, 267, 12879, 267, 31326, 537, 1346, 33895, 320, 1070, 1538, 13951, 539, 320, 2012, 3562, 593, 3346, 267, 12879, 267, 31326, 537, 1346, 33895, 49407]),
    ('1111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111',
     [49406, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 272, 49407]),
    ('supercalifragilisticexpialidocious antidisestablishmentarianism',
     [49406, 1642, 2857, 13093, 2076, 5868, 26850, 835, 639, 38466, 3120, 4262, 7726, 12658, 1585, 44351, 49407]),
]


@pytest.mark.parametrize("text,expected", ORACLE, ids=range(len(ORACLE)))
def test_ids_equal_the_reference_tokenizer(text, expected):
    row = tokenize(text)
    assert row.shape == (1, 77) and row.dtype == np.int64
    assert row[0, : len(expected)].tolist() == expected
    assert not row[0, len(expected) :].any()


def test_the_issue_example_and_the_task_prompts():
    assert tokenize(["a photo of a cat"])[0, :8].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407, 0]
    assert task_text("panoptic") == "The task is panoptic"
    batch = tokenize([task_text(t) for t in ("semantic", "instance", "panoptic")])
    assert batch.shape == (3, 77)
    assert (batch[:, 0] == SOT).all()
    assert [row[row > 0][-1] for row in batch] == [EOT] * 3  # SOT the task is X EOT, then zeros


def test_truncation_keeps_the_context_and_ends_with_eot():
    ids = tokenize("word " * 200, context_length=16)[0]
    assert ids.shape == (16,) and ids[0] == SOT and ids[-1] == EOT and (ids[1:-1] == 2653).all()  # "word" = 2653
    short = tokenize("a photo of a cat", context_length=5)[0].tolist()
    assert short == [49406, 320, 1125, 539, 49407]
    with pytest.raises(ValueError, match="context_length"):
        tokenize("x", context_length=1)


def test_vocabulary_and_decode():
    tok = ClipTokenizer()
    assert len(tok.encoder) == VOCAB_SIZE == 49408
    assert tok.encoder["<|startoftext|>"] == SOT and tok.encoder["<|endoftext|>"] == EOT
    assert tok.decode(tok.encode("A Photo of a cat!")) == "a photo of a cat ! "


def test_a_file_that_is_not_a_merges_file_is_refused(tmp_path):
    bad = tmp_path / "vocab.txt.gz"
    with gzip.open(bad, "wt") as f:
        f.write("header\na b\n")
    with pytest.raises(ValueError, match="not a CLIP BPE merges file"):
        ClipTokenizer(bad)


def test_vocabulary_is_the_openai_clip_file():
    # the file shipped as package data is OpenAI CLIP's bpe_simple_vocab_16e6.txt.gz, byte for byte
    digest = hashlib.sha256(Path(VOCAB_FILE).read_bytes()).hexdigest()
    assert digest == "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"


def test_vocabulary_is_package_data():
    # what a non-editable install copies: setuptools' package-data of tao_core.text
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["*"]
    assert any(Path(VOCAB_FILE).match(p) for p in patterns)

"""Charsets: round trips (provinces, green 8-character, two-line), errors, CTC greedy decoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from platelab.errors import PlatelabError
from platelab.text import (
    ADS,
    ALPHABETS,
    BLANK,
    BLANK_SYMBOL,
    PROVINCES,
    Charset,
    cn_plate_syntax,
    get_charset,
    rows_of,
)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("cn", "皖A12345"),  # blue, 7 characters
        ("cn", "粤BD12345"),  # green new-energy, 8 characters
        ("cn", "京A1234警"),  # a special plate's last character
        ("cn", "冀A12345"),  # a two-line yellow plate: top row 冀A, bottom 12345
        ("latin", "AB12CDE"),
        ("plates", "新Q9Z8Y7"),
        ("plates", "IOU0123"),
    ],
)
def test_round_trip(name, text):
    cs = get_charset(name)
    idx = cs.encode(text)
    assert len(idx) == len(text) and min(idx) > BLANK and max(idx) < len(cs)
    assert cs.decode(idx) == text


def test_every_ccpd_character_is_in_cn_and_plates():
    for name in ("cn", "plates"):
        cs = get_charset(name)
        assert all(c in cs for c in (*PROVINCES, *ALPHABETS, *ADS))
    assert "I" not in get_charset("cn") and "I" in get_charset("latin")


def test_ccpd_tables_still_importable_from_the_reader():
    from platelab.data.sources import ccpd

    assert ccpd.PROVINCES is PROVINCES and ccpd.ADS is ADS


def test_normalize_drops_separators_and_widths():
    cs = get_charset("plates")
    assert cs.normalize(" 皖A·12345 ") == "皖A12345"
    assert cs.normalize("ab-123-cd") == "AB123CD"
    assert cs.normalize("ＡＢ１２") == "AB12"  # full-width forms
    assert cs.encode("皖A·12345") == cs.encode("皖A12345")


def test_encode_names_the_character_outside_the_charset():
    with pytest.raises(ValueError, match=r"'€' \(U\+20AC\) at position 3"):
        get_charset("plates").encode("AB1€2")
    with pytest.raises(ValueError, match="'皖'"):
        get_charset("latin").encode("皖A12345")
    assert not get_charset("latin").covers("皖A1") and get_charset("cn").covers("皖A1")
    with pytest.raises(ValueError, match="outside"):
        get_charset("latin").decode([len(get_charset("latin"))])


def test_blank_and_sizes():
    cs = Charset("t", ("A", "B"))
    assert len(cs) == 3 and BLANK == 0
    assert cs.encode("ab") == [
        1,
        2,
    ]  # text is upper-cased before encoding and cs.decode([0, 1, 0, 2, 2]) == "ABB"
    assert cs.to_list() == [BLANK_SYMBOL, "A", "B"]
    assert Charset.from_json(cs.to_json()) == cs and Charset.from_list("t", cs.to_list()) == cs
    with pytest.raises(ValueError, match="duplicate"):
        Charset("t", ("A", "A"))
    with pytest.raises(ValueError, match="single"):
        Charset("t", ("AB",))


def test_charset_from_file_and_extend(tmp_path):
    path = tmp_path / "cs.txt"
    path.write_text("A\nB\n\n港\n", encoding="utf-8")
    cs = get_charset(str(path))
    assert cs.symbols == ("A", "B", "港") and cs.decode(cs.encode("AB港")) == "AB港"
    assert cs.extend("BZ").symbols == ("A", "B", "港", "Z")
    with pytest.raises(PlatelabError, match="unknown charset 'nope'"):
        get_charset("nope")


def _one_hot(path: list[int], classes: int, p: float = 0.9) -> np.ndarray:
    probs = np.full((len(path), classes), (1 - p) / (classes - 1), np.float32)
    probs[np.arange(len(path)), path] = p
    return probs


def test_ctc_greedy_merges_repeats_and_drops_blanks():
    cs = Charset("ab", ("a", "b"))  # a = 1, b = 2
    # a a - a b b -  ->  "aab": the blank separates the two a's, the b's merge.
    probs = _one_hot([1, 1, 0, 1, 2, 2, 0], 3)
    probs[1] = [0.05, 0.93, 0.02]  # the best step of the first run
    probs[5] = [0.02, 0.01, 0.97]
    texts, scores, positions = cs.ctc_greedy(probs)
    assert texts == ["aab"]
    assert positions == [[0, 3, 4]]
    np.testing.assert_allclose(scores[0], [0.93, 0.9, 0.97], rtol=1e-6)


def test_ctc_greedy_takes_logits_batches_and_tensors():
    cs = Charset("ab", ("a", "b"))
    paths = [[0, 1, 1, 0, 2], [2, 2, 2, 0, 0]]
    probs = np.stack([_one_hot(p, 3) for p in paths])
    logits = np.log(probs) + 3.0  # any shift: the softmax gives the same probabilities
    for given in (probs, logits, torch.from_numpy(logits)):
        texts, scores, positions = cs.ctc_greedy(given)
        assert texts == ["ab", "b"] and positions == [[1, 4], [0]]
        np.testing.assert_allclose(scores[0], [0.9, 0.9], rtol=1e-5)
    empty = cs.ctc_greedy(np.zeros((0, 4, 3), np.float32))
    assert empty == ([], [], [])
    with pytest.raises(ValueError, match="expected"):
        cs.ctc_greedy(np.zeros((4, 5)))


def test_two_line_rows_from_positions():
    cs = get_charset("cn")
    # A two-line crop laid side by side: 冀A in the left half (top row), 12345 in the right.
    text = "冀A12345"
    T = 16
    path = [0] * T
    positions = [1, 4, 9, 10, 12, 13, 15]
    for t, k in zip(positions, cs.encode(text), strict=True):
        path[t] = k
    texts, _, pos = cs.ctc_greedy(_one_hot(path, len(cs)))
    assert texts == [text] and pos == [positions]
    assert rows_of(pos[0], T, rows=2) == [0, 0, 1, 1, 1, 1, 1]
    assert rows_of(pos[0], T, rows=1) == [0] * 7


@pytest.mark.parametrize(("read", "plate"), [
    ("皖AB1I46Y", "皖AB1146Y"),   # I and O after the city letter are 1 and 0
    ("皖AKMI85", "皖AKM185"),
    ("皖OA2378", "皖OA2378"),     # the city letter is left alone
    ("皖AQO378", "皖AQ0378"),
    ("AB1I46Y", "AB1I46Y"),       # not Chinese: unchanged
    ("皖A", "皖A"),
    ("", ""),
])  # fmt: skip
def test_cn_plate_syntax(read, plate):
    assert cn_plate_syntax(read) == plate

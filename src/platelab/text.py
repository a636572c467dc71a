"""Plate text as data: character sets, encoding, CTC greedy decoding, province tables.

A :class:`Charset` maps characters to class indices for a recogniser. Index
:data:`BLANK` (0) is the CTC blank, which also pads target sequences; the
charset's symbols take indices ``1..len(symbols)``, so a model has
``len(charset) == len(symbols) + 1`` output classes.

Text rules (one place, used by every reader, writer and metric):

* :meth:`Charset.normalize` is applied before encoding and comparing: Unicode
  NFKC (full-width ``Ａ１`` become ``A1``), upper case, and the separators printed
  between groups on real plates (spaces, ``-``, ``·``, ``•``, ``.``) dropped. A
  plate's text is its registration characters in reading order: ``皖A·12345`` is
  ``皖A12345``, ``AB-123-CD`` is ``AB123CD``.
* Two-line plates are read top row first, then the bottom row. A recogniser reads
  them from :func:`platelab.geometry.two_line_to_one`, which puts the top row in the
  left half of the crop; :func:`rows_of` then says which row each character came
  from by the half its CTC time step falls in.

CTC greedy decoding (:meth:`Charset.ctc_greedy`) is PaddleOCR's: argmax per time
step, merge repeats, drop blanks.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from platelab.errors import PlatelabError

BLANK = 0
BLANK_SYMBOL = "<blank>"  # how the blank is named in to_list() and in files
SEPARATORS = frozenset(" \t-·•.・_")

# CCPD's index tables (https://github.com/detectRecog/CCPD): a CCPD file name holds
# indices into these. "O" at the end of each is CCPD's placeholder for "no character";
# 警 (police) and 学 (driving school) are special plates.
# fmt: off
PROVINCES = ["皖", "沪", "津", "渝", "冀", "晋", "蒙", "辽", "吉", "黑", "苏", "浙", "京", "闽", "赣",
             "鲁", "豫", "鄂", "湘", "粤", "桂", "琼", "川", "贵", "云", "藏", "陕", "甘", "青", "宁",
             "新", "警", "学", "O"]
# fmt: on
ALPHABETS = list("ABCDEFGHJKLMNPQRSTUVWXYZO")
ADS = list("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789O")

DIGITS = "0123456789"
LATIN_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Further characters of Chinese plates beyond CCPD's tables: special-use suffixes
# (挂 trailer, 港/澳 Hong Kong/Macau, 使/领 embassy/consulate, 试 test, 超 oversize).
CN_EXTRA = ("挂", "港", "澳", "使", "领", "试", "超")


@dataclass(frozen=True)
class Charset:
    """A recogniser's alphabet: ``symbols[k]`` has class index ``k + 1``; 0 is the blank.

    Attributes:
        name: a registry name (``cn``, ``latin``, ``plates``) or the file it came from.
        symbols: distinct single characters, without the blank.
    """

    name: str
    symbols: tuple[str, ...]
    _index: dict[str, int] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        symbols = tuple(self.symbols)
        bad = [s for s in symbols if len(s) != 1 or s in SEPARATORS]
        if bad:
            raise ValueError(f"charset {self.name!r}: symbols must be single non-separator "
                             f"characters, got {bad[:5]}")  # fmt: skip
        if len(set(symbols)) != len(symbols):
            dup = sorted({s for s in symbols if symbols.count(s) > 1})
            raise ValueError(f"charset {self.name!r}: duplicate symbols {dup[:5]}")
        object.__setattr__(self, "symbols", symbols)
        object.__setattr__(self, "_index", {s: i + 1 for i, s in enumerate(symbols)})

    def __len__(self) -> int:
        """Number of classes, the blank included."""
        return len(self.symbols) + 1

    def __contains__(self, ch: object) -> bool:
        return ch in self._index

    # -- text ----------------------------------------------------------------------------
    @staticmethod
    def normalize(text: str) -> str:
        """NFKC, upper case, separators (space, ``-``, ``·``, ``.``, ``_``) dropped."""
        text = unicodedata.normalize("NFKC", text).upper()
        return "".join(c for c in text if c not in SEPARATORS and not c.isspace())

    def missing(self, text: str) -> list[str]:
        """The characters of normalised ``text`` that are not in the charset, in order."""
        return list(dict.fromkeys(c for c in self.normalize(text) if c not in self._index))

    def covers(self, text: str) -> bool:
        """Whether every character of normalised ``text`` is in the charset."""
        return not self.missing(text)

    def encode(self, text: str) -> list[int]:
        """Class indices (``1..len - 1``) of normalised ``text``.

        Raises:
            ValueError: a character is not in the charset (the message names it).
        """
        out = []
        for pos, c in enumerate(self.normalize(text)):
            i = self._index.get(c)
            if i is None:
                raise ValueError(
                    f"{c!r} (U+{ord(c):04X}) at position {pos} of {text!r} is not in the "
                    f"{self.name!r} charset"
                )
            out.append(i)
        return out

    def decode(self, indices: Iterable[int]) -> str:
        """Indices -> text; blanks (0) are skipped, repeats are kept (not a CTC decode).

        Raises:
            ValueError: an index outside ``0..len - 1``.
        """
        out = []
        for i in indices:
            i = int(i)
            if i == BLANK:
                continue
            if not 0 < i < len(self):
                raise ValueError(f"index {i} is outside 0..{len(self) - 1} of {self.name!r}")
            out.append(self.symbols[i - 1])
        return "".join(out)

    # -- CTC -----------------------------------------------------------------------------
    def ctc_greedy(
        self, scores, probs: bool | None = None
    ) -> tuple[list[str], list[list[float]], list[list[int]]]:
        """Greedy CTC decoding: argmax per time step, merge repeats, drop blanks.

        Args:
            scores: ``[T, C]`` or ``[B, T, C]`` logits, log-probabilities or
                probabilities over ``C == len(self)`` classes (a numpy array or a
                torch tensor). ``[T, C]`` is a batch of one.
            probs: whether ``scores`` are already probabilities; None detects it
                (non-negative rows that sum to 1). Otherwise a softmax over ``C``
                gives them (the same for logits and log-probabilities).

        Returns:
            ``(texts, char_scores, positions)``, one entry per batch item: the text;
            each kept character's confidence (the largest probability over the time
            steps of its run); and the time step at which each kept character starts
            (its run's first step), ``0..T - 1``.
        """
        if hasattr(scores, "detach"):  # a torch tensor, without importing torch here
            scores = scores.detach().float().cpu().numpy()
        s = np.asarray(scores, dtype=np.float32)
        if s.ndim == 2:
            s = s[None]
        if s.ndim != 3 or s.shape[2] != len(self):
            raise ValueError(f"expected [T, {len(self)}] or [B, T, {len(self)}], got {s.shape}")
        if probs is None:
            probs = bool(s.size) and s.min() >= 0 and np.allclose(s.sum(-1), 1, atol=1e-3)
        if not probs:
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
        best = s.argmax(-1)  # [B, T]
        top = np.take_along_axis(s, best[..., None], -1)[..., 0]
        texts, char_scores, positions = [], [], []
        for b in range(s.shape[0]):
            chars, conf, pos = [], [], []
            prev = BLANK
            for t, k in enumerate(best[b].tolist()):
                if k != BLANK and k != prev:
                    chars.append(self.symbols[k - 1])
                    conf.append(float(top[b, t]))
                    pos.append(t)
                elif k != BLANK:  # the same run: keep its best step's confidence
                    conf[-1] = max(conf[-1], float(top[b, t]))
                prev = k
            texts.append("".join(chars))
            char_scores.append(conf)
            positions.append(pos)
        return texts, char_scores, positions

    # -- metadata ------------------------------------------------------------------------
    def to_list(self) -> list[str]:
        """``[BLANK_SYMBOL, *symbols]``: one entry per class, in index order."""
        return [BLANK_SYMBOL, *self.symbols]

    def to_json(self) -> str:
        """``{"name": ..., "symbols": [...]}`` (checkpoint and ONNX metadata)."""
        return json.dumps({"name": self.name, "symbols": list(self.symbols)}, ensure_ascii=False)

    @classmethod
    def from_list(cls, name: str, classes: Sequence[str]) -> Charset:
        """The inverse of :meth:`to_list` (a leading :data:`BLANK_SYMBOL` is dropped)."""
        classes = list(classes)
        if classes and classes[0] == BLANK_SYMBOL:
            classes = classes[1:]
        return cls(name, tuple(classes))

    @classmethod
    def from_json(cls, text: str) -> Charset:
        """The inverse of :meth:`to_json`."""
        data = json.loads(text)
        return cls(str(data["name"]), tuple(data["symbols"]))

    @classmethod
    def from_file(cls, path: Path | str, name: str | None = None) -> Charset:
        """One symbol per line, UTF-8; blank lines and a leading :data:`BLANK_SYMBOL` skipped.

        Raises:
            PlatelabError: the file is missing, not UTF-8, or holds a bad symbol.
        """
        path = Path(path)
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise PlatelabError(f"cannot read charset file {path}: {e}") from None
        symbols = [ln.strip() for ln in lines if ln.strip()]
        try:
            return cls.from_list(name or str(path), symbols)
        except ValueError as e:
            raise PlatelabError(f"{path}: {e}") from None

    def extend(self, extra: Iterable[str], name: str | None = None) -> Charset:
        """This charset plus the characters of ``extra`` it lacks (appended, in order)."""
        new = [c for c in dict.fromkeys(extra) if c not in self._index]
        return Charset(name or self.name, self.symbols + tuple(new))


def rows_of(positions: Sequence[int], T: int, rows: int = 1) -> list[int]:
    """The row (0 = top) each character came from, for a crop of ``rows`` rows laid side
    by side by :func:`platelab.geometry.two_line_to_one` (top row left).

    Args:
        positions: CTC time steps of the characters (:meth:`Charset.ctc_greedy`).
        T: the number of time steps of the sequence.
        rows: 1 (every character is row 0) or the number of rows laid side by side.
    """
    if rows <= 1:
        return [0] * len(positions)
    return [min(rows - 1, int(p) * rows // max(T, 1)) for p in positions]


CN_LOOKALIKES = {"I": "1", "O": "0"}  # letters Chinese registrations never use


def cn_plate_syntax(text: str) -> str:
    """A Chinese reading with ``I`` and ``O`` after its first two characters read as ``1``
    and ``0``; any other text unchanged.

    Chinese registrations (province, city letter, then 5 or 6 letters and digits) use
    no ``I`` and no ``O``, so that they are never taken for ``1`` and ``0`` (GA 36,
    the standard CCPD's tables follow: ``O`` is only their placeholder). A recogniser
    that also reads Latin plates does confuse them; the rule applies only where it holds.
    """
    if len(text) < 3 or text[0] not in PROVINCES:
        return text
    return text[:2] + "".join(CN_LOOKALIKES.get(c, c) for c in text[2:])


def _unique(chars: Iterable[str]) -> tuple[str, ...]:
    return tuple(c for c in dict.fromkeys(chars) if c not in SEPARATORS)


# CCPD's placeholder "O" is also a Latin letter, so "cn" keeps it; Chinese plates use no "I".
_CN = _unique([*PROVINCES, *CN_EXTRA, *ADS])
_LATIN = _unique([*LATIN_LETTERS, *DIGITS])
CHARSETS: dict[str, Charset] = {
    "cn": Charset("cn", _CN),
    "latin": Charset("latin", _LATIN),
    "plates": Charset("plates", _unique([*_CN, *_LATIN])),
}
DEFAULT_CHARSET = "plates"


def get_charset(name_or_path: str | Path = DEFAULT_CHARSET) -> Charset:
    """A registered charset (:data:`CHARSETS`: ``cn``, ``latin``, ``plates``) or a file.

    Raises:
        PlatelabError: neither a registered name nor a readable file.
    """
    key = str(name_or_path)
    if key in CHARSETS:
        return CHARSETS[key]
    if Path(key).is_file():
        return Charset.from_file(key)
    raise PlatelabError(
        f"unknown charset {key!r}: choose from {', '.join(CHARSETS)} or give a file "
        "with one symbol per line"
    )

"""Text metrics of a recogniser (``task=read``): plate accuracy, CER, breakdowns, coverage.

Every comparison is between :meth:`~platelab.text.Charset.normalize`-d strings (so
``皖A·12345`` and ``皖A12345`` are the same plate).

* ``accuracy``: share of plates read exactly (the full string).
* ``cer``: character error rate, the summed Levenshtein distances (insertions,
  deletions, substitutions, each 1) divided by the summed truth lengths (every
  plate weighs by its length, as in ASR's WER/CER).
* ``char_accuracy``: ``1 - cer`` clipped at 0.
* ``province_accuracy``: on Chinese plates (the first truth character is a province
  character, :data:`platelab.text.PROVINCES`), the share whose first predicted
  character is right: the hardest character, reported on its own; NaN without such
  plates.
* ``mean_score``: the mean text score (calibration at a glance).
* ``coverage_curve``: keep the plates whose score is at least a threshold; for each
  threshold, the share kept and the accuracy among them (a user trades coverage for
  precision); :func:`accuracy_at_coverage` reads it at a given share kept.
* breakdowns (:func:`grouped`): the same metrics per style, source, length or rows.

No library for edit distance is installed (rapidfuzz is not a dependency), so
:func:`levenshtein` is the classic two-row dynamic programme (plates are short).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from platelab.text import PROVINCES, Charset

_PROVINCES = frozenset(PROVINCES[:-1])  # "O" is CCPD's placeholder, not a province
COVERAGES = (1.0, 0.95, 0.9, 0.8, 0.5)  # the shares kept metrics.json reports


def levenshtein(a: str, b: str) -> int:
    """Edit distance between ``a`` and ``b`` (insert, delete, substitute: 1 each)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def text_metrics(
    truths: Sequence[str], preds: Sequence[str], scores: Sequence[float] | None = None
) -> dict[str, float]:
    """``accuracy``, ``cer``, ``char_accuracy``, ``province_accuracy``, ``mean_score``,
    ``accuracy_at_90`` (accuracy of the 90% most confident) and ``n_crops``.

    An empty input gives 0 for the rates (NaN for ``province_accuracy``).
    """
    truths = [Charset.normalize(t) for t in truths]
    preds = [Charset.normalize(p) for p in preds]
    n = len(truths)
    exact = sum(t == p for t, p in zip(truths, preds, strict=True))
    edits = sum(levenshtein(t, p) for t, p in zip(truths, preds, strict=True))
    chars = sum(len(t) for t in truths)
    cer = edits / chars if chars else (0.0 if edits == 0 else 1.0)
    cn = [(t, p) for t, p in zip(truths, preds, strict=True) if t and t[0] in _PROVINCES]
    scores = list(scores) if scores is not None else [1.0] * n
    return {
        "accuracy": exact / n if n else 0.0,
        "cer": cer,
        "char_accuracy": max(0.0, 1.0 - cer),
        "province_accuracy": (sum(p[:1] == t[:1] for t, p in cn) / len(cn)) if cn else math.nan,
        "mean_score": float(np.mean(scores)) if n else 0.0,
        "accuracy_at_90": accuracy_at_coverage(truths, preds, scores, 0.9),
        "n_crops": float(n),
    }


def coverage_curve(
    truths: Sequence[str], preds: Sequence[str], scores: Sequence[float]
) -> list[dict[str, float]]:
    """Accuracy against the share of plates kept, one point per distinct score.

    Plates are sorted by descending score; point ``k`` keeps the first ``k``: its
    ``threshold`` (the ``k``-th score: keep ``score >= threshold``), ``coverage`` (``k /
    n``) and ``accuracy`` among the kept. Ties are kept together (a threshold cannot
    split them). Empty input: an empty list.
    """
    n = len(truths)
    if n == 0:
        return []
    s = np.asarray(scores, np.float64)
    order = np.argsort(-s, kind="stable")
    right = np.array([Charset.normalize(truths[i]) == Charset.normalize(preds[i]) for i in order])
    cum = np.cumsum(right)
    s_sorted = s[order]
    points = []
    for k in range(1, n + 1):
        if k < n and s_sorted[k] == s_sorted[k - 1]:
            continue  # the same threshold keeps the whole tie
        points.append({"threshold": float(s_sorted[k - 1]), "coverage": k / n,
                       "accuracy": float(cum[k - 1]) / k})  # fmt: skip
    return points


def accuracy_at_coverage(
    truths: Sequence[str], preds: Sequence[str], scores: Sequence[float], coverage: float
) -> float:
    """Accuracy of the most confident plates covering at least ``coverage`` of all (0 if none)."""
    for point in coverage_curve(truths, preds, scores):
        if point["coverage"] >= coverage - 1e-9:
            return point["accuracy"]
    return 0.0


def coverage_table(records: Sequence[dict[str, Any]]) -> list[dict[str, float]]:
    """For each of :data:`COVERAGES`: the threshold to use and the accuracy at that share."""
    truths = [r["text"] for r in records]
    preds = [r["pred"] for r in records]
    curve = coverage_curve(truths, preds, [r["score"] for r in records])
    out = []
    for c in COVERAGES:
        point = next((p for p in curve if p["coverage"] >= c - 1e-9), None)
        if point is not None:
            out.append({"coverage_target": c, **point})
    return out


def length_bucket(text: str) -> str:
    return str(len(Charset.normalize(text)))


def grouped(records: Sequence[dict[str, Any]], key: str) -> dict[str, dict[str, float]]:
    """:func:`text_metrics` per value of ``key`` (a record field, or ``length``), sorted."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        value = length_bucket(r["text"]) if key == "length" else str(r.get(key) or "unknown")
        groups[value].append(r)
    return {
        g: text_metrics([r["text"] for r in rs], [r["pred"] for r in rs], [r["score"] for r in rs])
        for g, rs in sorted(groups.items())
    }

"""Text metrics (task=read): edit distance, accuracy, CER, coverage, breakdowns, and the
evaluation loop on a fake model whose readings are chosen by hand."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from platelab.eval.text import (
    accuracy_at_coverage,
    coverage_curve,
    coverage_table,
    grouped,
    levenshtein,
    text_metrics,
)
from platelab.tasks import get_task
from platelab.text import get_charset

CS = get_charset("plates")


@pytest.mark.parametrize(
    ("a", "b", "d"),
    [("", "", 0), ("", "ABC", 3), ("ABC", "", 3), ("ABC", "ABC", 0), ("ABC", "ABD", 1),
     ("皖A12345", "皖A1234", 1), ("皖A12345", "A12345", 1), ("kitten", "sitting", 3),
     ("AB", "BA", 2), ("皖A12345", "沪A12354", 3)],
)  # fmt: skip
def test_levenshtein_hand_cases(a, b, d):
    assert levenshtein(a, b) == d == levenshtein(b, a)


@given(st.text("AB12", max_size=6), st.text("AB12", max_size=6), st.text("AB12", max_size=6))
def test_levenshtein_is_a_metric(a, b, c):
    assert levenshtein(a, b) <= max(len(a), len(b))
    assert levenshtein(a, c) <= levenshtein(a, b) + levenshtein(b, c)
    assert (levenshtein(a, b) == 0) == (a == b)


def test_text_metrics_hand_computed():
    truths = ["皖A12345", "沪B·6789", "AB123CD", "京C0000"]
    preds = ["皖A12345", "沪B6789", "AB12CD", "津C0001"]
    m = text_metrics(truths, preds, [0.9, 0.8, 0.4, 0.2])
    assert m["accuracy"] == pytest.approx(2 / 4)  # the separator "·" is normalised away
    # edits 0 + 0 + 1 (a deletion) + 2 (province and last digit) over 7 + 6 + 7 + 6 chars
    assert m["cer"] == pytest.approx(3 / 26)
    assert m["char_accuracy"] == pytest.approx(1 - 3 / 26)
    assert m["province_accuracy"] == pytest.approx(2 / 3)  # 皖, 沪 right, 京 read as 津
    assert m["mean_score"] == pytest.approx(0.575) and m["n_crops"] == 4
    assert m["accuracy_at_90"] == pytest.approx(2 / 4)  # 90% of 4 plates: all 4 kept
    empty = text_metrics([], [], [])
    assert empty["accuracy"] == 0 and empty["cer"] == 0 and math.isnan(empty["province_accuracy"])


def test_coverage_curve_trades_coverage_for_accuracy():
    truths, preds = ["A", "B", "C", "D"], ["A", "B", "X", "D"]
    curve = coverage_curve(truths, preds, [0.9, 0.8, 0.7, 0.8])
    # sorted by score: A .9 (right), B .8 and D .8 (a tie, both right), C .7 (wrong)
    assert curve == [
        {"threshold": 0.9, "coverage": 0.25, "accuracy": 1.0},
        {"threshold": 0.8, "coverage": 0.75, "accuracy": 1.0},
        {"threshold": 0.7, "coverage": 1.0, "accuracy": 0.75},
    ]
    assert accuracy_at_coverage(truths, preds, [0.9, 0.8, 0.7, 0.8], 0.5) == 1.0
    records = [{"text": t, "pred": p, "score": s}
               for t, p, s in zip(truths, preds, [0.9, 0.8, 0.7, 0.8], strict=True)]  # fmt: skip
    table = coverage_table(records)
    assert table[0]["coverage_target"] == 1.0 and table[0]["accuracy"] == 0.75
    assert coverage_curve([], [], []) == []


def test_grouped_by_style_length_and_rows():
    records = [
        {"text": "皖A12345", "pred": "皖A12345", "score": 1.0, "style": "cn_blue", "rows": 1},
        {"text": "AB123", "pred": "AB124", "score": 0.5, "style": "us", "rows": 1},
        {"text": "皖A1234", "pred": "皖A1234", "score": 0.9, "style": "", "rows": 2},
    ]
    by_style = grouped(records, "style")
    assert list(by_style) == ["cn_blue", "unknown", "us"] and by_style["us"]["accuracy"] == 0
    by_len = grouped(records, "length")
    assert by_len["5"]["cer"] == pytest.approx(1 / 5) and by_len["7"]["n_crops"] == 1
    assert grouped(records, "rows")["2"]["accuracy"] == 1.0


class _Fake(torch.nn.Module):
    """A 'recogniser' that reads whatever text it is told for the crop whose pixels hold its
    number (pixel [0, 0, 0] = k), with the confidence it is told."""

    task, decoder, charset, input_size, max_len = "read", "slots", CS, (128, 32), 10

    def __init__(self, readings: list[tuple[str, float]]):
        super().__init__()
        self.readings = readings
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, images):
        logits = torch.full((images.shape[0], self.max_len, len(CS)), -30.0)
        for i, k in enumerate(images[:, 0, 0, 0].tolist()):
            text, p = self.readings[int(k)]
            logits[i, :, 0] = 30.0
            for s, c in enumerate(CS.encode(text)):
                # probability p on the character, the rest on padding: a score of p per char
                logits[i, s, 0], logits[i, s, c] = 0.0, math.log(p / (1 - p))
        return {"slot_logits": logits, "slot_x": torch.full(logits.shape[:2], 0.5)}


def test_evaluate_a_fake_model_gives_hand_computed_accuracy_and_cer():
    truths = ["皖A12345", "AB123CD", "沪B6789", "京C0000"]
    readings = [("皖A12345", 0.99), ("AB12CD", 0.9), ("沪B6789", 0.95), ("津C0001", 0.6)]
    task = get_task("read")
    model = _Fake(readings)
    samples = []
    for k, text in enumerate(truths):
        image = torch.zeros(3, 32, 128, dtype=torch.uint8)
        image[0, 0, 0] = k
        samples.append((image, {"text": text, "rows": 1, "index": k, "style": "x"}))
    loader = [task.collate_for(model)(samples[:3]), task.collate_for(model)(samples[3:])]
    metrics, records = task.evaluate(model, loader, collect=True)
    assert metrics["accuracy"] == pytest.approx(2 / 4)
    assert metrics["cer"] == pytest.approx((0 + 1 + 0 + 2) / (7 + 7 + 6 + 6))
    assert metrics["province_accuracy"] == pytest.approx(2 / 3)
    assert [r["pred"] for r in records] == [r[0] for r in readings]
    assert records[1]["score"] == pytest.approx(0.9**6, rel=1e-4)
    assert records[0]["char_scores"] == pytest.approx([0.99] * 7, rel=1e-4)

"""``platelab compare`` of recognisers: the plan's checks and the report's accuracy table."""

from __future__ import annotations

import pytest

from platelab.compare_plan import RANKABLE, accuracy_keys, check_plan, plot_metric
from platelab.errors import PlatelabError
from platelab.eval.report import markdown_table


def test_plan_for_recognisers():
    specs = check_plan(["read:crnn", "read:slot_ocr"], (), None)
    assert [s.task for s in specs] == ["read", "read"]
    assert [s.run_name for s in specs] == ["read-crnn", "read-slot_ocr"]
    assert plot_metric(specs, None) == "accuracy"
    assert accuracy_keys(specs)[:2] == ["accuracy", "cer"]
    assert "cer" not in RANKABLE["read"]  # lower is better: it cannot rank epochs
    with pytest.raises(PlatelabError, match="compare recognisers .* on their own"):
        check_plan(["read:crnn", "dwsep_tiny"], (), None)
    with pytest.raises(PlatelabError, match="not measured for every compared task"):
        check_plan(["read:crnn"], (), "mean_iou")


def test_accuracy_table_of_recognisers_marks_the_lowest_cer_best():
    rows = [
        {"model": "read:crnn", "accuracy": 0.9, "cer": 0.02, "accuracy_at_90": 0.95},
        {"model": "read:slot_ocr", "accuracy": 0.8, "cer": 0.05, "accuracy_at_90": 0.9},
    ]
    table = markdown_table(rows)
    assert "plate acc" in table and "CER" in table and "mean IoU" not in table
    assert "**0.020**" in table and "**0.900**" in table

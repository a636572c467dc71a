"""metrics.csv: header once, appended rows, resume truncation."""

from __future__ import annotations

from platelab.engine.logging import MetricsCSV


def _write(path, epochs, **extra):
    log = MetricsCSV(path, start_epoch=epochs[0])
    for e in epochs:
        log.append({"epoch": e, "loss": 1.0 / e, **extra})
    return log


def test_header_once_and_rows_appended(tmp_path):
    path = tmp_path / "metrics.csv"
    _write(path, [1, 2, 3])
    lines = path.read_text().splitlines()
    assert lines[0] == "epoch,loss" and len(lines) == 4
    assert lines[1:] == ["1,1", "2,0.5", "3,0.33333333"]


def test_resume_drops_epochs_it_will_redo(tmp_path):
    path = tmp_path / "metrics.csv"
    _write(path, [1, 2, 3, 4])  # last.pth held epoch 2 when the run died in epoch 5
    log = _write(path, [3, 4, 5])
    assert [r["epoch"] for r in log.rows()] == ["1", "2", "3", "4", "5"]
    assert path.read_text().count("epoch") == 1


def test_fresh_start_removes_old_rows_and_keeps_shape(tmp_path):
    path = tmp_path / "metrics.csv"
    _write(path, [1, 2])
    log = MetricsCSV(path, start_epoch=1)
    assert not path.exists() and log.rows() == []
    log.append({"epoch": 1, "a": 0.5})
    log.append({"epoch": 2, "b": 7, "a": None})  # unknown key dropped, missing left empty
    assert path.read_text().splitlines() == ["epoch,a", "1,0.5", "2,"]


def test_header_survives_resume(tmp_path):
    path = tmp_path / "metrics.csv"
    _write(path, [1, 2], extra=3)
    log = MetricsCSV(path, start_epoch=2)
    log.append({"extra": 4, "epoch": 2, "loss": 0.25})
    assert path.read_text().splitlines() == ["epoch,loss,extra", "1,1,3", "2,0.25,4"]

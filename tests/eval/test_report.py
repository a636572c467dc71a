"""The comparison report: Pareto front by hand, budgets, tables, and a self-contained HTML."""

from __future__ import annotations

import base64
import csv
import re

import pytest

from platelab.compare import Budget, plan_budget
from platelab.errors import PlatelabError
from platelab.eval import report


@pytest.mark.parametrize(
    ("xs", "ys", "front"),
    [
        # (fps, accuracy): the slow accurate, the fast inaccurate and the middle all survive;
        # (0.4, 0.3) is beaten by (0.5, 0.9) on both axes.
        ([1, 2, 0.5, 0.4], [0.5, 0.4, 0.9, 0.3], [True, True, True, False]),
        ([1, 1], [0.5, 0.5], [True, True]),  # a tie on both axes dominates neither
        ([1, 1], [0.5, 0.6], [False, True]),  # as fast and more accurate dominates
        ([3], [0.1], [True]),
        ([], [], []),
    ],
)
def test_pareto_front_by_hand(xs, ys, front):
    assert report.pareto_front(xs, ys) == front


@pytest.mark.parametrize(
    ("text", "budget"),
    [
        ("8", Budget(epochs=8)),
        ("8ep", Budget(epochs=8)),
        ("epochs=3", Budget(epochs=3)),
        ("2.5min", Budget(minutes=2.5)),
        ("2m", Budget(minutes=2)),
        ("minutes=0.5", Budget(minutes=0.5)),
    ],
)
def test_budget_parse(text, budget):
    assert Budget.parse(text) == budget


@pytest.mark.parametrize("text", ["", "abc", "0", "-2min", "2h", "minutes=0"])
def test_budget_parse_refuses(text):
    with pytest.raises(PlatelabError):
        Budget.parse(text)


def test_plan_budget_fills_the_minutes():
    # 1000 train images = 32 steps of 32 x 10 ms = 0.32 s; val 100 x 2 ms x 1.5 = 0.3 s.
    # Whole epochs (10.54 s) fit 5 times in 60 s: 160 steps. Six epochs of
    # int((10 - 0.3) / 0.32) = 30 steps fit too (59.4 s): 180 steps, the plan.
    plan = plan_budget(Budget(minutes=1), 1000, 100, 32, 0.010, 0.002)
    assert plan == {"epochs": 6, "max_train_batches": 30}
    # One epoch would take 102.7 s > 30 s: (30 - 0.3) / (0.1 * 32) = 9.28 -> 9 steps.
    plan = plan_budget(Budget(minutes=0.5), 1000, 100, 32, 0.1, 0.002)
    assert plan == {"epochs": 1, "max_train_batches": 9}
    # 2 steps of 3.2 s per epoch, 18 s: 2 whole epochs (4 steps) beat 3 epochs of 1 step.
    assert plan_budget(Budget(minutes=0.3), 64, 0, 32, 0.1, 0.0) == {
        "epochs": 2,
        "max_train_batches": None,
    }
    # A fixed cost per epoch (loader start, checkpoint) counts: 2 x (6.4 + 3) > 18 s.
    assert plan_budget(Budget(minutes=0.3), 64, 0, 32, 0.1, 0.0, fixed_s=3.0) == {
        "epochs": 1,
        "max_train_batches": None,
    }
    # Even a budget too small for one step trains one step.
    assert plan_budget(Budget(minutes=0.01), 64, 0, 32, 0.1, 0.0)["max_train_batches"] == 1
    assert plan_budget(Budget(epochs=4), 10, 1, 2, 9.9, 9.9)["epochs"] == 4


ROWS = [
    {"model": "a", "params": 1_000_000, "gflops": 0.5, "fps": 100.0, "mean_iou": 0.6,
     "latency_p50_ms": 10.0, "pareto": 1, "real_acc_iou50": 0.5, "real_mean_iou": 0.4},
    {"model": "b", "params": 10_000_000, "gflops": 5.0, "fps": 10.0, "mean_iou": 0.7,
     "latency_p50_ms": 100.0, "pareto": 1, "real_acc_iou50": 0.75, "real_mean_iou": 0.6},
    {"model": "c", "params": 20_000_000, "gflops": 9.0, "fps": 5.0, "mean_iou": 0.65,
     "latency_p50_ms": 200.0, "pareto": 0, "real_acc_iou50": 0.25, "real_mean_iou": 0.3},
]  # fmt: skip


def test_markdown_tables_bold_the_unique_best():
    acc = report.markdown_table(ROWS, extra_sets=["real"]).splitlines()
    assert acc[0] == "| model | mean IoU | real acc@0.5 | real mean IoU |"
    assert len(acc) == 2 + len(ROWS)
    cells = {r.split("|")[1].strip(): r for r in acc[2:]}
    assert "**0.700**" in cells["b"] and "**0.750**" in cells["b"]  # best accuracy
    speed = report.markdown_table(ROWS, part="speed").splitlines()
    assert speed[0].startswith("| model | params (M) | GFLOPs | latency p50 (ms) | FPS |")
    cells = {r.split("|")[1].strip(): r for r in speed[2:]}
    assert "| 1.00 | 0.50 | **10.0** | **100.0** |" in cells["a"]  # lowest latency is best
    tied = [{**r, "mean_iou": 0.0} for r in ROWS]
    rows = report.markdown_table(tied).splitlines()[2:]
    assert all(r.endswith("| 0.000 |") for r in rows)  # a tie has no best: nothing in bold
    both = report.markdown_tables(ROWS, ["real"])
    assert both.index("**Size and speed**") < both.index("**Accuracy**")


def _figures(tmp_path):
    runs = {}
    for name, ious in (("a", [0.2, 0.5]), ("b", [0.3, 0.6])):
        path = tmp_path / f"{name}.csv"
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["epoch", "train_loss", "val_loss", "mean_iou", "acc_iou50"])
            for e, iou in enumerate(ious, 1):
                w.writerow([e, 1 / e, 1.1 / e, iou, iou])
        runs[name] = path
    pareto = report.pareto_plot(ROWS, "mean_iou", tmp_path / "pareto.png")
    curves = report.curves_plot(runs, tmp_path / "curves.png")
    return pareto, curves


def test_html_embeds_every_picture_and_md_links_them(tmp_path):
    pareto, curves = _figures(tmp_path)
    for p in (pareto, curves):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = report.write_results_csv(ROWS, tmp_path / "results.csv")
    ctx = {
        "title": "t",
        "setting": ["data: x <y>"],
        "rows": ROWS,
        "extra_sets": ["real"],
        "note": "n",
        "figures": [("Pareto", pareto), ("Curves", curves)],
        "links": [("results.csv", results)],
    }
    page = report.write_html(tmp_path / "report.html", ctx).read_text()
    assert page.count("<table>") == 2
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert len(srcs) == 2
    for src, png in zip(srcs, (pareto, curves), strict=True):
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]) == png.read_bytes()
    assert re.findall(r'href="([^"]+)"', page) == ["results.csv"]  # relative to the report
    assert "data: x &lt;y&gt;" in page  # text is escaped
    assert page.count('<tr class="front">') == 2 * 2  # both tables mark the front
    md = report.write_markdown(tmp_path / "report.md", ctx).read_text()
    assert re.findall(r"\]\(([^)]+)\)", md) == ["pareto.png", "curves.png", "results.csv"]
    with open(results, newline="") as f:
        back = list(csv.DictReader(f))
    assert [r["model"] for r in back] == ["a", "b", "c"] and back[1]["real_mean_iou"] == "0.6"

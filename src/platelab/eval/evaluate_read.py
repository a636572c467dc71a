"""``platelab eval`` of a recogniser (``task=read``) on a prepared crop dataset.

Every crop of the split(s) is read once (``READ.evaluate(..., collect=True)``, crops in
manifest order, two-line crops laid side by side as in training) and scored with
:mod:`platelab.eval.text`. Outputs in ``out`` (each written atomically)::

    metrics.json     {"task": "read", "model", "checkpoint", "epoch", "dataset", "split",
                      "canvas" (the crop size), "charset", "decoder", "skipped",
                      "metrics" (accuracy, cer, char_accuracy, province_accuracy,
                      mean_score, accuracy_at_90, n_crops),
                      "by_source", "by_subset", "by_style", "by_length", "by_rows",
                      "coverage" [{coverage_target, threshold, coverage, accuracy}],
                      "score": "product of the character confidences"}
    predictions.csv  one row per crop (PREDICTION_COLUMNS): image, text, pred, score,
                     correct, then split, source, subset, style, rows, length, edits
                     (Levenshtein distance to the truth) and char_scores (space separated)
    worst.png        the wrong readings, the most confident first: each crop enlarged,
                     the truth (green) and the reading with its score (red)
    coverage.png     accuracy against the share of crops kept at a score threshold
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import numpy as np

from platelab.atomic import atomic_open, atomic_write_bytes
from platelab.data.crop_manifest import CropItem, load_crop_split
from platelab.errors import PlatelabError
from platelab.eval.text import coverage_curve, coverage_table, grouped, levenshtein, text_metrics
from platelab.text import Charset

log = logging.getLogger(__name__)

PREDICTION_COLUMNS = ["image", "text", "pred", "score", "correct", "split", "source", "subset",
                      "style", "rows", "length", "edits", "char_scores"]  # fmt: skip
GROUP_COLUMNS = ("n_crops", "accuracy", "cer", "mean_score")
COVERAGE_PNG = "coverage.png"
TILE_SCALE = 2


def run(task, model, loader, items: list[CropItem], split_of: list[str], device, back=None):
    """Read every crop; returns ``(records, metrics, by_source, by_subset)``."""
    metrics, canvas_records = task.evaluate(model, loader, device, collect=True)
    records = []
    for r in canvas_records:
        item = items[r["index"]]
        truth, pred = Charset.normalize(r["text"]), Charset.normalize(r["pred"])
        records.append(
            r | {"image": item.image, "split": split_of[r["index"]], "source": item.source,
                 "subset": item.subset, "correct": truth == pred,
                 "edits": levenshtein(truth, pred), "length": len(truth)}
        )  # fmt: skip
    metrics = {k: v for k, v in metrics.items() if not k.startswith("val_")}
    return records, metrics, grouped(records, "source"), grouped(records, "subset")


def evaluate_crops(task, model, info, data: Path, splits: list[str], split: str, out, *,
                   batch_size: int, workers: int, device, gallery: int):  # fmt: skip
    """:func:`platelab.eval.evaluate.evaluate_checkpoint` for a recogniser: an EvalReport."""
    from tqdm import tqdm

    from platelab.data.crops import build_crop_eval_loader
    from platelab.eval.evaluate import EvalReport, write_outputs

    if tuple(info.get("input_size") or model.input_size) != tuple(model.input_size):
        log.warning("checkpoint input size differs from the model's crop size")
    loader = build_crop_eval_loader(data, splits, batch_size, workers=workers,
                                    collate_fn=task.collate_for(model))  # fmt: skip
    items: list[CropItem] = loader.dataset.items
    if not items:
        raise PlatelabError(f"{data}: split {split!r} has no crops")
    if tuple(loader.dataset.canvas) != tuple(model.input_size):
        w, h = loader.dataset.canvas
        raise PlatelabError(
            f"{data} holds {w}x{h} crops but the model reads "
            f"{model.input_size[0]}x{model.input_size[1]}: prepare the crops at its size"
        )
    split_of = [s for s in splits for _ in load_crop_split(data, s)]
    log.info("evaluating %s (%s, task read) on %s %s: %d crops", info["path"], info["model"],
             data, split, len(items))  # fmt: skip
    bar = tqdm(loader, desc=f"eval {split}", unit="batch", leave=False, dynamic_ncols=True)
    records, metrics, by_source, by_subset = run(task, model, bar, items, split_of, device)
    seen = {r["index"] for r in records}
    skipped = [it.image for i, it in enumerate(items) if i not in seen]
    if not records:
        raise PlatelabError(f"{data}: none of the {len(items)} crops of {split!r} could be read")
    report = EvalReport(metrics=metrics, by_source=by_source, by_subset=by_subset,
                        records=records, info=info, dataset=data, split=split, skipped=skipped,
                        task="read")  # fmt: skip
    report.extra = {
        "charset": {"name": model.charset.name, "symbols": list(model.charset.symbols)},
        "decoder": model.decoder,
        "by_style": grouped(records, "style"),
        "by_length": grouped(records, "length"),
        "by_rows": grouped(records, "rows"),
        "coverage": coverage_table(records),
        "score": "product of the character confidences",
    }
    if out is not None:
        out = Path(out)
        report.paths = write_outputs(report, out, items, gallery)
        report.paths["coverage"] = write_coverage_plot(records, out / COVERAGE_PNG)
    return report


def write_predictions_csv(path: Path, records: list[dict[str, Any]]) -> None:
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=PREDICTION_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for r in records:
            scores = " ".join(f"{s:.4f}" for s in r["char_scores"])
            writer.writerow(r | {"score": f"{r['score']:.6f}", "correct": int(r["correct"]),
                                 "char_scores": scores})  # fmt: skip


def document(doc: dict[str, Any]) -> dict[str, Any]:
    return {"task": "read", **doc}


def summary_lines(m: dict[str, float]) -> list[str]:
    prov = m.get("province_accuracy")
    lines = [
        f"accuracy {m['accuracy']:.4f}  CER {m['cer']:.4f}  char accuracy "
        f"{m['char_accuracy']:.4f}  mean score {m['mean_score']:.3f}",
        f"accuracy of the 90% most confident {m['accuracy_at_90']:.4f}"
        + ("" if prov is None or np.isnan(prov) else f"  province accuracy {prov:.4f}"),
    ]
    return lines


# -- pictures ------------------------------------------------------------------------------
def select_worst(records: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """The wrong readings, the most confident first (manifest order on ties), at most ``n``."""
    wrong = sorted(
        (r for r in records if not r["correct"]), key=lambda r: (-r["score"], r["index"])
    )
    return wrong[: max(n, 0)]


def _font(size: int):
    from PIL import ImageFont

    from platelab.data.synth.text import cjk_font

    try:
        return ImageFont.truetype(str(cjk_font()), size)
    except (PlatelabError, OSError):  # no CJK font: Latin still shows, CJK as boxes
        return ImageFont.load_default(size)


def draw_read_case(crop: np.ndarray, record: dict[str, Any]) -> np.ndarray:
    """One tile: the crop enlarged, the truth (green) and the reading with its score (red)."""
    import cv2
    from PIL import Image, ImageDraw

    h, w = crop.shape[:2]
    big = cv2.resize(crop, (w * TILE_SCALE, h * TILE_SCALE), interpolation=cv2.INTER_NEAREST)
    band = 3 * 18 + 6
    tile = Image.new("RGB", (big.shape[1], big.shape[0] + band), (255, 255, 255))
    tile.paste(Image.fromarray(big), (0, 0))
    draw, font, small = ImageDraw.Draw(tile), _font(16), _font(11)
    y = big.shape[0] + 2
    draw.text((4, y), f"truth {record['text'] or '∅'}", fill=(0, 140, 0), font=font)
    draw.text((4, y + 18), f"read  {record['pred'] or '∅'}  {record['score']:.2f}",
              fill=(200, 0, 0), font=font)  # fmt: skip
    draw.text((4, y + 38), Path(record["image"]).name[:40], fill=(80, 80, 80), font=small)
    return np.asarray(tile)


def write_read_gallery(dataset: Path, items: list[CropItem], records: list[dict[str, Any]],
                       out: Path, n: int = 16) -> Path | None:  # fmt: skip
    """Write the ``n`` worst readings (:func:`select_worst`) as a PNG grid; None if none."""
    import cv2

    from platelab.data.imageio import read_image
    from platelab.data.show import make_grid

    tiles = []
    for r in select_worst(records, n):
        try:
            crop = read_image(Path(dataset) / items[r["index"]].image)
        except (OSError, ValueError) as err:
            log.warning("gallery: skipping unreadable crop %s: %s", r["image"], err)
            continue
        tiles.append(draw_read_case(crop, r))
    if not tiles:
        return None
    width = max(t.shape[1] for t in tiles)
    tiles = [cv2.copyMakeBorder(t, 0, 0, 0, width - t.shape[1], cv2.BORDER_CONSTANT,
                                value=(255, 255, 255)) for t in tiles]  # fmt: skip
    ok, png = cv2.imencode(".png", cv2.cvtColor(make_grid(tiles, columns=4), cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("cv2 could not encode the gallery as PNG")
    atomic_write_bytes(out, png.tobytes())
    return Path(out)


def write_coverage_plot(records: list[dict[str, Any]], out: Path) -> Path | None:
    """Accuracy against the share kept (:func:`~platelab.eval.text.coverage_curve`) as PNG."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = coverage_curve([r["text"] for r in records], [r["pred"] for r in records],
                           [r["score"] for r in records])  # fmt: skip
    if not curve:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    ax.plot([p["coverage"] for p in curve], [p["accuracy"] for p in curve], marker=".")
    ax.set_xlabel("share of crops kept (score >= threshold)")
    ax.set_ylabel("accuracy of the kept")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    overall = text_metrics([r["text"] for r in records], [r["pred"] for r in records])
    ax.set_title(f"accuracy vs coverage (all: {overall['accuracy']:.3f})")
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())
    return Path(out)

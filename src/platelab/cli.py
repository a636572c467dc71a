"""The ``platelab`` command line: parse, call, print. The work lives in the modules.

A :class:`~platelab.errors.PlatelabError` (a user mistake) prints one line on
stderr and exits 2; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

from platelab import __version__
from platelab.errors import PlatelabError, is_disk_full, one_line

logger = logging.getLogger("platelab")
INFERENCE_COMMANDS = ("eval", "bench", "predict", "export", "read", "serve")


def _size(text: str) -> tuple[int, int]:
    from platelab.geometry import parse_size

    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(v) for v in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or any(p < 0 for p in parts) or sum(parts) <= 0:
        raise argparse.ArgumentTypeError(f"expected three fractions like 0.8,0.1,0.1, got {text!r}")
    return parts  # type: ignore[return-value]


def _names(text: str | None) -> list[str] | None:
    """``"license-plate, lp"`` -> ``["license-plate", "lp"]``; None stays None."""
    return None if text is None else [n.strip() for n in text.split(",") if n.strip()]


def _count(minimum: int):
    """An argparse type: an integer of at least ``minimum`` (1: a size, 0: a count)."""

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            n = None
        if n is None or n < minimum:
            what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return n

    parse.__name__ = "positive" if minimum == 1 else "count"  # argparse names it in errors
    return parse


_positive, _non_negative = _count(1), _count(0)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (``platelab: error: ...``) and exit 2.

    Subparsers are made with the parent's class, so every command behaves alike.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"platelab: error: {one_line(message)} (see: {self.prog} --help)\n")


def _workers(text: str) -> int:
    n = int(text)
    return n if n > 0 else max(1, os.cpu_count() or 1)


# -- data ----------------------------------------------------------------------------
def cmd_data_synth(args: argparse.Namespace) -> int:
    from platelab.data.synth import generate

    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    summary = generate(
        args.out,
        args.count,
        seed=args.seed,
        formats=formats,
        workers=args.workers,
        overwrite=args.overwrite,
    )
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    what = "crops" if formats == ["crops"] else "scenes"
    print(f"wrote {args.count} {what} to {args.out} ({', '.join(formats)})")
    return 0


def cmd_data_prepare(args: argparse.Namespace) -> int:
    from platelab.data.prepare import PrepareConfig, prepare
    from platelab.geometry import CROP_SIZE

    cfg = PrepareConfig(
        out=args.out,
        ccpd=args.ccpd or (),
        yolo=args.yolo or (),
        voc=args.voc or (),
        crops=args.crops or (),
        kind=args.kind,
        charset=args.charset,
        crop_size=args.size or CROP_SIZE,
        size=args.size or (640, 480),
        split=args.split,
        seed=args.seed,
        workers=args.workers,
        yolo_classes=_names(args.yolo_classes),
        voc_classes=_names(args.voc_classes),
        missing_labels=args.missing_labels,
    )
    report = prepare(cfg)
    if report.get("kind") == "crops":
        for s, c in report["counts"].items():
            print(f"{s:>5}: {c['crops']} crops ({c['two_line']} two-line)")
        if report["skipped"]:
            print(f"skipped {len(report['skipped'])} inputs (reasons in prepare_report.json)")
        print(f"crop dataset ({'x'.join(map(str, report['crop_size']))}) written to {args.out}")
        return 0
    for s, c in report["counts"].items():
        print(f"{s:>5}: {c['images']} images, {c['plates']} plates, {c['negatives']} negatives")
    missing = report["missing_labels"]
    if missing["photos"]:
        print(
            f"{missing['photos']} photos have no label file: {missing['skipped']} skipped, "
            f"{missing['negatives']} kept as negatives (--missing-labels {missing['policy']})"
        )
    if report["skipped"]:
        print(f"skipped {len(report['skipped'])} inputs (reasons in prepare_report.json)")
    print(f"dataset written to {args.out}")
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from platelab.data.check import check_dataset

    report = check_dataset(args.dataset, decode=not args.no_decode)
    for w in report.warnings[: args.max_lines]:
        print(f"warning: {w}")
    for e in report.errors[: args.max_lines]:
        print(f"error: {e}")
    for s, c in report.counts.items():
        print(f"{s:>5}: {c['images']} images, {c['plates']} plates, {c['negatives']} negatives")
    print(f"{len(report.errors)} errors, {len(report.warnings)} warnings")
    return 0 if report.ok else 1


def cmd_data_show(args: argparse.Namespace) -> int:
    from platelab.data.show import show

    path = show(
        args.dataset, split=args.split, augment=args.augment, n=args.n, out=args.out, seed=args.seed
    )
    print(f"wrote {path}")
    return 0


# -- models and training -----------------------------------------------------------------
def cmd_models(args: argparse.Namespace) -> int:
    from platelab.models import describe_models

    rows = describe_models(size=args.size, names=args.names or None)
    width = max(len("model"), *(len(r["name"]) for r in rows)) + 2
    print(f"{'model':<{width}}{'params':>12}{'input':>10}{'GFLOPs':>9}")
    for r in rows:
        w, h = r["input_size"]
        print(f"{r['name']:<{width}}{r['params']:>12,}{f'{w}x{h}':>10}{r['gflops']:>9.2f}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from platelab.config import load_config, load_run_config
    from platelab.train import train

    if args.resume is not None:
        if args.config is not None:
            raise PlatelabError("--resume takes its config from RUN/hparams.yaml; drop --config")
        cfg = load_run_config(args.resume, args.overrides)
    else:
        cfg = load_config(args.config, args.overrides)
    run = train(cfg, resume=args.resume)
    print(f"run folder: {run}")
    return 0


def _models(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    if not names:
        raise argparse.ArgumentTypeError(
            "expected model names like dwsep_small,resnet18,detect:dwsep_small"
        )
    return names


def _budget(text: str):
    from platelab.compare import Budget

    try:
        return Budget.parse(text)
    except PlatelabError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _named_path(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=DATASET, got {text!r}")
    return name, Path(path)


def _print_readings(readings: dict) -> None:
    from platelab.infer.read_run import summary_lines

    for name, summary in readings.items():
        print(f"== the default reader on {name} ({summary['source']}) ==")
        print("\n".join(summary_lines(summary)))


def _print_results(result: dict) -> None:
    from platelab.eval.report import markdown_tables

    print(markdown_tables(result["rows"], extra_sets=result["extra_sets"]))
    print(f"results: {result['results_csv']}")
    print(f"report:  {result['report_html']} (also report.md, pareto.png, curves.png)")


# -- evaluation and comparison -------------------------------------------------------------
def cmd_eval(args: argparse.Namespace) -> int:
    from platelab.eval.evaluate import evaluate_checkpoint, format_report

    target = Path(args.checkpoint)
    if not target.exists():
        raise PlatelabError(f"checkpoint or run folder not found: {target}")
    folder = target if target.is_dir() else target.parent
    out = args.out or folder / f"eval_{Path(args.data).resolve().name}_{args.split}"
    report = evaluate_checkpoint(
        target,
        args.data,
        args.split,
        out,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        gallery=args.gallery,
        ema=not args.no_ema,
    )
    print(format_report(report))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from platelab.compare import CompareConfig, compare

    cfg = CompareConfig(
        models=args.models,
        data=args.data,
        out=args.out,
        budget=args.budget,
        metric=args.metric,
        split=args.split,
        eval_sets=dict(args.eval_set or ()),
        overrides=tuple(args.overrides),
        batch_size=args.batch_size,
        workers=args.workers,
        bench_batch=args.bench_batch,
        threads=args.threads,
        seed=args.seed,
    )
    _print_results(compare(cfg))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from platelab.demo import DemoConfig, run_demo

    cfg = DemoConfig(
        out=args.out,
        scenes=args.scenes,
        models=args.models,
        budget=args.budget,
        size=args.size,
        workers=args.workers,
        real=None if args.no_real else args.real,
    )
    res = run_demo(cfg)
    _print_readings(res["readings"])
    print(f"dataset: {res['dataset']}")
    for s, c in res["counts"].items():
        print(f"  {s:>5}: {c['images']} images, {c['plates']} plates, {c['negatives']} negatives")
    print(f"samples: {', '.join(str(g) for g in res['grids'])}")
    if res["real_sets"]:
        print(f"real samples (evaluation only): {', '.join(res['real_sets'])}")
    _print_results(res)
    return 0


# -- parser ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="platelab",
        description="License plates: data, training, evaluation, comparison, deployment, and a plate reader.",
    )
    p.add_argument("--version", action="version", version=f"platelab {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="synthesise, prepare, check and look at datasets")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    s = dsub.add_parser("synth", help="render synthetic plate scenes (CCPD/YOLO/VOC) or crops")
    s.add_argument("out", type=Path)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--formats",
        default="ccpd,yolo,voc",
        help="comma-separated: ccpd,yolo,voc (scenes), crops (plate crops for the recogniser)",
    )
    s.add_argument("--workers", type=_workers, default=1, help="processes (0 = all cores)")
    s.add_argument("--overwrite", action="store_true", help="replace what is in OUT")
    s.set_defaults(func=cmd_data_synth)

    s = dsub.add_parser("prepare", help="letterbox sources into a dataset, or cut plate crops")
    s.add_argument("--ccpd", type=Path, action="append", help="CCPD root (repeatable)")
    s.add_argument("--yolo", type=Path, action="append", help="YOLO root (repeatable)")
    s.add_argument("--voc", type=Path, action="append", help="Pascal VOC root (repeatable)")
    s.add_argument(
        "--crops",
        type=Path,
        action="append",
        help="folder of plate crops named by text or with an image,text CSV (repeatable); "
        "makes a crop dataset",
    )
    s.add_argument(
        "--kind",
        choices=["auto", "scenes", "crops"],
        default="auto",
        help="scenes: letterboxed photos; crops: plate crops for task=read, scene sources cut "
        "by their plates' corners (auto: crops when --crops is given)",
    )
    s.add_argument(
        "--charset", default="plates", help="crop texts must be in it: cn, latin, plates or a file"
    )
    s.add_argument("--out", type=Path, required=True)
    s.add_argument(
        "--size",
        type=_size,
        default=None,
        help="canvas WxH, sides <= 8192 (default 640x480; crop datasets: the crop size, 128x32)",
    )
    s.add_argument(
        "--split", type=_fractions, default=(0.8, 0.1, 0.1), help="train,val,test; sums to 1"
    )
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--workers", type=_workers, default=1, help="processes (0 = all cores)")
    s.add_argument(
        "--yolo-classes",
        help="plate classes of YOLO sources: ids or data.yaml names, comma-separated "
        "(default: names that look like a plate, or the single class used)",
    )
    s.add_argument(
        "--voc-classes",
        help="plate class names of VOC sources, comma-separated, case/-/_ ignored "
        "(default: plate, licence, license plate, number plate, lp, ...)",
    )
    s.add_argument(
        "--missing-labels",
        choices=["skip", "negative"],
        default="skip",
        help="a YOLO photo without a label file: skip it (default) or use it as a negative",
    )
    s.set_defaults(func=cmd_data_prepare)

    s = dsub.add_parser("check", help="validate a prepared dataset (exit 1 on errors)")
    s.add_argument("dataset", type=Path)
    s.add_argument("--no-decode", action="store_true", help="only check that images exist")
    s.add_argument("--max-lines", type=int, default=50, help="print at most this many per kind")
    s.set_defaults(func=cmd_data_check)

    s = dsub.add_parser("show", help="a picture of samples with their boxes")
    s.add_argument("dataset", type=Path)
    s.add_argument("--split", default="train", choices=["train", "val", "test"])
    s.add_argument("--augment", action="store_true", help="show samples after augmentation")
    s.add_argument("--n", type=int, default=16)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", type=Path, required=True)
    s.set_defaults(func=cmd_data_show)

    s = sub.add_parser("models", help="list the model registry")
    s.add_argument("names", nargs="*", help="only these models")
    s.add_argument("--size", type=_size, default=(640, 480), help="input WxH for FLOPs")
    s.set_defaults(func=cmd_models)

    s = sub.add_parser(
        "train", help="train a model (task=localize, detect or read) into a run folder"
    )
    s.add_argument("--config", type=Path, help="a YAML experiment (see configs/)")
    s.add_argument("--resume", type=Path, help="continue the run in this folder")
    s.add_argument("overrides", nargs="*", metavar="key=value")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("eval", help="score a checkpoint on a dataset, in original pixels")
    s.add_argument("checkpoint", type=Path, metavar="RUN_OR_CHECKPOINT")
    s.add_argument("--data", type=Path, required=True, help="a prepared dataset")
    s.add_argument("--split", default="test", choices=["train", "val", "test", "all"])
    s.add_argument("--out", type=Path, help="default: RUN/eval_<dataset>_<split>")
    s.add_argument("--batch-size", type=_positive, default=32)
    s.add_argument("--workers", type=_non_negative, default=2, help="loader processes")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    s.add_argument(
        "--gallery", type=_non_negative, default=16, help="worst cases to draw (0: none)"
    )
    s.add_argument(
        "--no-ema", action="store_true", help="the raw weights, not the run's EMA (when kept)"
    )
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser(
        "compare",
        help="train, evaluate and time several models alike",
        description="Train, evaluate and time several models under one budget, then report. "
        "A model is a registry name, trained as a localiser (one box per image), or "
        "TASK:NAME for another task: detect:dwsep_small trains a detector (every plate, with "
        "corners). Localisers and detectors can be compared in one report.",
    )
    s.add_argument(
        "--models", type=_models, required=True,
        help="comma-separated [TASK:]NAME, e.g. dwsep_small,resnet18,detect:dwsep_small",
    )  # fmt: skip
    s.add_argument("--data", type=Path, required=True, help="a prepared dataset")
    s.add_argument("--budget", type=_budget, default="5", help="per model: 5 (epochs) or 3min")
    s.add_argument("--out", type=Path, default=Path("runs/compare"))
    s.add_argument(
        "--metric",
        help="accuracy on the Pareto plot and the rank of best epochs, one every compared task "
        "measures (default: mean_iou; ap50 when a detector is compared, each model's epochs "
        "then ranked by its task's own metric)",
    )
    s.add_argument("--split", default="test", choices=["train", "val", "test", "all"])
    s.add_argument(
        "--eval-set", type=_named_path, action="append", metavar="NAME=DATASET",
        help="also evaluate on this prepared dataset, whole (repeatable)",
    )  # fmt: skip
    s.add_argument("--batch-size", type=_positive, default=32)
    s.add_argument("--workers", type=_non_negative, default=2, help="loader processes")
    s.add_argument("--bench-batch", type=_positive, default=8, help="throughput batch")
    s.add_argument("--threads", type=_positive, help="CPU threads for timing (default: torch's)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("overrides", nargs="*", metavar="key=value", help="training keys for all")
    s.set_defaults(func=cmd_compare)

    from platelab import cli_deploy, cli_reader

    cli_deploy.add_commands(sub, _positive, _size)
    cli_reader.add_commands(sub, _positive)

    s = sub.add_parser("demo", help="the main job on built-in synthetic data")
    s.add_argument("--out", type=Path, default=Path("runs/demo"))
    s.add_argument("--scenes", type=_positive, default=2000, help="synthetic scenes to render")
    s.add_argument(
        "--models", type=_models, default=["dwsep_small", "mobilenet_v3_small", "resnet18"]
    )
    s.add_argument("--budget", type=_budget, default="2min", help="per model")
    s.add_argument("--size", type=_size, default=(320, 240), help="canvas WxH")
    s.add_argument("--workers", type=_workers, default=2, help="processes (0 = all cores)")
    s.add_argument(
        "--real", type=Path, default=Path("../shared/data/real"),
        help="real sample photos to evaluate on, when the folder exists",
    )  # fmt: skip
    s.add_argument("--no-real", action="store_true", help="skip the real samples")
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # platelab's own messages at INFO; libraries (the ONNX exporter's optimiser is chatty)
    # only from WARNING, unless -v.
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s" if args.verbose else "%(message)s",
    )
    logger.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    if args.command in INFERENCE_COMMANDS:
        from platelab.eval.speed import tune_malloc

        tune_malloc()  # eager forward passes reuse warm pages (see platelab.eval.speed)
    try:
        return args.func(args)
    except PlatelabError as e:  # one line: no ANSI codes, line breaks or undecodable bytes
        print(f"platelab: error: {one_line(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("platelab: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        # A write that found the disk full is the machine's state, not a bug: one line.
        # Code that can say what it kept raises DiskFullError (a PlatelabError) instead.
        if is_disk_full(e):
            print(f"platelab: error: the disk is full ({e.__class__.__name__})", file=sys.stderr)
            return 2
        raise

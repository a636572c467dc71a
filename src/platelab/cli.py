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

from platelab import __version__
from platelab.errors import PlatelabError

logger = logging.getLogger("platelab")


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
    print(f"wrote {args.count} scenes to {args.out} ({', '.join(formats)})")
    return 0


def cmd_data_prepare(args: argparse.Namespace) -> int:
    from platelab.data.prepare import PrepareConfig, prepare

    cfg = PrepareConfig(
        out=args.out,
        ccpd=args.ccpd or (),
        yolo=args.yolo or (),
        voc=args.voc or (),
        size=args.size,
        split=args.split,
        seed=args.seed,
        workers=args.workers,
    )
    report = prepare(cfg)
    for s, c in report["counts"].items():
        print(f"{s:>5}: {c['images']} images, {c['plates']} plates, {c['negatives']} negatives")
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


def cmd_demo(args: argparse.Namespace) -> int:
    from platelab.demo import DemoConfig, run_demo

    res = run_demo(
        DemoConfig(
            out=args.out,
            scenes=args.scenes,
            model=args.model,
            epochs=args.epochs,
            workers=args.workers,
        )
    )
    best = res["best"]
    print(f"dataset: {res['dataset']}")
    for s, c in res["counts"].items():
        print(f"  {s:>5}: {c['images']} images, {c['plates']} plates, {c['negatives']} negatives")
    print(f"samples: {', '.join(str(g) for g in res['grids'])}")
    print(f"run: {res['run']} (metrics.csv, hparams.yaml, last.pth, best_model_epoch_*.pth)")
    print(
        f"best epoch {best['epoch']}: mean IoU {float(best['mean_iou']):.3f}, "
        f"acc@0.5 {float(best['acc_iou50']):.3f}, F1 {float(best['f1']):.3f}, "
        f"AP50 {float(best['ap50']):.3f} on the synthetic val split"
    )
    return 0


# -- parser ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="platelab", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"platelab {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="synthesise, prepare, check and look at datasets")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    s = dsub.add_parser("synth", help="render synthetic plate scenes as CCPD/YOLO/VOC")
    s.add_argument("out", type=Path)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--formats", default="ccpd,yolo,voc", help="comma-separated: ccpd,yolo,voc")
    s.add_argument("--workers", type=_workers, default=1, help="processes (0 = all cores)")
    s.add_argument("--overwrite", action="store_true", help="replace what is in OUT")
    s.set_defaults(func=cmd_data_synth)

    s = dsub.add_parser("prepare", help="letterbox any mix of sources into a dataset")
    s.add_argument("--ccpd", type=Path, action="append", help="CCPD root (repeatable)")
    s.add_argument("--yolo", type=Path, action="append", help="YOLO root (repeatable)")
    s.add_argument("--voc", type=Path, action="append", help="Pascal VOC root (repeatable)")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--size", type=_size, default=(640, 480), help="canvas WxH (default 640x480)")
    s.add_argument("--split", type=_fractions, default=(0.8, 0.1, 0.1))
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--workers", type=_workers, default=1, help="processes (0 = all cores)")
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

    s = sub.add_parser("train", help="train a localiser into a run folder")
    s.add_argument("--config", type=Path, help="a YAML experiment (see configs/)")
    s.add_argument("--resume", type=Path, help="continue the run in this folder")
    s.add_argument("overrides", nargs="*", metavar="key=value")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("demo", help="the main job on built-in synthetic data")
    s.add_argument("--out", type=Path, default=Path("runs/demo"))
    s.add_argument("--scenes", type=int, default=2400, help="synthetic scenes to render")
    s.add_argument("--model", default="dwsep_small")
    s.add_argument("--epochs", type=int, default=8)
    s.add_argument("--workers", type=_workers, default=2, help="processes (0 = all cores)")
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s" if args.verbose else "%(message)s",
    )
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    try:
        return args.func(args)
    except PlatelabError as e:
        print(f"platelab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("platelab: interrupted", file=sys.stderr)
        return 130

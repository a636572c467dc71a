"""The reader's commands: ``platelab read``, ``serve`` and ``weights`` (see :mod:`platelab.cli`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from platelab.errors import PlatelabError


def _corner_model(args: argparse.Namespace) -> Path | bool | None:
    """``--corner-model PATH`` / ``--no-corner-model`` -> PlateReader's ``corner_model``."""
    if args.no_corner_model and args.corner_model is not None:
        raise PlatelabError("give --corner-model or --no-corner-model, not both")
    return False if args.no_corner_model else args.corner_model


def cmd_read(args: argparse.Namespace) -> int:
    from platelab.infer.read_run import run_read, summary_lines

    if args.pipeline is not None and (args.detector or args.reader):
        raise PlatelabError("give --pipeline, or --detector/--reader, not both")
    summary = run_read(
        args.source,
        args.out,
        detector=args.detector,
        recognizer=args.reader,
        pipeline=args.pipeline,
        runtime=args.runtime,
        conf=args.conf,
        batch_size=args.batch,
        threads=args.threads,
        device=args.device,
        refine=not args.no_refine,
        corner_model=_corner_model(args),
        save=not args.no_save,
        max_frames=args.max_frames,
    )
    print("\n".join(summary_lines(summary)))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from platelab.infer.reader import PlateReader

    try:
        from platelab.infer.serve import run_server
    except ImportError as e:
        raise PlatelabError(
            f"platelab serve needs the 'serve' extra ({e.name} is missing): "
            "pip install 'platelab[serve]'"
        ) from None

    if args.pipeline is not None:
        reader = PlateReader.from_pipeline(args.pipeline, threads=args.threads, conf=args.conf,
                                           corner_model=_corner_model(args))  # fmt: skip
    else:
        reader = PlateReader(args.detector, args.reader, runtime=args.runtime,
                             threads=args.threads, conf=args.conf,
                             corner_model=_corner_model(args))  # fmt: skip
    run_server(reader, host=args.host, port=args.port, max_bytes=args.max_mb * 2**20)
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    from platelab.infer.defaults import list_weights

    if args.pack is not None:
        from platelab.models.weights import pack_weights

        src, dst = args.pack
        done = pack_weights(Path(src), Path(dst), ema=not args.no_ema)
        which = "EMA" if done["ema"] else "raw"
        print(f"packed the {which} weights of {done['source']} into {dst} ({done['mb']:.1f} MB)")
        return 0
    rows = list_weights()
    wm = max([12, *(len(r["model"]) for r in rows)])
    print(
        f"{'name':<16} {'task':<7} {'model':<{wm}} {'MB':>5}  {'default':<7}  figures (see the card)"
    )
    for r in rows:
        figs = ", ".join(f"{k} {v}" for k, v in r["figures"].items())
        print(f"{r['name']:<16} {r['task']:<7} {r['model']:<{wm}} {r['mb']:>5.1f}  "
              f"{'yes' if r['default'] else '':<7}  {figs}")  # fmt: skip
    if rows and rows[0]["card"] is not None:
        print(f"model cards: {rows[0]['card'].parent}")
    return 0


def _corner_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("--corner-model", type=Path,
                   help="the corner stage's checkpoint (default: the shipped one)")  # fmt: skip
    s.add_argument("--no-corner-model", action="store_true",
                   help="keep the detector's corners (no corner stage)")  # fmt: skip


def add_commands(sub, positive) -> None:
    """Register ``read``, ``serve`` and ``weights`` on the ``platelab`` subparsers."""
    s = sub.add_parser("read", help="read plate texts in photos, folders, videos, streams")
    s.add_argument(
        "source", metavar="SOURCE",
        help="an image, a folder, a video, or a stream (URL or camera index)",
    )  # fmt: skip
    s.add_argument("--detector", type=Path, help="task=detect checkpoint/ONNX (default: shipped)")
    s.add_argument("--reader", type=Path, help="task=read checkpoint/ONNX (default: shipped)")
    s.add_argument("--pipeline", type=Path, help="a folder from platelab export --reader")
    s.add_argument("--out", type=Path, default=Path("runs/read"), help="default runs/read")
    s.add_argument("--runtime", choices=["auto", "torch", "onnx"], default="auto")
    s.add_argument("--conf", type=float, help="detection score to read a plate (0.25)")
    s.add_argument("--batch", type=positive, default=8, help="photos or frames per pass")
    s.add_argument("--threads", type=positive, help="CPU threads (default: torch's)")
    s.add_argument("--device", default="cpu")
    s.add_argument("--max-frames", type=positive, help="stop a video or stream after N frames")
    s.add_argument("--no-refine", action="store_true", help="one detector look per photo")
    _corner_args(s)
    s.add_argument("--no-save", action="store_true", help="only write the jsonl files")
    s.set_defaults(func=cmd_read)

    s = sub.add_parser("serve", help="an HTTP service and web page that reads plates")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--detector", type=Path, help="task=detect checkpoint/ONNX (default: shipped)")
    s.add_argument("--reader", type=Path, help="task=read checkpoint/ONNX (default: shipped)")
    s.add_argument("--pipeline", type=Path, help="a folder from platelab export --reader")
    s.add_argument("--runtime", choices=["auto", "torch", "onnx"], default="auto")
    s.add_argument("--conf", type=float, help="detection score to read a plate (0.25)")
    s.add_argument("--threads", type=positive, help="CPU threads (default: torch's)")
    s.add_argument("--max-mb", type=positive, default=10, help="largest upload, MB")
    _corner_args(s)
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("weights", help="the default weights shipped with platelab")
    s.add_argument(
        "--pack", nargs=2, metavar=("CHECKPOINT", "OUT"),
        help="write a checkpoint's weights alone (no optimiser state) to OUT",
    )  # fmt: skip
    s.add_argument("--no-ema", action="store_true", help="--pack: the raw weights, not the EMA")
    s.set_defaults(func=cmd_weights)

"""The deployment commands: ``platelab export``, ``bench`` and ``predict`` (see :mod:`platelab.cli`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from platelab.errors import PlatelabError


def _images_in(paths: list[Path]) -> list[Path]:
    from platelab.infer.predict import find_images

    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += find_images(p)[0]
        elif p.is_file():
            files.append(p)
        else:
            raise PlatelabError(f"parity image not found: {p}")
    return files


def cmd_export(args: argparse.Namespace) -> int:
    from platelab.infer.export import dataset_photos, export_checkpoint

    if not args.checkpoint.exists():
        raise PlatelabError(f"checkpoint or run folder not found: {args.checkpoint}")
    settings = {"conf": args.conf, "iou": args.iou, "max_det": args.max_det}
    postprocess = None
    if any(v is not None for v in settings.values()):
        import dataclasses

        from platelab.tasks.detect import DEPLOY

        given = {k: v for k, v in settings.items() if v is not None}
        postprocess = dataclasses.replace(DEPLOY, **given)
    photos = _images_in(args.parity_images or [])[: args.parity_n]
    photos = photos or dataset_photos(args.checkpoint, args.parity_n)
    if args.reader is not None:
        return _export_pipeline(args, photos, postprocess)
    if args.corner_model is not None or args.no_corner_model:
        raise PlatelabError("--corner-model and --no-corner-model are for a pipeline (--reader)")
    report = export_checkpoint(
        args.checkpoint,
        args.out,
        input_dtype=args.input_dtype,
        parity_images=photos,
        opset=args.opset,
        postprocess=postprocess,
    )
    w, h = report.canvas
    what = f"{report.task} " if report.task != "localize" else ""
    print(
        f"exported {report.model} {what}(canvas {w}x{h}, {report.input_dtype} input, "
        f"dynamic batch) to {report.path} ({report.size_mb:.1f} MB)"
    )
    if report.postprocess:
        pp = report.postprocess
        print(
            f"post-processing in the graph: conf {pp['conf']:g}, iou {pp['iou']:g}, "
            f"max_det {pp['max_det']} (outputs boxes, scores, corners, num)"
        )
    print("onnx.checker: ok")
    kind = "photos" if report.real_images else "random canvases (no photos found)"
    if report.task == "read":
        meta = report.metadata
        print(
            f"outputs logits [B, T, C] and positions [B, T], decoded outside the graph "
            f"({meta.get('decoder')}); metadata holds the charset and crop size {meta.get('canvas')}"
        )
        print(
            f"parity with PyTorch on {report.images} crops: the same text for "
            f"{report.texts_equal}/{report.images}, largest probability difference "
            f"{report.max_score_diff:.1e}, logit difference {report.max_logit_diff:.1e}"
        )
        return 0
    orig = report.max_box_diff_orig_px
    if report.task == "detect":
        corner_orig = report.max_corner_diff_orig_px
        print(
            f"parity with PyTorch on {report.images} {kind}: the same plates kept "
            f"({report.plates} in all); largest box difference {report.max_box_diff_px:.4f} px "
            f"and corner difference {report.max_corner_diff_px:.4f} px on the canvas"
            + (
                f" ({orig:.4f} and {corner_orig:.4f} px in the photos)"
                if orig is not None and corner_orig is not None
                else ""
            )
            + f", largest score difference {report.max_score_diff:.1e} "
            f"(tolerance {report.tolerance_px} px)"
        )
        if not report.plates:
            print(
                "warning: no plate scored above conf on these images: only empty outputs compared"
            )
        return 0
    print(
        f"parity with PyTorch on {report.images} {kind}: largest box difference "
        f"{report.max_box_diff_px:.4f} px on the canvas"
        + (f" ({orig:.4f} px in the photos)" if orig is not None else "")
        + f", largest score difference {report.max_score_diff:.1e} "
        f"(tolerance {report.tolerance_px} px)"
    )
    return 0


def _export_pipeline(args: argparse.Namespace, photos: list, postprocess) -> int:
    from platelab.infer.pipeline_export import export_pipeline

    if not args.reader.exists():
        raise PlatelabError(f"reader checkpoint or run folder not found: {args.reader}")
    if args.corner_model is not None and args.no_corner_model:
        raise PlatelabError("give --corner-model or --no-corner-model, not both")
    done = export_pipeline(
        args.checkpoint, args.reader, args.out, parity_images=photos, postprocess=postprocess,
        input_dtype=args.input_dtype, opset=args.opset,
        corner_model=False if args.no_corner_model else args.corner_model,
    )  # fmt: skip
    for role in ("detector", "reader"):
        r = done[role]
        print(f"{role}: {r.model} -> {r.path} ({r.size_mb:.1f} MB), parity checked on "
              f"{r.images} {'photos' if r.real_images else 'random inputs'}")  # fmt: skip
    if done["corners"] is not None:
        print(f"corner model -> {done['corners']}, parity checked on random windows")
    print(f"pipeline manifest: {done['manifest']} (platelab read SOURCE --pipeline {args.out})")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from platelab.eval.speed import BenchConfig, bench, format_table, write_csv

    cfg = BenchConfig(
        size=args.size,
        batch=args.batch,
        threads=args.threads,
        runtimes=tuple(r.strip() for r in args.runtime.split(",") if r.strip()),
        iters=args.iters,
        channels_last=args.channels_last,
        task=args.task,
    )
    rows = bench(args.targets, cfg)
    print(
        f"latency at batch 1 (p50/p90 after {cfg.warmup} warm-up runs), throughput at batch "
        f"{cfg.batch}, {rows[0]['threads']} threads; MB: the checkpoint file, or fp32 weights "
        "for a registry name"
    )
    print(format_table(rows))
    if args.csv:
        print(f"wrote {write_csv(rows, args.csv)}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from platelab.infer.predict import run_predict, summary_lines

    model = args.model
    if model is None:  # the shipped default detector (its ONNX export with --backend onnx)
        from platelab.infer.defaults import default_model

        model = default_model("detect", "onnx" if args.backend == "onnx" else "torch")
    summary = run_predict(
        model,
        args.source,
        args.out,
        backend=args.backend,
        batch_size=args.batch,
        conf=args.conf,
        save=not args.no_save,
        threads=args.threads,
        device=args.device,
    )
    print("\n".join(summary_lines(summary)))
    return 0


def add_commands(sub, positive, size) -> None:
    """Register ``bench``, ``export`` and ``predict`` on the ``platelab`` subparsers."""
    s = sub.add_parser("bench", help="latency, throughput, params, MB and GFLOPs")
    s.add_argument("targets", nargs="+", metavar="MODEL_OR_CHECKPOINT")
    s.add_argument("--size", type=size, help="WxH (default: the checkpoint's, else 640x480)")
    s.add_argument("--batch", type=positive, default=8, help="throughput batch (latency: batch 1)")
    s.add_argument("--threads", type=positive, help="CPU threads (default: torch's)")
    s.add_argument("--runtime", default="torch", help="comma-separated: torch,onnx")
    s.add_argument("--iters", type=positive, default=30, help="timed runs per figure, at most")
    s.add_argument("--channels-last", action="store_true", help="torch in channels_last")
    s.add_argument(
        "--task", choices=["localize", "detect", "read"],
        help="the task a registry name is built for (default localize, read for a recogniser; "
        "a checkpoint has its own)",
    )  # fmt: skip
    s.add_argument("--csv", type=Path, help="also write the rows here")
    s.set_defaults(func=cmd_bench)

    s = sub.add_parser("export", help="export a checkpoint to ONNX and check parity")
    s.add_argument("checkpoint", type=Path, metavar="CHECKPOINT")
    s.add_argument("--format", default="onnx", choices=["onnx"])
    s.add_argument(
        "--out", type=Path, required=True,
        help="the .onnx file (with --reader: a folder for both files and pipeline.json)",
    )  # fmt: skip
    s.add_argument("--reader", type=Path, help="a task=read checkpoint: export the pair")
    s.add_argument("--corner-model", type=Path,
                   help="with --reader: the corner stage to export (default: the shipped one)")  # fmt: skip
    s.add_argument("--no-corner-model", action="store_true",
                   help="with --reader: a pipeline without the corner stage")  # fmt: skip
    s.add_argument("--input-dtype", default="uint8", choices=["uint8", "float32"])
    s.add_argument(
        "--parity-images", type=Path, nargs="+", metavar="FILE_OR_DIR",
        help="photos for the parity check (default: the run's test photos)",
    )  # fmt: skip
    s.add_argument("--parity-n", type=positive, default=8, help="photos to check, at most")
    s.add_argument("--opset", type=int)
    s.add_argument("--conf", type=float, help="detect: score threshold in the graph (0.25)")
    s.add_argument("--iou", type=float, help="detect: NMS IoU threshold in the graph (0.5)")
    s.add_argument("--max-det", type=positive, help="detect: plates per image, K (50)")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("predict", help="plates in an image, a folder or a video")
    s.add_argument(
        "model", type=Path, nargs="?", metavar="CHECKPOINT_OR_ONNX",
        help="a model of any task (default: the shipped plate detector)",
    )  # fmt: skip
    s.add_argument("source", type=Path, metavar="SOURCE", help="an image, a folder or a video")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--backend", choices=["auto", "torch", "onnx"], default="auto")
    s.add_argument("--batch", type=positive, default=8)
    s.add_argument(
        "--conf", type=float,
        help="keep and draw plates scoring at least this (default: 0.5 localize, 0.25 detect)",
    )  # fmt: skip
    s.add_argument("--threads", type=positive, help="CPU threads (default: torch's)")
    s.add_argument("--device", default="cpu")
    s.add_argument("--no-save", action="store_true", help="only write predictions.jsonl")
    s.set_defaults(func=cmd_predict)

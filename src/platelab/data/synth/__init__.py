"""Synthetic plate scenes and plate crops: platelab's built-in default dataset.

:func:`render_scene` draws one scene in memory (an RGB image and its plates with
exact corners and texts); :func:`generate` renders many in parallel and writes
them as CCPD, YOLO and/or Pascal VOC (see :mod:`.writers` for the layouts), so
``platelab data prepare`` reads them exactly as it reads real data. The ``crops``
format writes plate crops for the recogniser instead (:mod:`.crops`).

Scene ``i`` of a run is seeded from ``(seed, i)`` alone, so a dataset is the same
whatever the worker count, and ``generate(count=n)`` is a prefix of ``count=m > n``.
"""

from __future__ import annotations

import difflib
import multiprocessing
import shutil
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import cv2
from tqdm import tqdm

from platelab.data.imageio import encode_jpeg
from platelab.data.synth.plates import STYLE_WEIGHTS, PlateImage, render_plate
from platelab.data.synth.scenes import Scene, SceneConfig, ScenePlate, render_scene
from platelab.data.synth.text import cjk_font
from platelab.data.synth.writers import FORMATS, SCENE_FORMATS, write_index_files, write_scene
from platelab.errors import PlatelabError

__all__ = [
    "FORMATS",
    "STYLE_WEIGHTS",
    "PlateImage",
    "Scene",
    "SceneConfig",
    "ScenePlate",
    "generate",
    "render_plate",
    "render_scene",
    "scene_split",
]

JPEG_QUALITY = 92


def scene_split(index: int, fractions: tuple[float, float] = (0.1, 0.1)) -> str:
    """The split of scene ``index``: ``val``/``test`` for ``fractions = (val, test)`` of them.

    A Weyl sequence (``index * golden ratio`` mod 1) spreads each split evenly over
    the indices, so any prefix ``0..n-1`` holds close to ``n * fraction`` of each.
    """
    u = (index * 0.6180339887498949) % 1.0
    val, test = fractions
    return "val" if u < val else "test" if u < val + test else "train"


def _check(out: Path, count: int, seed: int, formats: Sequence[str], workers: int,
           overwrite: bool) -> list[str]:  # fmt: skip
    existing = next(p for p in (Path(out), *Path(out).parents) if p.exists())
    if not existing.is_dir():  # OUT, or a folder on its path, is a file
        raise PlatelabError(
            f"{existing} exists and is not a folder: choose a folder for the scenes"
        )
    cjk_font()  # fail here, once, with the install hint, rather than in every worker
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    for f in formats:
        if f not in FORMATS:
            close = difflib.get_close_matches(f, FORMATS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise PlatelabError(
                f"unknown synth format {f!r}{hint}; choose from {', '.join(FORMATS)}"
            )
    if not formats:
        raise PlatelabError(f"no output format given; choose from {', '.join(FORMATS)}")
    if count < 0 or seed < 0 or workers < 1:
        raise PlatelabError(
            f"need count >= 0, seed >= 0, workers >= 1; got {count}, {seed}, {workers}"
        )
    for f in formats:
        d = Path(out) / f
        if d.is_dir() and any(d.iterdir()):
            if not overwrite:
                raise PlatelabError(
                    f"{d} already holds files (a previous run's would mix in): "
                    "choose an empty folder or overwrite it (--overwrite)"
                )
            shutil.rmtree(d)
        elif d.exists() and not d.is_dir():
            raise PlatelabError(f"{d} exists and is not a folder")
    return list(dict.fromkeys(formats))


def _one(index: int, out: Path, seed: int, formats: list[str], config: SceneConfig,
         split_fractions: tuple[float, float]) -> dict:  # fmt: skip
    scene = render_scene((seed, index), config)
    split = scene_split(index, split_fractions)
    jpeg = encode_jpeg(scene.image, quality=JPEG_QUALITY)
    written = write_scene(out, f"synth_{seed}_{index:07d}", scene, split, jpeg, formats)
    return {"kind": scene.kind, "styles": [p.style for p in scene.plates], "split": split,
            "written": written}  # fmt: skip


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core already; OpenCV's own threads would fight


def generate(
    out: Path,
    count: int,
    seed: int = 0,
    formats: Sequence[str] = SCENE_FORMATS,
    workers: int = 1,
    progress: bool = True,
    *,
    config: SceneConfig | None = None,
    split_fractions: tuple[float, float] = (0.1, 0.1),
    overwrite: bool = False,
) -> dict:
    """Render ``count`` scenes and write them under ``out`` in each of ``formats``.

    Args:
        out: the output folder; each format writes into ``out/<format>``.
        count: number of scenes (negatives included).
        seed: scene ``i`` is rendered from ``(seed, i)``: the same files for any ``workers``.
        formats: any of ``ccpd``, ``yolo``, ``voc``, ``crops`` (a list or a comma-separated
            string). CCPD receives only negatives and single-plate Chinese scenes;
            ``crops`` renders ``count`` plate crops into ``out/crops`` (:mod:`.crops`).
        workers: processes rendering in parallel.
        progress: show a tqdm bar.
        config: what scenes contain (default :class:`SceneConfig`).
        split_fractions: shares of scenes in the ``val`` and ``test`` splits (the rest
            is ``train``), spread evenly over the indices (see :func:`scene_split`).
        overwrite: remove an existing, non-empty ``out/<format>`` first instead of
            refusing (files of an earlier run would otherwise mix in).

    Returns:
        A summary: ``scenes``, ``plates``, ``negatives``, counts ``by_kind``,
        ``by_style``, ``by_split``, and per format ``written``/``skipped`` scenes
        (``crops``: the summary of :func:`.crops.generate_crops`).

    Raises:
        PlatelabError: an unknown format, a negative count or seed, a non-empty
            output folder without ``overwrite``, or a missing font.
    """
    out = Path(out)
    cfg = config or SceneConfig()
    unknown = sorted(set(cfg.styles) - set(STYLE_WEIGHTS))
    if unknown or not cfg.styles:  # every argument is checked before _check deletes anything
        raise PlatelabError(
            f"unknown plate styles {unknown}; choose from {', '.join(STYLE_WEIGHTS)}"
        )
    if min(split_fractions) < 0 or sum(split_fractions) > 1:
        raise PlatelabError(f"split fractions must be >= 0 and sum to <= 1, got {split_fractions}")
    fmts = _check(out, count, seed, formats, workers, overwrite)
    crops = None
    if "crops" in fmts:
        from platelab.data.synth.crops import generate_crops

        crops = generate_crops(out / "crops", count, seed, workers, progress,
                               split_fractions=tuple(split_fractions))  # fmt: skip
        fmts = [f for f in fmts if f in SCENE_FORMATS]
    summary = _scenes(out, count if fmts else 0, seed, fmts, workers, progress, cfg,
                      tuple(split_fractions))  # fmt: skip
    if crops is not None:
        summary["formats"]["crops"] = crops
    return summary


def _scenes(out: Path, count: int, seed: int, fmts: list[str], workers: int, progress: bool,
            cfg: SceneConfig, split_fractions: tuple[float, float]) -> dict:  # fmt: skip
    """Render ``count`` scenes and write them in the scene formats ``fmts``."""
    job = partial(
        _one, out=out, seed=seed, formats=fmts, config=cfg, split_fractions=split_fractions
    )
    results: list[dict] = []
    with tqdm(total=count, desc="synth", unit="scene", disable=not progress) as bar:
        if workers > 1 and count > 1:
            chunk = max(1, min(16, count // (workers * 4)))
            # spawn, not fork: a child forked after OpenCV's thread pool has run can deadlock.
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
                for res in pool.map(job, range(count), chunksize=chunk):
                    results.append(res)
                    bar.update()
        else:
            for i in range(count):
                results.append(job(i))
                bar.update()
    lists: dict[str, dict[str, list[str]]] = {f: {} for f in fmts}
    for res in results:
        for f, rel in res["written"].items():
            if rel is not None:
                lists[f].setdefault(res["split"], []).append(rel)
    write_index_files(out, fmts, lists)
    return {
        "out": str(out),
        "seed": seed,
        "scenes": len(results),
        "plates": sum(len(r["styles"]) for r in results),
        "negatives": sum(not r["styles"] for r in results),
        "by_kind": dict(Counter(r["kind"] for r in results)),
        "by_style": dict(Counter(s for r in results for s in r["styles"])),
        "by_split": dict(Counter(r["split"] for r in results)),
        "formats": {
            f: {
                "written": sum(r["written"][f] is not None for r in results),
                "skipped": sum(r["written"][f] is None for r in results),
            }
            for f in fmts
        },
    }

"""Loader throughput: decode, augmentation, and the full stream with 1 and 2 workers.

    python benchmarks/loader.py [--count 200] [--size 640x480] [--batch 16] [--mosaic 0.5]

Builds a throwaway prepared dataset of cv2-drawn scenes (one plate each) in a
temp folder, then prints images/s for

* decode only (simplejpeg, the stream's reader, file in the page cache),
* augmentation only (the default :class:`AugmentConfig`, on pre-decoded images),
* the stream with full augmentation through a ``DataLoader`` with 1 and 2 workers,

(``--mosaic P``: and the detector's stream with ``augment.mosaic_p=P`` and 1 worker,
against the same stream without mosaics), and two ratios: the stream's overhead over
decode + augment done back to back
in one process (target <= 20%), and the 2-worker speed-up (target >= 1.7x; it
needs two idle cores). The main process and each worker use one thread. CPU
time per image (read from /proc for the workers) is printed beside each rate:
unlike wall-clock rates it stays meaningful on a machine shared with other jobs.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from platelab.data.augment import AugmentConfig, build_augment  # noqa: E402
from platelab.data.imageio import read_image  # noqa: E402
from platelab.data.manifest import ManifestImage, load_split, write_manifest  # noqa: E402
from platelab.data.stream import build_loader, collate_batch  # noqa: E402
from platelab.geometry import Letterbox, parse_size  # noqa: E402
from platelab.tasks.detect import collate_detect  # noqa: E402


def make_dataset(root: Path, count: int, w: int, h: int, seed: int = 0) -> Path:
    """``count`` scenes with texture (gradient, shapes, noise) so JPEGs have realistic sizes."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    ys, xs = np.mgrid[0:h, 0:w]
    images = []
    for i in range(count):
        base = rng.integers(40, 200, 3)
        img = (base + 0.15 * xs[..., None] * rng.uniform(-1, 1, 3) + 0.1 * ys[..., None]).clip(
            0, 255
        )
        img = img.astype(np.uint8)
        for _ in range(12):
            p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            p1 = (
                p0[0] + int(rng.integers(-w // 4, w // 4)),
                p0[1] + int(rng.integers(-h // 4, h // 4)),
            )
            cv2.rectangle(img, p0, p1, rng.integers(0, 255, 3).tolist(), int(rng.integers(-1, 4)))
        img = cv2.add(img, rng.integers(0, 12, img.shape, dtype=np.uint8))
        pw, ph = int(rng.integers(w // 8, w // 4)), int(rng.integers(h // 16, h // 8))
        x0, y0 = int(rng.integers(0, w - pw)), int(rng.integers(0, h - ph))
        cv2.rectangle(img, (x0, y0), (x0 + pw, y0 + ph), (235, 235, 235), -1)
        cv2.putText(
            img,
            f"AB{i:04d}",
            (x0 + 4, y0 + ph - 4),
            cv2.FONT_HERSHEY_SIMPLEX,
            ph / 40,
            (20, 20, 20),
            max(1, ph // 12),
        )
        name = f"images/{i:05d}.jpg"
        cv2.imwrite(str(root / name), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        box = np.array([[x0, y0, x0 + pw, y0 + ph]], np.float32)
        quad = box[:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(1, 4, 2)
        images.append(
            ManifestImage(name, box, quad, [""], "synth", "bench", Letterbox.fit(w, h, w, h), name)
        )
    write_manifest(root / "train.csv", images)
    (root / "prepare_report.json").write_text(json.dumps({"canvas": [w, h]}))
    return root


@dataclass
class Speed:
    """Wall-clock images/s, and CPU ms per image (all loader workers; the main process)."""

    img_per_s: float
    cpu_ms: float
    main_cpu_ms: float = 0.0


def _children_cpu_s() -> float:
    """CPU seconds used so far by this process's live children (loader workers), from /proc."""
    total, me, tick = 0.0, str(os.getpid()), os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        if fields[1] == me:  # ppid
            total += (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return total


def measure(fn, n: int) -> Speed:
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return Speed(n / wall, 0.0, cpu / n * 1000)


def stream_speed(
    root: Path, batch: int, workers: int, count: int, augment: AugmentConfig | None = None,
    collate_fn=collate_batch,
) -> Speed:  # fmt: skip
    """One epoch after a warm-up epoch (which starts the persistent workers)."""
    loader = build_loader(root, "train", batch, workers=workers, augment=augment or AugmentConfig(),
                          seed=0, collate_fn=collate_fn)  # fmt: skip
    stream = loader.dataset
    stream.set_epoch(0)
    for _ in loader:
        pass
    stream.set_epoch(1)

    def epoch():
        seen = sum(len(images) for images, _ in loader)
        assert seen == count, seen

    children = _children_cpu_s()
    speed = measure(epoch, count)
    speed.cpu_ms = (_children_cpu_s() - children) / count * 1000
    return speed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=200, help="images in the generated dataset")
    ap.add_argument("--size", default="640x480", help="canvas WxH")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--mosaic", type=float, default=0.0,
                    help="also time the detector's stream at augment.mosaic_p=P (1 worker)")  # fmt: skip
    args = ap.parse_args()
    w, h = parse_size(args.size)
    load = os.getloadavg()[0]
    torch.set_num_threads(1)
    cv2.setNumThreads(1)

    with tempfile.TemporaryDirectory(prefix="platelab-bench-") as tmp:
        root = make_dataset(Path(tmp), args.count, w, h)
        manifest = load_split(root, "train")
        paths = [root / m.image for m in manifest]
        decoded = [read_image(p) for p in paths]  # also warms the page cache
        decode = measure(lambda: [read_image(p) for p in paths], len(paths))
        aug = build_augment(AugmentConfig(), w, h, seed=0)
        pairs = list(zip(decoded, manifest, strict=True))
        augment = measure(lambda: [aug(im, m.boxes_xyxy, m.corners) for im, m in pairs], len(paths))
        one = stream_speed(root, args.batch, 1, args.count)
        two = stream_speed(root, args.batch, 2, args.count)
        if args.mosaic > 0:
            plain = stream_speed(root, args.batch, 1, args.count, AugmentConfig(), collate_detect)
            mosaics = stream_speed(root, args.batch, 1, args.count,
                                   AugmentConfig(mosaic_p=args.mosaic), collate_detect)  # fmt: skip

    print(
        f"{args.count} images {w}x{h}, batch {args.batch}; 1 thread in the main process and "
        f"in each worker (torch {torch.get_num_threads()}, cv2 {cv2.getNumThreads()}); "
        f"{os.cpu_count()} CPUs, load average {load:.1f} before the run"
    )
    print(f"{'':20s} {'img/s':>8s} {'worker CPU ms/img':>19s} {'main CPU ms/img':>17s}")
    for name, sp in [("decode only", decode), ("augment only", augment)]:
        print(f"{name:20s} {sp.img_per_s:8.1f} {'-':>19s} {sp.main_cpu_ms:17.2f}")
    for name, sp in [("stream, 1 worker", one), ("stream, 2 workers", two)]:
        print(f"{name:20s} {sp.img_per_s:8.1f} {sp.cpu_ms:19.2f} {sp.main_cpu_ms:17.2f}")
    if args.mosaic > 0:
        for name, sp in [("detector stream", plain), (f"  mosaic_p={args.mosaic:g}", mosaics)]:
            print(f"{name:20s} {sp.img_per_s:8.1f} {sp.cpu_ms:19.2f} {sp.main_cpu_ms:17.2f}")
        print(f"mosaics cost {mosaics.cpu_ms / plain.cpu_ms:.2f}x the worker CPU per sample "
              f"({plain.img_per_s / mosaics.img_per_s:.2f}x wall), 1 worker")  # fmt: skip
    overhead = (1 / one.img_per_s) / (1 / decode.img_per_s + 1 / augment.img_per_s) - 1
    cpu_overhead = (one.cpu_ms + one.main_cpu_ms) / (decode.main_cpu_ms + augment.main_cpu_ms) - 1
    print(f"stream overhead   {overhead:7.1%} wall, {cpu_overhead:7.1%} CPU   (target <= 20%)")
    print(
        f"2-worker speed-up {two.img_per_s / one.img_per_s:7.2f}x wall; CPU per image "
        f"{two.cpu_ms / one.cpu_ms:.2f}x of 1 worker's (1.00 = scales with free cores; "
        "target >= 1.7x wall)"
    )
    if load > 1.0:  # more than one of the 2 cores busy before the run
        print(
            "note: the machine was busy; wall-clock figures (the speed-up most) are unreliable,"
            " CPU figures less so"
        )


if __name__ == "__main__":
    main()

"""The stream: exactly-once sharding, agreed shuffles, even shards, skips; batches by hand."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from platelab.data.augment import AugmentConfig
from platelab.data.manifest import ManifestImage, write_manifest
from platelab.data.stream import (
    PlateDataset,
    PlateStream,
    build_eval_loader,
    build_loader,
    collate_batch,
)
from platelab.geometry import Letterbox
from tests.data.test_augment import NO_PHOTO

W, H = 64, 48
N = 11  # odd, so 2 ranks x 2 workers get uneven shards


def plate_box(i: int) -> tuple[float, float, float, float]:
    x0 = 4.0 + 3 * (i % 10)
    return (x0, 10.0, x0 + 24.0, 22.0)


def make_dataset(root: Path, n: int = N, negatives: tuple[int, ...] = (3,)) -> Path:
    """A tiny prepared dataset: image i has a red plate at plate_box(i), except negatives."""
    (root / "images").mkdir(parents=True)
    images = []
    for i in range(n):
        img = np.full((H, W, 3), 128, np.uint8)
        name = f"images/{i:03d}.jpg"
        if i in negatives:
            boxes, corners = np.zeros((0, 4), np.float32), np.zeros((0, 4, 2), np.float32)
        else:
            x0, y0, x1, y1 = plate_box(i)
            img[int(y0) : int(y1), int(x0) : int(x1)] = (0, 0, 255)  # BGR red
            boxes = np.array([plate_box(i)], np.float32)
            corners = np.array([[[x0, y0], [x1, y0], [x1, y1], [x0, y1]]], np.float32)
        assert cv2.imwrite(str(root / name), img)
        images.append(
            ManifestImage(
                name,
                boxes,
                corners,
                [""] * len(boxes),
                "synth",
                "t",
                Letterbox.fit(W, H, W, H),
                f"orig/{i}.png",
            )
        )
    write_manifest(root / "train.csv", images)
    write_manifest(root / "val.csv", images[:3])
    (root / "prepare_report.json").write_text(json.dumps({"canvas": [W, H]}))
    return root


@pytest.fixture
def dataset(tmp_path) -> Path:
    return make_dataset(tmp_path / "ds")


def rank_indices(stream: PlateStream, workers: int, batch_size: int = 1) -> list[int]:
    loader = DataLoader(
        stream, batch_size=batch_size, num_workers=workers, collate_fn=collate_batch
    )
    return [i for _, t in loader for i in t["index"].tolist()]


def test_every_image_exactly_once_over_2_ranks_x_2_workers(dataset):
    orders = {}
    for epoch in (0, 1):
        per_rank = []
        for rank in (0, 1):
            stream = PlateStream(dataset, "train", shuffle=True, seed=7, rank=rank, world_size=2)
            stream.set_epoch(epoch)
            got = rank_indices(stream, workers=2)
            # batch 1 alternates the two workers, so the rank's sequence is its whole share
            assert got == stream.epoch_order(epoch)[rank::2].tolist()
            per_rank.append(got)
        assert sorted(per_rank[0] + per_rank[1]) == list(range(N))
        assert {len(per_rank[0]), len(per_rank[1])} == {6, 5}
        orders[epoch] = per_rank
    assert orders[0] != orders[1], "the shuffle should change with the epoch"


def test_shuffle_agrees_between_processes_and_differs_by_epoch(dataset):
    a = PlateStream(dataset, shuffle=True, seed=3, rank=0, world_size=2)
    b = PlateStream(dataset, shuffle=True, seed=3, rank=1, world_size=2)
    np.testing.assert_array_equal(a.epoch_order(4), b.epoch_order(4))
    assert not np.array_equal(a.epoch_order(4), a.epoch_order(5))
    assert sorted(a.epoch_order(4).tolist()) == list(range(N))
    unshuffled = PlateStream(dataset, shuffle=False, rank=0, world_size=1)
    assert [t["index"] for _, t in unshuffled] == list(range(N))


def test_even_pads_every_rank_to_the_same_count(dataset):
    counts, seen = [], []
    for rank in (0, 1):
        stream = PlateStream(dataset, shuffle=True, seed=1, even=True, rank=rank, world_size=2)
        assert stream.num_samples_per_rank() == len(stream) == 6
        got = rank_indices(stream, workers=2)
        counts.append(len(got))
        seen += got
        loader = DataLoader(stream, batch_size=4, num_workers=2, collate_fn=collate_batch)
        assert len(list(loader)) == stream.num_batches(4, num_workers=2) == 2  # 3 + 3 samples
    assert counts == [6, 6]
    assert set(seen) == set(range(N)) and len(seen) == 12  # one image repeated


@pytest.mark.parametrize(
    ("workers", "drop_last", "batches"), [(0, False, 3), (2, False, 4), (2, True, 2)]
)
def test_loader_length_is_the_exact_batch_count(dataset, workers, drop_last, batches):
    # 11 images, batch 4: one process makes 4+4+3; two workers make 4+2 and 4+1.
    loader = build_loader(dataset, "train", 4, workers=workers, drop_last=drop_last, seed=2)
    assert len(loader) == batches
    assert len(list(loader)) == batches


def test_drop_last_cuts_to_equal_counts(dataset):
    got = [
        rank_indices(PlateStream(dataset, drop_last=True, rank=r, world_size=2), workers=0)
        for r in (0, 1)
    ]
    assert [len(g) for g in got] == [5, 5] and not set(got[0]) & set(got[1])


def test_shuffle_buffer_keeps_exactly_once_and_is_reproducible(dataset):
    stream = PlateStream(dataset, shuffle=False, shuffle_buffer=4, seed=9, rank=0, world_size=1)
    first = [t["index"] for _, t in stream]
    assert sorted(first) == list(range(N)) and first != list(range(N))
    assert [t["index"] for _, t in stream] == first
    stream.set_epoch(1)
    assert [t["index"] for _, t in stream] != first


def test_rank_comes_from_the_environment(dataset, monkeypatch):
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "3")
    stream = PlateStream(dataset)
    assert (stream.rank, stream.world_size) == (2, 3)
    assert len(stream) == 3  # positions 2, 5, 8 of 11
    with pytest.raises(ValueError):
        PlateStream(dataset, rank=3, world_size=3)


def test_samples_match_the_manifest(dataset):
    samples = list(PlateStream(dataset, shuffle=False, rank=0, world_size=1))
    for image, target in samples:
        i = target["index"]
        assert image.dtype == torch.uint8 and image.shape == (3, H, W)
        if i == 3:
            assert target["boxes_xyxy"].shape == (0, 4) and target["corners"].shape == (0, 4, 2)
            continue
        x0, y0, x1, y1 = (int(v) for v in plate_box(i))
        np.testing.assert_allclose(target["boxes_xyxy"].numpy(), [plate_box(i)])
        plate = image[:, y0 + 1 : y1 - 1, x0 + 1 : x1 - 1].float().mean(dim=(1, 2))
        assert plate[0] > 200 and plate[1] < 60 and plate[2] < 60  # RGB red inside its box


def test_corrupt_and_missing_images_are_skipped_with_a_log(dataset, caplog):
    (dataset / "images/005.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (dataset / "images/008.jpg").unlink()
    with caplog.at_level(logging.WARNING, logger="platelab.data.stream"):
        got = [t["index"] for _, t in PlateStream(dataset, shuffle=False, rank=0, world_size=1)]
    assert got == [i for i in range(N) if i not in (5, 8)]
    assert "005.jpg" in caplog.text and "008.jpg" in caplog.text

    # even=True substitutes the next readable image so the count per rank holds
    even = PlateStream(dataset, shuffle=False, even=True, rank=1, world_size=2)
    got = [t["index"] for _, t in even]
    assert len(got) == even.num_samples_per_rank() == 6 and 5 not in got

    # the ordered eval set leaves them out of the batch
    loader = build_eval_loader(dataset, "train", batch_size=4)
    got = [i for _, t in loader for i in t["index"].tolist()]
    assert got == [i for i in range(N) if i not in (5, 8)]


def test_collate_batch_by_hand():
    img = torch.zeros((3, H, W), dtype=torch.uint8)
    two = torch.tensor([[0, 0, 10, 10], [20, 10, 40, 30]], dtype=torch.float32)  # areas 100, 400
    one = torch.tensor([[8, 4, 24, 16]], dtype=torch.float32)
    samples = [
        (img, {"boxes_xyxy": two, "corners": torch.full((2, 4, 2), float("nan")), "index": 7}),
        None,  # an unreadable image
        (img, {"boxes_xyxy": torch.zeros((0, 4)), "corners": torch.zeros((0, 4, 2)), "index": 2}),
        (img, {"boxes_xyxy": one, "corners": torch.full((1, 4, 2), float("nan")), "index": 0}),
    ]
    images, t = collate_batch(samples)
    assert images.shape == (3, 3, H, W) and images.dtype == torch.uint8
    torch.testing.assert_close(
        t["boxes_xyxy"], torch.tensor([[20.0, 10, 40, 30], [0, 0, 0, 0], [8, 4, 24, 16]])
    )
    expected_norm = [
        [20 / 64, 10 / 48, 40 / 64, 30 / 48],
        [0, 0, 0, 0],
        [8 / 64, 4 / 48, 24 / 64, 16 / 48],
    ]
    torch.testing.assert_close(t["boxes_norm_xyxy"], torch.tensor(expected_norm))
    torch.testing.assert_close(t["has_plate"], torch.tensor([1.0, 0.0, 1.0]))
    assert t["index"].dtype == torch.int64 and t["index"].tolist() == [7, 2, 0]
    assert [len(b) for b in t["all_boxes_xyxy"]] == [2, 0, 1]

    images, t = collate_batch([None], canvas=(W, H))
    assert images.shape == (0, 3, H, W) and t["boxes_xyxy"].shape == (0, 4)


def test_plate_dataset_is_manifest_ordered(dataset):
    ds = PlateDataset(dataset, ["val", "train"])
    assert len(ds) == 3 + N and ds.canvas == (W, H)
    _, target = ds[4]  # val has 3 images, so this is train image 1
    np.testing.assert_allclose(target["boxes_xyxy"].numpy(), [plate_box(1)])
    assert target["index"] == 4
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_augmented_loader_differs_by_worker_and_epoch(tmp_path):
    # Every image identical: two workers with the same augmentation seed would agree.
    ds = make_dataset(tmp_path / "same", n=8, negatives=())
    for p in sorted((ds / "images").glob("*.jpg"))[1:]:
        p.write_bytes((ds / "images/000.jpg").read_bytes())
    cfg = AugmentConfig(flip_p=0.5, affine_p=1.0, perspective_p=0.0, **NO_PHOTO)
    loader = build_loader(ds, "train", batch_size=2, workers=2, augment=cfg, shuffle=True, seed=0)
    stream = loader.dataset

    def epoch_images(e):
        stream.set_epoch(e)
        return torch.cat([images for images, _ in loader])

    e0, e1 = epoch_images(0), epoch_images(1)
    assert e0.shape == (8, 3, H, W)
    assert not torch.equal(e0[0], e0[2]), "workers 0 and 1 drew the same augmentation"
    assert not torch.equal(e0, e1), "persistent workers did not see the new epoch"
    stream.set_epoch(0)
    assert torch.equal(torch.cat([images for images, _ in loader]), e0), "not reproducible"


def test_mosaic_stream_puts_four_images_plates_in_one_sample(tmp_path):
    ds = make_dataset(tmp_path / "m", n=8, negatives=())
    cfg = AugmentConfig(mosaic_p=1.0, flip_p=0.0, affine_p=0.0, perspective_p=0.0, **NO_PHOTO)
    stream = PlateStream(ds, "train", cfg, seed=0)
    samples = list(stream)
    assert len(samples) == 8  # an epoch is still one sample per image
    counts = [len(t["boxes_xyxy"]) for _, t in samples]
    assert max(counts) > 1, counts  # four tiles' plates, the cut ones dropped
    for image, t in samples:
        b = t["boxes_xyxy"]
        assert ((b[:, 0] >= 0) & (b[:, 2] <= W) & (b[:, 1] >= 0) & (b[:, 3] <= H)).all()
        # every box lies on red plate pixels (BGR red written, RGB read)
        for x0, y0, x1, y1 in b.round().int().tolist():
            patch = image[:, y0:y1, x0:x1].float()
            assert (patch[0] > patch[2] + 60).float().mean() > 0.5
    again = [t["boxes_xyxy"] for _, t in PlateStream(ds, "train", cfg, seed=0)]
    assert all(torch.equal(a, t["boxes_xyxy"]) for a, (_, t) in zip(again, samples, strict=True))

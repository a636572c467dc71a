"""Plate tracks across video frames, and one text per track voted from its frames.

::

    tracker = PlateTracker()
    for frame, result in enumerate(results):          # ReadResult of each frame, in order
        tracker.update(frame, result.plates)          # sets each plate's track_id
    write_tracks(out / "tracks.jsonl", tracker.summaries())

:class:`PlateTracker` follows ByteTrack (Zhang et al., 2022): every track carries a
constant-velocity Kalman filter on its box centre and size (the ``x, y, w, h`` form of
BoT-SORT), which predicts where the plate is in the next frame; detections are matched to
those predicted boxes by IoU with the Hungarian algorithm
(:func:`scipy.optimize.linear_sum_assignment`), high-score detections first, then the
low-score ones to the tracks still unmatched (a plate half hidden behind another keeps its
track although the detector doubts it). An unmatched high-score detection starts a track; a
track unseen for more than ``max_age`` frames ends, and a plate seen again after that gets a
new id. The motion model is what keeps two plates that cross each other apart: the
predicted box of each stays on its own side of the crossing.

The text vote (:func:`vote_text`): each reading of a track votes for its text with the
weight ``text_score x det_score`` (``text_score`` alone with ``det_weight=False``); empty
texts and zero weights do not vote. The winner is built per character position: the text
length with the most weight wins, then each position takes the character with the most
weight among the readings of that length. This recovers ``AB1234`` from frames that read
``AB1Z34``, ``A81234`` and ``AB12J4``, where a whole-string vote would pick one of the
wrong ones; when one reading dominates it is simply that reading. Its ``text_score`` is the
share of all the track's vote weight that agrees with the winner's least-agreed character
(for a winner most frames read whole: its share of the vote). ``char_vote=False`` makes it a
whole-string vote (the text with the most weight, and its share). Ties go to the text, length
or character seen first.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torchvision.ops import box_iou

from platelab.atomic import atomic_open
from platelab.errors import PlatelabError
from platelab.infer.reader import PlateReading

log = logging.getLogger(__name__)

TRACKS = "tracks.jsonl"


class BoxKalman:
    """A constant-velocity Kalman filter on a box's ``(cx, cy, w, h)`` and their velocities.

    Noise scales with the box size (DeepSORT's rule: position noise 1/20 and velocity
    noise 1/160 of the width or height), so a plate 40 and one 400 pixels wide are
    tracked alike.

    Args:
        box_xyxy: the first detected box, in pixels.
    """

    POS, VEL = 1 / 20, 1 / 160

    def __init__(self, box_xyxy: Sequence[float]) -> None:
        z = _cxcywh(box_xyxy)
        size = np.r_[z[2:], z[2:]]
        self.mean = np.r_[z, np.zeros(4)]
        self.cov = np.diag(np.r_[2 * self.POS * size, 10 * self.VEL * size] ** 2)

    def predict(self, dt: float = 1.0) -> None:
        """Move the state ``dt`` frames ahead."""
        f = np.eye(8)
        f[:4, 4:] = dt * np.eye(4)
        size = np.r_[self.mean[2:4], self.mean[2:4]]
        q = np.diag(np.r_[self.POS * size, self.VEL * size] ** 2) * dt
        self.mean = f @ self.mean
        self.cov = f @ self.cov @ f.T + q

    def update(self, box_xyxy: Sequence[float]) -> None:
        """Correct the state with a detected box."""
        z = _cxcywh(box_xyxy)
        size = np.r_[self.mean[2:4], self.mean[2:4]]
        s = self.cov[:4, :4] + np.diag((self.POS * size) ** 2)  # H = [I 0], so H P H^T = P[:4, :4]
        gain = np.linalg.solve(s, self.cov[:4, :]).T  # P H^T S^-1 (S and P symmetric)
        self.mean = self.mean + gain @ (z - self.mean[:4])
        self.cov = self.cov - gain @ self.cov[:4, :]

    def box_xyxy(self) -> np.ndarray:
        """The current box, at least one pixel wide and high."""
        cx, cy, w, h = self.mean[:4]
        w, h = max(w, 1.0), max(h, 1.0)
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def _cxcywh(box_xyxy: Sequence[float]) -> np.ndarray:
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0])


@dataclass
class _Track:
    """One plate's track; ``track_id`` stays None until it has ``min_hits`` detections."""

    kf: BoxKalman
    first_frame: int
    last_frame: int
    track_id: int | None = None
    hits: int = 0
    votes: dict[str, float] = field(default_factory=dict)
    best: dict[str, tuple[float, int, tuple[float, ...]]] = field(default_factory=dict)
    best_det: tuple[float, int, tuple[float, ...]] = (-1.0, -1, ())

    def record(self, frame: int, plate: PlateReading, weight: float) -> None:
        """Count a detection and its text vote; keep each text's best reading."""
        self.hits += 1
        self.last_frame = frame
        box = tuple(float(v) for v in plate.box_xyxy)
        if weight > 0 and plate.text:
            self.votes[plate.text] = self.votes.get(plate.text, 0.0) + weight
            if weight > self.best.get(plate.text, (-1.0,))[0]:
                self.best[plate.text] = (weight, frame, box)
        if plate.det_score > self.best_det[0]:
            self.best_det = (float(plate.det_score), frame, box)


class PlateTracker:
    """Give each plate of a video a track id and vote one text per track (ByteTrack-style).

    Call :meth:`update` once per frame, in frame order, with every plate read in it.

    Args:
        iou_threshold: the IoU between a track's predicted box and a detection at or
            above which they may be matched.
        max_age: frames a track may go unseen and still be matched; a plate missed for
            longer starts a new track.
        min_hits: detections a new track needs before it gets an id (1: at once). A track
            still short of it ends at its first missed frame; its plates keep
            ``track_id=None``.
        high_score: the ``det_score`` at or above which a detection is matched first and
            may start a track.
        low_score: the ``det_score`` below which a detection is ignored; between the two
            it only continues a track the high-score detections left unmatched.
        det_weight: weigh a reading's text vote by ``text_score x det_score`` (False:
            ``text_score`` alone).
        char_vote: vote the text per character position (see :func:`vote_text`).

    Raises:
        PlatelabError: settings out of range.
    """

    def __init__(
        self,
        iou_threshold: float = 0.2,
        max_age: int = 30,
        min_hits: int = 1,
        high_score: float = 0.5,
        low_score: float = 0.1,
        det_weight: bool = True,
        char_vote: bool = True,
    ) -> None:
        if not 0 < iou_threshold <= 1 or max_age < 0 or min_hits < 1 or low_score > high_score:
            raise PlatelabError(
                f"tracker settings out of range: iou_threshold={iou_threshold} (0, 1], "
                f"max_age={max_age} >= 0, min_hits={min_hits} >= 1, "
                f"low_score={low_score} <= high_score={high_score}"
            )
        self.iou_threshold = iou_threshold
        self.max_age = max_age
        self.min_hits = min_hits
        self.high_score = high_score
        self.low_score = low_score
        self.det_weight = det_weight
        self.char_vote = char_vote
        self._tracks: list[_Track] = []  # alive, confirmed or not
        self._ended: list[_Track] = []  # confirmed tracks past max_age
        self._frame: int | None = None
        self._next_id = 1

    def update(self, frame: int, plates: list[PlateReading]) -> list[PlateReading]:
        """Match one frame's plates to the tracks; set their ``track_id`` in place.

        Args:
            frame: the frame's index; it must grow from call to call (gaps are allowed:
                the motion model steps over them and ``max_age`` counts them).
            plates: every plate read in the frame, boxes in frame pixels.

        Returns:
            ``plates``, each with its track id, or None for a plate below ``low_score``,
            unmatched below ``high_score``, or on a track not yet confirmed.

        Raises:
            ValueError: a frame index not above the previous one.
        """
        if self._frame is not None and frame <= self._frame:
            raise ValueError(f"frame {frame} after frame {self._frame}: frames must increase")
        dt = 1 if self._frame is None else frame - self._frame
        alive = []
        for t in self._tracks:
            if frame - t.last_frame - 1 > self.max_age:
                self._end(t)
                continue
            if t.last_frame != self._frame:
                t.kf.mean[6:] = 0.0  # a lost plate's size is held, not extrapolated
            t.kf.predict(dt)
            alive.append(t)
        self._frame = frame

        for p in plates:
            p.track_id = None
        high = [i for i, p in enumerate(plates) if p.det_score >= self.high_score]
        low = [i for i, p in enumerate(plates) if self.low_score <= p.det_score < self.high_score]
        first = self._match(alive, plates, high)
        hit = {a for a, _ in first}
        left = [t for k, t in enumerate(alive) if k not in hit]
        second = self._match(left, plates, low)
        matched = set()
        for tracks, pairs in ((alive, first), (left, second)):
            for a, d in pairs:
                tracks[a].kf.update(plates[d].box_xyxy)
                self._record(tracks[a], frame, plates[d])
                matched.add(id(tracks[a]))

        # An unconfirmed track ends at its first miss; a confirmed one waits max_age frames.
        keep = [t for t in alive if id(t) in matched or t.track_id is not None]
        taken = {d for _, d in first}
        for d in high:
            if d not in taken:
                t = _Track(BoxKalman(plates[d].box_xyxy), first_frame=frame, last_frame=frame)
                self._record(t, frame, plates[d])
                keep.append(t)
        self._tracks = keep
        return plates

    def summaries(self) -> list[dict[str, Any]]:
        """One dict per confirmed track (ended or alive), by track id, in plain JSON types.

        Keys: ``track_id``; ``first_frame``, ``last_frame`` and ``frames`` (the number of
        frames it was detected in, those before its confirmation included); ``text`` and
        ``text_score`` (see :func:`vote_text`); ``votes`` (``{text: weight}``, heaviest
        first); ``best_frame`` and ``best_box_xyxy``: the frame where the winning text was
        read with the most weight, or where the plate had its highest ``det_score`` when
        no frame read the winner whole.
        """
        tracks = self._ended + [t for t in self._tracks if t.track_id is not None]
        return [self._summary(t) for t in sorted(tracks, key=lambda t: t.track_id)]

    # -- internals -------------------------------------------------------------------------
    def _match(
        self, tracks: list[_Track], plates: list[PlateReading], dets: list[int]
    ) -> list[tuple[int, int]]:
        """Hungarian matching on IoU: ``(index in tracks, index in plates)`` pairs."""
        if not tracks or not dets:
            return []
        pred = torch.from_numpy(np.stack([t.kf.box_xyxy() for t in tracks]))
        boxes = torch.tensor([plates[d].box_xyxy for d in dets], dtype=torch.float64)
        iou = box_iou(pred, boxes).numpy()
        # A pair below the threshold costs more than any set of valid pairs, so the
        # assignment first maximises the number of valid pairs, then their IoU.
        cost = np.where(iou >= self.iou_threshold, 1.0 - iou, 1e6)
        rows, cols = linear_sum_assignment(cost)
        ok = iou[rows, cols] >= self.iou_threshold
        return [(int(r), dets[c]) for r, c in zip(rows[ok], cols[ok], strict=True)]

    def _record(self, t: _Track, frame: int, plate: PlateReading) -> None:
        weight = float(plate.text_score) * (float(plate.det_score) if self.det_weight else 1.0)
        t.record(frame, plate, weight)
        if t.track_id is None and t.hits >= self.min_hits:
            t.track_id = self._next_id
            self._next_id += 1
        plate.track_id = t.track_id

    def _end(self, t: _Track) -> None:
        if t.track_id is not None:
            self._ended.append(t)

    def _summary(self, t: _Track) -> dict[str, Any]:
        text, score = vote_text(t.votes, char_vote=self.char_vote)
        _, best_frame, box = t.best.get(text, t.best_det)
        return {
            "track_id": t.track_id,
            "first_frame": t.first_frame,
            "last_frame": t.last_frame,
            "frames": t.hits,
            "text": text,
            "text_score": round(score, 4),
            "votes": {k: round(w, 4) for k, w in sorted(t.votes.items(), key=lambda kv: -kv[1])},
            "best_frame": best_frame,
            "best_box_xyxy": [round(v, 2) for v in box],
        }


def vote_text(votes: Mapping[str, float], char_vote: bool = True) -> tuple[str, float]:
    """The text a track's weighted readings agree on, and how much of the vote agrees.

    Args:
        votes: ``{text: total weight}`` of the readings (non-empty texts).
        char_vote: True: the heaviest length wins, then each position the heaviest
            character among the texts of that length; the score is the share of the total
            weight behind the winner's least-agreed character. False: the heaviest text
            and its share of the total weight.

    Returns:
        ``(text, score)`` with ``score`` in ``[0, 1]``; ``("", 0.0)`` with no weight.
    """
    votes = {t: w for t, w in votes.items() if t and w > 0}
    total = sum(votes.values())
    if not votes:
        return "", 0.0
    if not char_vote:
        text = max(votes, key=votes.__getitem__)  # max keeps the first of equals
        return text, votes[text] / total
    by_length: dict[int, float] = defaultdict(float)
    for t, w in votes.items():
        by_length[len(t)] += w
    n = max(by_length, key=by_length.__getitem__)
    chars, shares = [], []
    for i in range(n):
        column: dict[str, float] = defaultdict(float)
        for t, w in votes.items():
            if len(t) == n:
                column[t[i]] += w
        c = max(column, key=column.__getitem__)
        chars.append(c)
        shares.append(column[c] / total)
    return "".join(chars), min(shares)


def write_tracks(path: Path | str, summaries: list[dict[str, Any]]) -> Path:
    """Write ``summaries`` (from :meth:`PlateTracker.summaries`) as JSON lines, atomically.

    Returns:
        The path written.
    """
    path = Path(path)
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as f:
        for s in summaries:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")
    log.info("wrote %d tracks to %s", len(summaries), path)
    return path

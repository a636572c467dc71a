"""PlateTracker: two plates crossing keep their ids, max_age, min_hits, the two score
passes, the text vote on hand-computed cases, and a rendered video read by an oracle."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from platelab.data.synth.plates import render_plate
from platelab.errors import PlatelabError
from platelab.infer.reader import PlateReading
from platelab.infer.tracking import TRACKS, BoxKalman, PlateTracker, vote_text, write_tracks

ALNUM = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"


def reading(box_xyxy, text: str = "", text_score: float = 0.9, det: float = 0.9) -> PlateReading:
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    corners = ((x0, y0), (x1, y0), (x1, y1), (x0, y1))
    return PlateReading((x0, y0, x1, y1), corners, det, text, text_score if text else 0.0)


def noisy_reading(rng, box_xyxy, text: str, jitter: float = 1.5, p_wrong: float = 0.3):
    """What a reader might say of a plate: a jittered box; 30% of the time a wrong or
    empty text with a low score, else the right text with a good one."""
    box = np.asarray(box_xyxy, np.float64) + rng.normal(0, jitter, 4)
    if rng.random() < p_wrong:
        if rng.random() < 0.3:
            return reading(box, "", det=float(rng.uniform(0.5, 1.0)))
        chars = list(text)
        for i in rng.choice(len(chars), size=int(rng.integers(1, 3)), replace=False):
            chars[i] = ALNUM[int(rng.integers(len(ALNUM)))]
        if rng.random() < 0.3:
            chars = chars[:-1]  # a character dropped
        wrong = "".join(chars)
        return reading(box, wrong, float(rng.uniform(0.05, 0.4)), float(rng.uniform(0.5, 1.0)))
    return reading(box, text, float(rng.uniform(0.6, 0.95)), float(rng.uniform(0.6, 1.0)))


def crossing_boxes(frame: int, n: int, width: float, speed: float, dy: float):
    """Plate A goes left to right, plate B right to left ``dy`` lower; they meet at n/2."""
    span = speed * (n - 1)
    xa, xb = 10 + speed * frame, 10 + span - speed * frame
    a = (xa, 100.0, xa + width, 120.0)
    b = (xb, 100.0 + dy, xb + width, 120.0 + dy)
    return a, b


# 16 px a frame on 60x20 px plates 4 px apart in height: where they meet, the box B moves
# into is nearer A's last box than A's own next box is, so matching on the last boxes alone
# would swap them (test_crossing_needs_the_motion_model).
CROSSING = {"width": 60, "speed": 16, "dy": 4}


# -- the motion model --------------------------------------------------------------------------
def test_kalman_learns_a_constant_velocity():
    kf = BoxKalman((0, 0, 40, 20))
    for t in range(1, 15):
        kf.predict()
        kf.update((8 * t, 0, 8 * t + 40, 20))
    kf.predict()
    np.testing.assert_allclose(kf.box_xyxy(), (8 * 15, 0, 8 * 15 + 40, 20), atol=1.0)


# -- 1. crossing plates ------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_crossing_plates_keep_their_ids_and_texts(seed):
    rng = np.random.default_rng(seed)
    n, texts = 40, ("KA05MX1234", "DL8CAF5031")
    tracker = PlateTracker()
    ids: dict[str, set] = {"A": set(), "B": set()}
    for frame in range(n):
        box_a, box_b = crossing_boxes(frame, n, **CROSSING)
        a, b = noisy_reading(rng, box_a, texts[0]), noisy_reading(rng, box_b, texts[1])
        if abs(frame - n / 2) < 3:
            a.det_score = 0.3  # half hidden behind B: only the low-score pass can take it
        tracker.update(frame, [b, a] if rng.random() < 0.5 else [a, b])
        ids["A"].add(a.track_id)
        ids["B"].add(b.track_id)
    assert len(ids["A"]) == len(ids["B"]) == 1 and ids["A"] != ids["B"]
    summaries = {s["track_id"]: s for s in tracker.summaries()}
    assert len(summaries) == 2
    for key, text in zip("AB", texts, strict=True):
        s = summaries[ids[key].pop()]
        assert (s["text"], s["first_frame"], s["last_frame"], s["frames"]) == (text, 0, n - 1, n)
        assert 0.5 < s["text_score"] <= 1.0
        assert max(s["votes"], key=s["votes"].get) == text


def test_crossing_needs_the_motion_model():
    """Without velocity (boxes matched where they were last seen) the ids swap: the test
    above does exercise the motion model."""
    n, tracker = 40, PlateTracker()
    for t in range(n):
        box_a, box_b = crossing_boxes(t, n, **CROSSING)
        a, b = reading(box_a, "A"), reading(box_b, "B")
        for track in tracker._tracks:
            track.kf.mean[4:] = 0.0
        tracker.update(t, [a, b])
        if t == 0:
            first = (a.track_id, b.track_id)
    assert (a.track_id, b.track_id) != first


# -- 2. track life -----------------------------------------------------------------------------
@pytest.mark.parametrize("speed", [0.0, 3.0])
def test_missed_frames_up_to_max_age_keep_the_id_beyond_it_a_new_one(speed):
    tracker = PlateTracker(max_age=5)

    def box(t):
        return (50 + speed * t, 50, 110 + speed * t, 70)

    seen = [*range(0, 10), 15, 16, 23, 24]  # 10..14 missed (5 frames), 17..22 missed (6)
    got = {}
    for t in range(25):
        plates = [reading(box(t), "AB123")] if t in seen else []
        tracker.update(t, plates)
        if plates:
            got[t] = plates[0].track_id
    assert {got[t] for t in range(10)} == {1}
    assert got[15] == got[16] == 1
    assert got[23] == got[24] == 2
    spans = [(s["track_id"], s["first_frame"], s["last_frame"]) for s in tracker.summaries()]
    assert spans == [(1, 0, 16), (2, 23, 24)]


def test_frame_gaps_count_towards_max_age():
    tracker = PlateTracker(max_age=5)
    for t in (0, 3, 6, 12):  # a stride of 3, then a gap of 5 unseen frames (7..11)
        (plate,) = tracker.update(t, [reading((10, 10, 70, 30), "X")])
        assert plate.track_id == 1
    (plate,) = tracker.update(19, [reading((10, 10, 70, 30), "X")])  # 13..18: 6 unseen
    assert plate.track_id == 2
    with pytest.raises(ValueError, match="frames must increase"):
        tracker.update(19, [])


def test_min_hits_confirms_late_and_drops_one_frame_tracks():
    tracker = PlateTracker(min_hits=3)
    got = []
    for t in range(5):
        plates = [reading((10 + t, 10, 70 + t, 30), "AB123")]
        if t == 1:
            plates.append(reading((200, 200, 260, 220), "FALSE"))  # a one-frame false positive
        tracker.update(t, plates)
        got.append(plates[0].track_id)
        if t == 1:
            assert plates[1].track_id is None
    assert got == [None, None, 1, 1, 1]
    (s,) = tracker.summaries()
    assert (s["track_id"], s["first_frame"], s["frames"]) == (1, 0, 5)  # early frames count


def test_low_scores_continue_tracks_but_never_start_one():
    tracker = PlateTracker(high_score=0.5, low_score=0.1)
    tracker.update(0, [reading((10, 10, 70, 30), det=0.9)])
    plates = [
        reading((11, 10, 71, 30), det=0.3),  # continues track 1
        reading((200, 10, 260, 30), det=0.3),  # unmatched, too weak to start a track
        reading((11, 60, 71, 80), det=0.05),  # below low_score: ignored
    ]
    tracker.update(1, plates)
    assert [p.track_id for p in plates] == [1, None, None]
    assert [s["track_id"] for s in tracker.summaries()] == [1]


def test_settings_out_of_range_are_refused():
    with pytest.raises(PlatelabError, match="min_hits"):
        PlateTracker(min_hits=0)
    with pytest.raises(PlatelabError, match="low_score"):
        PlateTracker(high_score=0.3, low_score=0.5)


# -- 3. the vote, by hand ----------------------------------------------------------------------
HAND = [  # (text, text_score, det_score) of one static plate, frame by frame
    ("AB123", 0.9, 0.8),  # 0.72
    ("AB128", 0.5, 1.0),  # 0.50
    ("A8123", 0.6, 0.5),  # 0.30
    ("", 0.0, 0.95),  # no vote
    ("AB12", 0.9, 1.0),  # 0.90
    ("AB123", 0.4, 0.5),  # 0.20
]


def run_hand_case(**kw):
    tracker = PlateTracker(**kw)
    for t, (text, ts, det) in enumerate(HAND):
        tracker.update(t, [reading((10 + t, 10, 70 + t, 30), text, ts, det)])
    return tracker.summaries()


def test_vote_by_hand_char_vote():
    (s,) = run_hand_case()
    # total 2.62; length 5 holds 1.72, length 4 0.9. Positions of the 5-long texts:
    # A 1.72 | B 1.42, 8 0.30 | 1 1.72 | 2 1.72 | 3 1.22, 8 0.50 -> "AB123", 1.22 / 2.62
    assert s["text"] == "AB123"
    assert s["text_score"] == round(1.22 / 2.62, 4)
    assert s["votes"] == {"AB123": 0.92, "AB12": 0.9, "AB128": 0.5, "A8123": 0.3}
    assert (s["frames"], s["best_frame"], s["best_box_xyxy"]) == (6, 0, [10, 10, 70, 30])


def test_vote_by_hand_whole_string_and_text_score_only():
    (s,) = run_hand_case(char_vote=False)
    assert (s["text"], s["text_score"]) == ("AB123", round(0.92 / 2.62, 4))
    # text_score alone: AB123 0.9 + 0.4 = 1.3, AB12 0.9, A8123 0.6, AB128 0.5; total 3.3
    (s,) = run_hand_case(char_vote=False, det_weight=False)
    assert s["votes"] == {"AB123": 1.3, "AB12": 0.9, "A8123": 0.6, "AB128": 0.5}
    assert (s["text"], s["text_score"]) == ("AB123", round(1.3 / 3.3, 4))


def test_char_vote_recovers_a_text_no_frame_read_whole():
    votes = {"AB1Z34": 0.5, "A81234": 0.4, "AB12J4": 0.45, "": 3.0}
    # positions: B 0.95 vs 8 0.4 | 2 0.85 vs Z 0.5 | 3 0.9 vs J 0.45; total 1.35
    text, score = vote_text(votes)
    assert text == "AB1234" and score == pytest.approx(0.85 / 1.35)
    assert vote_text(votes, char_vote=False) == ("AB1Z34", pytest.approx(0.5 / 1.35))


@pytest.mark.parametrize(
    "votes, expected",
    [
        ({}, ("", 0.0)),
        ({"": 1.0, "AB": 0.0}, ("", 0.0)),
        ({"AB": 1.0}, ("AB", 1.0)),
        ({"AB": 1.0, "CD": 1.0}, ("AB", 0.5)),  # a tie goes to the text seen first
        ({"XY": 1.0, "ABC": 0.6, "ABD": 0.6}, ("ABC", 0.6 / 2.2)),  # length 3 holds 1.2
    ],
)
def test_vote_table(votes, expected):
    text, score = vote_text(votes)
    assert (text, score) == (expected[0], pytest.approx(expected[1]))


def test_a_track_without_text():
    tracker = PlateTracker()
    for t, det in enumerate((0.6, 0.9, 0.7)):
        tracker.update(t, [reading((10, 10, 70, 30), "", det=det)])
    (s,) = tracker.summaries()
    assert (s["text"], s["text_score"], s["votes"], s["best_frame"]) == ("", 0.0, {}, 1)


def test_write_tracks_is_plain_json(tmp_path):
    summaries = run_hand_case()
    path = write_tracks(tmp_path / "out" / TRACKS, summaries)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == summaries
    assert [p.name for p in path.parent.iterdir()] == [TRACKS]  # no temp file left


# -- 4. a rendered video, read back, with an oracle reader -------------------------------------
def paste(frame_rgb: np.ndarray, plate, x: int, y: int) -> None:
    h, w = plate.alpha.shape
    a = plate.alpha[..., None].astype(np.float32) / 255
    region = frame_rgb[y : y + h, x : x + w].astype(np.float32)
    frame_rgb[y : y + h, x : x + w] = (a * plate.rgb + (1 - a) * region).astype(np.uint8)


def test_video_of_two_crossing_plates(tmp_path):
    rng = np.random.default_rng(7)
    plates = [render_plate("eu", rng, 72), render_plate("us", rng, 72)]
    texts = [p.text for p in plates]
    n, (W, H), bg = 30, (320, 240), (90, 110, 100)
    span = W - 72 - 20
    starts = [(10, 100), (10 + span, 100 + plates[0].rgb.shape[0] // 2)]  # B lower: overlap

    def position(k: int, t: int) -> tuple[int, int]:
        x0, y0 = starts[k]
        dx = round(span * t / (n - 1))
        return (x0 + dx if k == 0 else x0 - dx), y0

    path = tmp_path / "crossing.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 15, (W, H))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write mp4v")
    for t in range(n):
        img = np.full((H, W, 3), bg, np.uint8)
        for k in (0, 1):  # B drawn last: B hides A where they cross
            paste(img, plates[k], *position(k, t))
        writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    writer.release()

    cap = cv2.VideoCapture(str(path))
    tracker, got, t = PlateTracker(), {0: set(), 1: set()}, 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        assert bgr.shape == (H, W, 3)
        readings = []
        for k in (0, 1):
            x, y = position(k, t)
            h, w = plates[k].alpha.shape
            box = (x, y, x + w, y + h)
            if k == 1:  # the plate on top is really in the decoded frame where we say
                diff = np.abs(bgr[y : y + h, x : x + w].astype(int) - bg[::-1]).mean()
                assert diff > 20
            readings.append(noisy_reading(rng, box, texts[k], jitter=1.0))
        tracker.update(t, readings)
        for k in (0, 1):
            got[k].add(readings[k].track_id)
        t += 1
    cap.release()
    assert t == n
    assert len(got[0]) == len(got[1]) == 1 and got[0] != got[1]
    by_id = {s["track_id"]: s for s in tracker.summaries()}
    assert len(by_id) == 2
    assert [by_id[got[k].pop()]["text"] for k in (0, 1)] == texts

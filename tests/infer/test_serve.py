"""platelab serve's API: a fake reader whose plate text encodes each image, error cases
table-driven, body limits enforced while reading, concurrency, and a real PlateReader."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
import httpx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from platelab.data.imageio import encode_jpeg  # noqa: E402
from platelab.errors import PlatelabError  # noqa: E402
from platelab.infer.reader import PlateReading, ReadResult  # noqa: E402
from platelab.infer.serve import create_app, run_server, sniff_format  # noqa: E402


class FakeReader:
    """A plate reader without models: one plate over the centre of every image, read as
    ``W{width}``, so a response that went to the wrong request shows.

    Args:
        delay: seconds each ``read_rgb`` call takes.
        gate: an Event each call waits for (after setting ``entered``).

    Attributes:
        calls, max_inside: calls made, and the most threads ever inside at once.
    """

    detector = SimpleNamespace(model_name="fake_detector")
    recognizer = SimpleNamespace(model_name="fake_reader")

    def __init__(self, delay: float = 0.0, gate: threading.Event | None = None) -> None:
        self.delay, self.gate = delay, gate
        self.entered = threading.Event()
        self.calls = self.inside = self.max_inside = 0
        self._count = threading.Lock()

    def read_rgb(self, images: list[np.ndarray]) -> list[ReadResult]:
        with self._count:
            self.calls += 1
            self.inside += 1
            self.max_inside = max(self.max_inside, self.inside)
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10), "the test never opened the gate"
        time.sleep(self.delay)
        out = []
        for image in images:
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
            h, w = image.shape[:2]
            x0, y0, x1, y1 = w / 4, h / 4, 3 * w / 4, 3 * h / 4
            inset = (x1 - x0) / 8  # corners inside the box: the page draws both apart
            corners = ((x0 + inset, y0), (x1 - inset, y0), (x1 - inset, y1), (x0 + inset, y1))
            text = f"W{w}"
            plate = PlateReading((x0, y0, x1, y1), corners, 0.9, text, 0.8, [0.9] * len(text))
            out.append(ReadResult([plate], w, h))
        with self._count:
            self.inside -= 1
        return out


def photo(width: int = 320, height: int = 240, seed: int = 0) -> np.ndarray:
    """A smooth random RGB picture (compresses like a photo)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def jpeg(width: int = 320, height: int = 240, seed: int = 0) -> bytes:
    return encode_jpeg(photo(width, height, seed), quality=90)


def encoded(ext: str, width: int = 40, height: int = 30) -> bytes:
    ok, buf = cv2.imencode(ext, photo(width, height)[:, :, ::-1])
    assert ok
    return buf.tobytes()


def gif() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (4, 4), (255, 0, 0)).save(out, format="GIF")
    return out.getvalue()


@pytest.fixture
def fake() -> FakeReader:
    return FakeReader()


@pytest.fixture
def client(fake):
    with TestClient(create_app(fake)) as c:
        yield c


def post(client, data: bytes, name: str = "car.jpg", mime: str = "image/jpeg"):
    return client.post("/v1/read", files={"file": (name, data, mime)})


def test_reads_a_jpeg_as_a_jsonl_record(client, fake):
    r = post(client, jpeg(320, 240))
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body) == ["source", "frame", "width", "height", "plates"]
    assert body["source"] == "car.jpg" and body["frame"] is None
    assert (body["width"], body["height"]) == (320, 240)
    (plate,) = body["plates"]
    assert plate["text"] == "W320" and plate["box_xyxy"] == [80.0, 60.0, 240.0, 180.0]
    assert set(plate) == {"box_xyxy", "corners", "det_score", "text", "text_score", "char_scores",
                          "track_id"}  # fmt: skip
    assert len(plate["corners"]) == 4 and plate["track_id"] is None
    assert fake.calls == 1


@pytest.mark.parametrize("ext", [".png", ".bmp", ".webp", ".tiff"])
def test_every_served_type_is_read(client, ext):
    data = encoded(ext, 40, 30)
    assert sniff_format(data) is not None
    r = post(client, data, f"a{ext}", "application/octet-stream")
    assert r.status_code == 200, r.text
    assert (r.json()["width"], r.json()["height"], r.json()["plates"][0]["text"]) == (40, 30, "W40")


def test_exif_orientation_is_applied(client):
    """A JPEG stored 40x20 with Orientation 6 is read as the 20x40 image viewers show."""
    from PIL import Image

    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(photo(40, 20)).save(out, format="JPEG", exif=exif.tobytes())
    body = post(client, out.getvalue()).json()
    assert (body["width"], body["height"]) == (20, 40)


def test_a_1x1_image_is_valid(client):
    for data in (jpeg(1, 1), encoded(".png", 1, 1)):
        r = post(client, data)
        assert r.status_code == 200, r.text
        assert (r.json()["width"], r.json()["height"]) == (1, 1)


def multipart(fields: dict[str, tuple[str | None, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body by hand: (body, its Content-Type)."""
    boundary = "platelabBoundary7f3a"
    parts = []
    for field, (name, data) in fields.items():
        disposition = f'form-data; name="{field}"' + (f'; filename="{name}"' if name else "")
        parts.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data)
    body = b"\r\n".join(parts) + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


# (what is sent, status, words the detail must contain)
ERRORS = [
    ("text", 415, "not an image"),
    ("gif", 415, "gif"),
    ("corrupt png", 400, "not an image that decodes"),
    ("truncated jpeg", 400, "not an image that decodes"),
    ("empty file", 400, "empty"),
    ("no body", 400, "no file"),
    ("json body", 400, "multipart/form-data"),
    ("other field", 400, "no file"),
    ("field not a file", 400, "no file"),
    ("no boundary", 400, "not valid multipart/form-data"),
    ("too many pixels", 413, "pixels"),
    ("too many bytes", 413, "limit"),
]


def _send(client, case: str):
    if case == "text":
        return post(client, b"hello, this is a text file\n" * 20, "notes.txt", "text/plain")
    if case == "gif":
        return post(client, gif(), "a.gif", "image/gif")
    if case == "corrupt png":
        return post(client, b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "a.png", "image/png")
    if case == "truncated jpeg":
        return post(client, jpeg()[:20])
    if case == "empty file":
        return post(client, b"")
    if case == "no body":
        return client.post("/v1/read")
    if case == "json body":
        return client.post("/v1/read", json={"file": "car.jpg"})
    if case == "other field":
        return client.post("/v1/read", files={"photo": ("car.jpg", jpeg(), "image/jpeg")})
    if case == "field not a file":
        return client.post("/v1/read", data={"file": "car.jpg"}, files={"x": ("x", b"1")})
    if case == "no boundary":
        return client.post(
            "/v1/read", content=b"--x\r\n", headers={"content-type": "multipart/form-data"}
        )
    if case == "too many pixels":
        return post(client, jpeg(101, 100))  # max_pixels=10_000 below
    if case == "too many bytes":
        return post(client, encoded(".bmp", 100, 40))  # 12 kB over max_bytes=5_000 below
    raise AssertionError(case)


@pytest.mark.parametrize(("case", "status", "words"), ERRORS, ids=[c for c, _, _ in ERRORS])
def test_errors_are_clear_json(fake, case, status, words):
    with TestClient(create_app(fake, max_bytes=5_000, max_pixels=10_000)) as c:
        r = _send(c, case)
        assert r.status_code == status, r.text
        assert r.headers["content-type"] == "application/json"
        assert words in r.json()["detail"].lower()
        assert post(c, jpeg(100, 100)).status_code == 200  # the limit is not one pixel lower
    assert fake.calls == 1  # no error reached the model


def _count_pulled(app, body: bytes, headers: dict[str, str], chunk: int = 1000) -> tuple[int, int]:
    """POST ``body`` in ``chunk``-byte pieces through httpx's ASGI transport, which pulls
    each piece only when the app asks: (status, pieces pulled)."""
    pulled = 0

    async def pieces():
        nonlocal pulled
        for i in range(0, len(body), chunk):
            pulled += 1
            yield body[i : i + chunk]

    async def go() -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            r = await c.post("/v1/read", content=pieces(), headers=headers)
            assert "over the limit of 4.88 KiB (5,000 bytes)" in r.json()["detail"]
            return r.status_code

    return asyncio.run(go()), pulled


def test_an_oversize_body_is_refused_while_reading():
    """No Content-Length (a chunked upload): the body is counted and reading stops at the
    limit; a Content-Length over the limit is refused before any of the body is read."""
    app = create_app(FakeReader(), max_bytes=5_000)
    body, content_type = multipart({"file": ("big.jpg", b"\xff\xd8\xff" + bytes(1_000_000))})
    status, pulled = _count_pulled(app, body, {"content-type": content_type})
    assert status == 413 and pulled <= (5_000 + 64 * 1024) // 1000 + 2  # not the 1,000 pieces
    headers = {"content-type": content_type, "content-length": str(len(body))}
    assert _count_pulled(app, body, headers) == (413, 0)


def test_limits_must_be_positive(fake):
    with pytest.raises(PlatelabError, match="positive"):
        create_app(fake, max_bytes=0)
    with pytest.raises(TypeError, match="read_rgb"):
        create_app(object())


def test_healthz_and_page(client):
    assert client.get("/healthz").json() == {
        "status": "ok",
        "detector": "fake_detector",
        "reader": "fake_reader",
    }
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for needle in ('id="drop"', 'id="file"', 'id="canvas"', 'id="plates"', 'id="status"'):
        assert needle in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no CDN: works offline


def test_a_factory_is_called_once():
    made = []

    def factory() -> FakeReader:
        made.append(FakeReader())
        return made[-1]

    app = create_app(factory)
    assert made == []  # nothing loads before the server starts
    with TestClient(app) as c:
        assert len(made) == 1  # loaded at startup
        assert all(post(c, jpeg(50 + i, 40)).json()["plates"][0]["text"] == f"W{50 + i}"
                   for i in range(3))  # fmt: skip
    lazy = create_app(factory)
    c = TestClient(lazy)  # no lifespan: loaded at the first request
    assert post(c, jpeg()).status_code == 200 and post(c, jpeg()).status_code == 200
    assert len(made) == 2 and made[1].calls == 2


def test_concurrent_requests_get_their_own_answers():
    """8 requests at once on one event loop: each gets its own image's reading, and the
    model is never entered by two threads at once."""
    fake = FakeReader(delay=0.03)
    widths = [64 + 8 * i for i in range(8)]
    results: dict[int, tuple[int, dict]] = {}
    with TestClient(create_app(fake)) as c:

        def one(w: int) -> None:
            r = post(c, jpeg(w, 48, seed=w), f"w{w}.jpg")
            results[w] = (r.status_code, r.json())

        threads = [threading.Thread(target=one, args=(w,)) for w in widths]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert sorted(results) == widths
    for w, (status, body) in results.items():
        assert status == 200
        assert (body["source"], body["width"], body["plates"][0]["text"]) == (
            f"w{w}.jpg",
            w,
            f"W{w}",
        )
    assert fake.calls == 8 and fake.max_inside == 1


def test_the_server_answers_while_the_model_is_busy():
    gate = threading.Event()
    fake = FakeReader(gate=gate)
    with TestClient(create_app(fake)) as c:
        answer: list = []
        t = threading.Thread(target=lambda: answer.append(post(c, jpeg())))
        t.start()
        try:
            assert fake.entered.wait(10)
            assert c.get("/healthz").status_code == 200  # while a read holds the model
            assert answer == []
        finally:
            gate.set()
            t.join(10)
    assert answer[0].status_code == 200


def test_a_reader_failure_is_a_json_500(fake):
    fake.read_rgb = lambda images: 1 / 0
    with TestClient(create_app(fake)) as c:
        r = post(c, jpeg())
    assert r.status_code == 500 and "plate reader failed" in r.json()["detail"]


def test_run_server_refuses_a_port_in_use(fake, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(PlatelabError, match="cannot listen"):
            run_server(fake, "127.0.0.1", taken.getsockname()[1])
    assert capsys.readouterr().out == ""


def test_a_real_plate_reader_plugs_in():
    """Untrained models through the real PlateReader: a well-formed record, any plates."""
    from platelab.infer.predictor import Predictor
    from platelab.infer.reader import PlateReader
    from platelab.models import create_model
    from tests.infer import seeing_detector

    detector = Predictor(seeing_detector("dwsep_tiny", (160, 120)), canvas=(160, 120))
    recogniser = Predictor(create_model("crnn", width=8, hidden=16))
    reader = PlateReader(detector=detector, reader=recogniser)
    with TestClient(create_app(reader)) as c:
        assert c.get("/healthz").json()["detector"] == detector.model_name
        for w, h in ((320, 240), (1, 1)):
            r = post(c, jpeg(w, h))
            assert r.status_code == 200, r.text
            body = r.json()
            assert (body["width"], body["height"]) == (w, h)
            for p in body["plates"]:
                assert len(p["box_xyxy"]) == 4 and len(p["corners"]) == 4
                assert isinstance(p["text"], str) and 0 <= p["text_score"] <= 1

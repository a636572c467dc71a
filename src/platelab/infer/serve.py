"""``platelab serve``: the plate reader as an HTTP service, with a web page to try it.

::

    from platelab.infer.serve import create_app, run_server
    run_server(PlateReader(), host="127.0.0.1", port=8000)   # prints the page's URL

Endpoints:

* ``POST /v1/read``: a ``multipart/form-data`` upload, the image in the field ``file``
  (JPEG, PNG, BMP, WebP or TIFF; EXIF orientation applied, as everywhere in platelab).
  Returns the image's ``predictions.jsonl`` line (:mod:`platelab.infer.predict`)::

      {"source": "car.jpg", "frame": null, "width": 800, "height": 600,
       "plates": [{"box_xyxy", "corners", "det_score", "text", "text_score",
                   "char_scores", "track_id"}, ...]}

  Errors are JSON ``{"detail": "..."}``: 400 no ``file`` field, an empty file, a body
  that is not multipart, or bytes that do not decode; 413 an upload over ``max_bytes``
  (refused from its ``Content-Length`` before reading, and counted while reading a body
  that has none) or an image of more than ``max_pixels`` pixels (read from its header,
  before decoding); 415 bytes that are no image, or one of another type (GIF, ...).
* ``GET /healthz``: ``{"status": "ok", "detector": name, "reader": name}``.
* ``GET /``: the page (``static/index.html``): drop a photo, see its plates drawn.

Concurrency: requests are served concurrently on the event loop; decoding and reading
run in worker threads, at most :data:`JOBS` images at once (each holds its decoded
pixels), and the models (torch or onnxruntime, not promised to be thread-safe) are
called by one thread at a time under a lock.
"""

from __future__ import annotations

import io
import logging
import socket
import threading
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Receive

from platelab.data.imageio import decode_image
from platelab.errors import PlatelabError, reason

log = logging.getLogger(__name__)

FIELD = "file"
JOBS = 2  # images decoding or being read at once: one decodes while another is read
FRAMING = 64 * 1024  # multipart boundaries and part headers allowed beside the file
FORMATS = ("JPEG", "PNG", "BMP", "WebP", "TIFF")
ACCEPTED = ", ".join(FORMATS[:-1]) + " or " + FORMATS[-1]


def sniff_format(data: bytes) -> str | None:
    """The image type of encoded bytes from their magic number: one of :data:`FORMATS`,
    or None for anything else (another image type, or not an image)."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:2] == b"BM":
        return "BMP"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    return None


def _other_type(data: bytes) -> str | None:
    """The name Pillow gives an image type platelab does not serve (GIF, ...), or None."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.format
    except Exception:
        return None


def decode_upload(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """Check and decode an uploaded image to ``(H, W, 3)`` uint8 RGB, EXIF orientation applied.

    Raises:
        HTTPException: 415 not an image or not a served type, 413 more than
            ``max_pixels`` pixels, 400 an image that does not decode.
    """
    fmt = sniff_format(data)
    if fmt is None:
        other = _other_type(data)
        if other is None:
            raise HTTPException(415, f"{name} is not an image: send a {ACCEPTED} file")
        raise HTTPException(415, f"{name} is a {other} image; send a {ACCEPTED} file")
    too_many = f"{name} has more than {max_pixels:,} pixels"
    try:
        with Image.open(io.BytesIO(data), formats=[fmt.upper()]) as im:  # the header only
            width, height = im.size
    except Image.DecompressionBombError:  # over Pillow's own limit, ~179 MP
        raise HTTPException(413, too_many) from None
    except Exception:  # Pillow's message names a BytesIO object: say it plainly
        detail = f"{name} is not an image that decodes (a broken or truncated {fmt} file)"
        raise HTTPException(400, detail) from None
    if width * height > max_pixels:
        raise HTTPException(413, f"{too_many} ({width}x{height})")
    try:
        return decode_image(data)
    except Exception as e:  # decode_image's ValueError, or a decoder's own error
        raise HTTPException(400, f"{name} is not an image that decodes ({reason(e)})") from None


class _Model:
    """The reader, loaded once, called by one thread at a time."""

    def __init__(self, reader: Any) -> None:
        if hasattr(reader, "read_rgb"):
            self._reader, self._factory = reader, None
        elif callable(reader):
            self._reader, self._factory = None, reader
        else:
            raise TypeError(
                f"reader must have read_rgb() or be a function returning such an object, "
                f"got {type(reader).__name__}"
            )
        self._load_lock = threading.Lock()
        self._call_lock = threading.Lock()
        self._jobs = threading.BoundedSemaphore(JOBS)

    @property
    def loaded(self) -> bool:
        return self._reader is not None

    def get(self) -> Any:
        if self._reader is None:
            with self._load_lock:
                if self._reader is None:
                    assert self._factory is not None
                    self._reader = self._factory()
        return self._reader

    def names(self) -> dict[str, str | None]:
        reader = self.get()
        return {
            "detector": getattr(getattr(reader, "detector", None), "model_name", None),
            "reader": getattr(getattr(reader, "recognizer", None), "model_name", None),
        }

    def read(self, data: bytes, name: str, max_pixels: int) -> dict[str, Any]:
        """Decode ``data`` and read its plates: the ``to_dict()`` of its ReadResult."""
        with self._jobs:  # bounds the decoded images held at once
            image = decode_upload(data, name, max_pixels)
            reader = self.get()
            with self._call_lock:
                try:
                    (result,) = reader.read_rgb([image])
                    return result.to_dict()
                except Exception as e:
                    log.exception("the plate reader failed on %s", name)
                    raise HTTPException(500, f"the plate reader failed ({reason(e)})") from None


def _limited(receive: Receive, limit: int, max_bytes: int) -> Receive:
    """``receive`` that raises 413 once the body passes ``limit`` bytes."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413, _too_large(max_bytes))
        return message

    return wrapped


def _too_large(max_bytes: int) -> str:
    shown = f"{max_bytes:,} bytes"
    for unit, size in (("MiB", 2**20), ("KiB", 2**10)):
        if max_bytes >= size:
            shown = f"{max_bytes / size:.3g} {unit} ({shown})"
            break
    return f"the upload is over the limit of {shown}"


async def _upload(request: Request, max_bytes: int) -> tuple[bytes, str | None]:
    """The bytes and file name of the ``file`` field, read at most ``max_bytes`` (plus
    multipart framing) from the body."""
    limit = max_bytes + FRAMING
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise HTTPException(413, _too_large(max_bytes))
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        got = f" (got Content-Type: {content_type})" if content_type else ""
        raise HTTPException(
            400, f"no file: send the image as the multipart/form-data field '{FIELD}'{got}"
        )
    body = Request(request.scope, receive=_limited(request.receive, limit, max_bytes))
    try:
        form = await body.form(max_files=1, max_fields=16, max_part_size=FRAMING)
    except StarletteHTTPException as e:  # starlette's word on a malformed body
        if e.status_code != 400:
            raise
        detail = f"the body is not valid multipart/form-data ({e.detail})"
        raise HTTPException(400, detail) from None
    try:
        upload = form.get(FIELD)
        if upload is None or isinstance(upload, str):
            raise HTTPException(400, f"no file: the form has no file field '{FIELD}'")
        data = await upload.read(max_bytes + 1)
        name = upload.filename
    finally:
        await form.close()
    if len(data) > max_bytes:
        raise HTTPException(413, _too_large(max_bytes))
    if not data:
        raise HTTPException(400, f"{name or 'the upload'} is empty")
    return data, name


def _index_html() -> str:
    return resources.files("platelab.infer").joinpath("static/index.html").read_text("utf-8")


def create_app(
    reader: Any, *, max_bytes: int = 10 * 2**20, max_pixels: int = 40_000_000
) -> FastAPI:
    """The FastAPI app of ``platelab serve`` (endpoints in the module docstring).

    Args:
        reader: an object with ``read_rgb(images) -> list[ReadResult]`` (a
            :class:`~platelab.infer.reader.PlateReader`), or a function of no arguments
            returning one: called once, at startup or at the first request.
        max_bytes: the largest upload accepted, in bytes.
        max_pixels: the most pixels (width times height) an image may have.

    Raises:
        PlatelabError: a limit that is not positive.
        TypeError: a ``reader`` that is neither.
    """
    if max_bytes < 1 or max_pixels < 1:
        raise PlatelabError(f"limits must be positive, got {max_bytes=} and {max_pixels=}")
    model = _Model(reader)
    page = _index_html()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(model.get)  # models load before the first request
        yield

    app = FastAPI(title="platelab", summary="License-plate reader", lifespan=lifespan)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/healthz")
    async def healthz() -> dict[str, str | None]:
        # no worker thread once loaded: the answer must not wait behind queued reads
        names = model.names() if model.loaded else await run_in_threadpool(model.names)
        return {"status": "ok", **names}

    upload_schema = {"type": "string", "format": "binary"}
    form_schema = {"type": "object", "properties": {FIELD: upload_schema}, "required": [FIELD]}

    @app.post(
        "/v1/read",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"multipart/form-data": {"schema": form_schema}},
            }
        },
    )
    async def read(request: Request) -> dict[str, Any]:
        """Every plate of the uploaded image: its ``predictions.jsonl`` line."""
        data, name = await _upload(request, max_bytes)
        result = await run_in_threadpool(model.read, data, name or "the upload", max_pixels)
        return {"source": name, "frame": None, **result}

    return app


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (port 0: a free one), as uvicorn binds it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise PlatelabError(f"cannot listen on {host}:{port}: {reason(e)}") from None
    sock.set_inheritable(True)
    return sock


def run_server(reader: Any, host: str = "127.0.0.1", port: int = 8000, **limits: Any) -> None:
    """Serve :func:`create_app` ``(reader, **limits)`` with uvicorn until interrupted.

    Prints one line with the page's URL once the port is bound (port 0: a free port).

    Raises:
        PlatelabError: the address cannot be bound (in use, no such host).
    """
    import uvicorn

    app = create_app(reader, **limits)
    sock = _listen(host, port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    shown = f"[{host}]" if ":" in host else host
    print(f"platelab serve: http://{shown}:{sock.getsockname()[1]}/", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()

"""The output folder of ``platelab data prepare``: what it may be, and keeping it tidy.

``prepare`` writes into OUT and, on a re-run, rewrites it; so OUT must not be a
source (its images would be read back as input), lie inside one, or hold one, and
a non-empty OUT must be a platelab dataset (recognised by ``prepare_report.json``,
or by the cache a first, interrupted run leaves). All of these are checked on
resolved paths before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from platelab.data.manifest import REPORT_NAME
from platelab.errors import PlatelabError
from platelab.locking import LOCK_NAME

CACHE_NAME = ".prepare_cache.json"
TMP_GLOB = ".*.tmp"  # what platelab.atomic leaves behind when a process is killed mid-write


def check_out(out: Path, sources: Iterable[Path]) -> None:
    """Refuse an OUT that would mix with or overwrite the inputs or someone else's files.

    Raises:
        PlatelabError: OUT is a file; is, lies inside or contains a source; or is a
            non-empty folder that is not a platelab dataset.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PlatelabError(f"--out {out} exists and is not a folder")
    resolved = out.resolve()
    for src in sources:
        s = Path(src).resolve()
        if resolved == s or resolved.is_relative_to(s):
            raise PlatelabError(
                f"--out {out} is inside the source {src}: the dataset would be read back as "
                "input on the next run; choose a folder outside every source"
            )
        if s.is_relative_to(resolved):
            raise PlatelabError(
                f"the source {src} is inside --out {out}, which prepare rewrites; "
                "choose an output folder that holds no source"
            )
    if not out.is_dir():
        return
    if any(p.name != LOCK_NAME for p in out.iterdir()) and not is_dataset(out):
        raise PlatelabError(
            f"--out {out} is a non-empty folder that is not a platelab dataset "
            f"(no {REPORT_NAME}); choose a new or empty folder"
        )


def is_dataset(folder: Path) -> bool:
    """A folder ``prepare`` wrote (finished, or interrupted with its cache kept)."""
    return (Path(folder) / REPORT_NAME).is_file() or (Path(folder) / CACHE_NAME).is_file()


def remove_stray_temp(out: Path, subdir: str = "images") -> int:
    """Delete the ``.*.tmp`` files a killed write left in OUT and OUT/``subdir``.

    Only safe while holding OUT's lock (no other process is writing them).
    """
    n = 0
    for folder in (Path(out), Path(out) / subdir):
        if folder.is_dir():
            for p in folder.glob(TMP_GLOB):
                p.unlink(missing_ok=True)
                n += 1
    return n


def remove_unlisted_images(images_dir: Path, listed: set[str]) -> list[str]:
    """Delete the files of ``images_dir`` whose names are not in ``listed``.

    A re-run with fewer inputs (or with photos now skipped) would otherwise leave
    their letterboxed images behind, out of every manifest.
    """
    removed = []
    for p in sorted(Path(images_dir).iterdir()):
        if p.is_file() and p.name not in listed:
            p.unlink()
            removed.append(p.name)
    return removed

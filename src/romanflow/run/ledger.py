"""The completion ledger: one small JSON record per finished task, written after its products.

A record ``<output_dir>/ledger/<task key>.json`` lists the task's products
(paths relative to the output folder, sizes in bytes, SHA-256 digests), the
seconds it took and a small summary. Products are written atomically first
(:func:`romanflow.formats.atomic_path`), the record last (also atomically), so
a record exists only for a task whose products are all complete. A rerun skips
tasks whose record exists and whose products still have the recorded sizes; a
run killed part-way leaves at worst hidden ``.*.partial`` folders, which
:func:`remove_partials` clears before the next run.

One run at a time writes into an output folder: :func:`output_lock` holds an
exclusive ``flock`` on ``<output_dir>/.romanflow-run.lock`` while it runs. The
kernel releases it when the process ends, however it ends (``kill -9`` included),
so a stale lock file never blocks the next run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from romanflow.errors import RomanflowError

LEDGER_DIR = "ledger"
#: Name of the lock file in an output folder.
LOCK_NAME = ".romanflow-run.lock"
_held_locks: dict[str, list] = {}  # resolved lock path -> [file descriptor, depth], for this process


def _files(path: Path):
    if path.is_dir():
        yield from sorted(p for p in path.rglob("*") if p.is_file())
    else:
        yield path


def file_digest(path: Path, chunk: int = 1 << 22) -> str:
    """SHA-256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def describe_products(paths, root: Path) -> list[dict]:
    """``[{path, bytes, sha256}]`` for every file of the products (folders are walked)."""
    out = []
    for p in paths:
        for f in _files(Path(p)):
            out.append({"path": os.path.relpath(f, root), "bytes": f.stat().st_size, "sha256": file_digest(f)})
    return out


class Ledger:
    """Completion records of one output folder."""

    def __init__(self, root):
        self.root = Path(root)
        self.dir = self.root / LEDGER_DIR

    def path(self, key: str) -> Path:
        return self.dir / f"{key}.json"

    def record(self, key: str, products, *, seconds: float, info: dict | None = None) -> dict:
        """Describe the (already complete) products and write the record atomically."""
        from romanflow.formats import atomic_path

        entry = {"key": key, "seconds": round(float(seconds), 4), "products": describe_products(products, self.root),
                 "info": info or {}}
        with atomic_path(self.path(key)) as tmp:
            tmp.write_text(json.dumps(entry, indent=1, default=str) + "\n")
        return entry

    def done(self, key: str) -> dict | None:
        """The record of a finished task whose products are still in place, else None."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            entry = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            return None
        for item in entry.get("products", []):
            f = self.root / item["path"]
            if not f.is_file() or f.stat().st_size != item["bytes"]:
                return None
        return entry

    def verify(self, key: str) -> list[str]:
        """Products of a recorded task whose bytes no longer match their digest."""
        entry = self.done(key)
        if entry is None:
            return [key]
        return [i["path"] for i in entry["products"] if file_digest(self.root / i["path"]) != i["sha256"]]

    def entries(self) -> dict[str, dict]:
        if not self.dir.is_dir():
            return {}
        return {p.stem: json.loads(p.read_text()) for p in sorted(self.dir.glob("*.json"))}


def remove_partials(root) -> int:
    """Delete the hidden ``.*.partial`` folders a killed run left under ``root``; returns how many."""
    n = 0
    for p in sorted(Path(root).rglob(".*.partial"), key=lambda p: -len(p.parts)):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
            n += 1
    return n


@contextmanager
def output_lock(root):
    """Hold the exclusive run lock of the output folder ``root`` (created if needed) for the ``with`` block.

    Re-entrant within one process. Raises a RomanflowError naming the folder when another
    process holds it. A folder made here and still empty at the end is removed again.
    """
    import fcntl

    root = Path(root)
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_NAME
    key = str(path.resolve())
    if key in _held_locks:
        _held_locks[key][1] += 1
        try:
            yield path
        finally:
            _held_locks[key][1] -= 1
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RomanflowError(f"{root}: another romanflow run is using this output folder (it holds {LOCK_NAME}); "
                             "wait for it to end, or choose another folder") from None
    except BaseException:
        os.close(fd)
        raise
    _held_locks[key] = [fd, 1]
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        del _held_locks[key]
        if created and os.listdir(root) == [LOCK_NAME]:  # nothing was run: leave no folder behind
            path.unlink(missing_ok=True)
            root.rmdir()
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

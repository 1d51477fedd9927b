"""Atomic file writing and the one array format every attribution method writes."""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np


@contextmanager
def atomic(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place only when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix + ".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; outputs are for people to share
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write bytes atomically."""
    with atomic(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    """Write JSON atomically (sorted keys, so reruns give the same bytes)."""
    return write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n").encode())


def _jsonable(x: Any) -> Any:
    """numpy scalars/arrays and paths to plain JSON values."""
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def write_csv(path: str | Path, header: list[str], rows: list[list[Any]]) -> Path:
    """Write a CSV atomically."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return write_bytes(path, buf.getvalue().encode())


def save_maps(out: Path, method: str, maps: np.ndarray, files: list[str], targets: np.ndarray,
              preds: np.ndarray, **extra: np.ndarray) -> Path:
    """Write `<out>/arrays/<method>.npz`: maps (float32 N x H x W, raw), files, targets, preds (+ extras)."""
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 3 or len(maps) != len(files):
        raise ValueError(f"{method}: maps must be N x H x W for {len(files)} files, got {maps.shape}")
    buf = io.BytesIO()
    np.savez_compressed(buf, maps=maps, files=np.asarray(files, dtype=str),
                        targets=np.asarray(targets, dtype=np.int64), preds=np.asarray(preds, dtype=np.int64),
                        **extra)
    return write_bytes(Path(out) / "arrays" / f"{method}.npz", buf.getvalue())


def load_maps(path: str | Path) -> dict[str, np.ndarray]:
    """Read an array file written by save_maps."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}

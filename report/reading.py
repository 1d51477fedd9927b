"""Reading one output folder: JSON files, confusion_matrix.csv and the run record's context."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from report.phrases import class_name, natural_key


def read_json(path: Path) -> Any:
    """A JSON file, or None when missing or unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_confusion(path: Path) -> tuple[list[str], np.ndarray] | None:
    """Class names and counts[true, pred] from confusion_matrix.csv, or None."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        names = rows[0][1:]
        counts = np.array([[int(v) for v in r[1:]] for r in rows[1:]], dtype=np.int64)
    except (OSError, ValueError, IndexError):
        return None
    if counts.shape != (len(names), len(names)):
        return None
    return names, counts


@dataclass
class Run:
    """What the report knows about the run: the run record (run.json's keys) and the output folder."""

    out: Path
    record: dict

    @property
    def settings(self) -> dict:
        """Settings actually used ({} when unknown)."""
        return self.record.get("settings") or {}

    @property
    def results(self) -> dict:
        """Numbers the tasks recorded."""
        return self.record.get("results") or {}

    @property
    def class_names(self) -> list[str]:
        """Class names from the run record, else from confusion_matrix.csv."""
        if self.record.get("class_names"):
            return list(self.record["class_names"])
        cm = self.confusion()
        return cm[0] if cm else []

    def confusion(self) -> tuple[list[str], np.ndarray] | None:
        """This run's confusion_matrix.csv (class names, counts), or None."""
        return read_confusion(self.out / "confusion_matrix.csv") if self.fresh("confusion_matrix.csv") else None

    def json_file(self, name: str) -> Any:
        """A JSON file this run wrote (e.g. trust.json), or None."""
        return read_json(self.out / name) if self.fresh(name) else None

    def exists(self, name: str) -> bool:
        """Whether this run wrote the file (run.json's per-task file lists) and it is in the output folder."""
        return self.fresh(name) and (self.out / name).is_file()

    def ran(self, task: str) -> str | None:
        """'ran', 'skipped: why', or None when the run record lists the task as not run (or is absent)."""
        what = (self.record.get("tasks") or {}).get(task)
        if what is None:
            return None
        return what if str(what).startswith("skipped") else "ran"

    def fresh(self, name: str) -> bool:
        """Whether the run record lists the file among those its tasks wrote."""
        return any(name in files for files in (self.record.get("files") or {}).values())

    def setting(self, key: str, default: Any = None) -> Any:
        """One setting, or default."""
        return self.settings.get(key, default)

    def images(self) -> list[dict]:
        """The explained images: file, label, pred, target (from the run record)."""
        return list(self.record.get("images") or [])

    def images_phrase(self, short: bool = False) -> str:
        """'the 4 selected images (a.jpg: true Bread, predicted Bread; ...)', or with file names only."""
        imgs = self.images()
        if not imgs:
            return "the selected images"
        if short:
            names = ", ".join(Path(im["file"]).name for im in imgs)
            return f"the {len(imgs)} selected image{'s' * (len(imgs) != 1)} ({names})"
        names = self.class_names
        parts = []
        for im in imgs:
            bits = []
            if im.get("label", -1) >= 0:
                bits.append(f"true {class_name(names, im['label'])}")
            bits.append(f"predicted {class_name(names, im['pred'])}")
            if im.get("target", -1) not in (im.get("label", -1), -1):
                bits.append(f"explaining {class_name(names, im['target'])}")
            parts.append(f"{Path(im['file']).name}: {', '.join(bits)}")
        return f"the {len(imgs)} selected image{'s' * (len(imgs) != 1)} ({'; '.join(parts)})"

    def eval_split_phrase(self) -> str:
        """'the whole validation split (230 images)' from the confusion task's record and CSV."""
        res = self.results.get("confusion") or {}
        cm = self.confusion()
        n = res.get("images") or (int(cm[1].sum()) if cm else None)
        split = res.get("split") or "evaluation"
        return f"the whole {split} split" + (f" ({n} images)" if n else "")

    def layers(self, task: str) -> str | None:
        """Layer name(s) a task recorded: Grad-CAM's `layer`, the filters' and Deep Dream's `layers`; else None."""
        res = self.results.get(task)
        if not res:
            return None
        if task == "gradcam":
            return res["layer"]
        return ", ".join(sorted(res["layers"], key=natural_key)) or None

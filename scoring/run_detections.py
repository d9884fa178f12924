"""A collection run's ``detections.json``, gathered as its waves finish.

Each finished picture's boxes become COCO annotations at once and are spooled, one line
each, to a local temporary file, so the driver holds one wave's boxes at a time, not the
whole collection's. At the commit the file is assembled (images, categories, then the
spooled annotations) and staged in the run's folder, in the format of
:func:`scoring.boxes.detections_json`: one line per image, category and annotation.
"""
from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np

from scoring.boxes import annotation_lines, coco_categories, detections_field, one_per_line

__all__ = ["RunDetections"]


class RunDetections:
    """The pictures and annotations of a run's ``detections.json``; :meth:`close` when done."""

    def __init__(self, classes, background: str):
        self.classes, self.background = tuple(classes), background
        self.images: list[dict] = []
        self.count = 0
        self._spool = tempfile.TemporaryFile(prefix="tilescan-detections-")

    def add(self, image: dict, *, boxes=None, annotations=None) -> None:
        """Add the picture ``image`` (its COCO ``images`` entry) with its ``(N, 6)`` ``boxes``, or
        with the COCO ``annotations`` it was finished with earlier (renumbered here)."""
        if annotations is None:
            count = len(np.asarray(boxes).reshape(-1, 6))
            lines = annotation_lines(boxes, self.classes, self.background, image_id=image["id"],
                                     first_id=self.count + 1)
        else:
            count = len(annotations)
            lines = one_per_line([{**a, "id": self.count + n, "image_id": image["id"]}
                                  for n, a in enumerate(annotations, start=1)])
        self.images.append(image)
        if count:
            self._spool.write((",\n" if self.count else "").encode() + lines.encode())
            self.count += count

    def write(self, writer, name: str = "detections.json") -> None:
        """Assemble the file and stage it with ``writer`` (a :class:`scoring.outputs.RunWriter`)."""
        head = [detections_field("info", {"description": "tilescan detections"}),
                detections_field("images", self.images),
                detections_field("categories", coco_categories(self.classes, self.background))]
        with tempfile.NamedTemporaryFile(prefix="tilescan-detections-", suffix=".json", delete=False) as fh:
            try:
                fh.write(("{\n" + ",\n".join(head) + ",\n").encode())
                if self.count:
                    fh.write(b'"annotations": [\n')
                    self._spool.seek(0)
                    shutil.copyfileobj(self._spool, fh)
                    fh.write(b"\n]\n}\n")
                else:
                    fh.write(b'"annotations": []\n}\n')
                fh.close()
                writer.write_file(name, fh.name)
            finally:
                os.unlink(fh.name)

    def close(self) -> None:
        self._spool.close()

    def __enter__(self) -> RunDetections:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

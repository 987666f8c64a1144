"""Multi-label annotations in a CSV file: an image path column and one column per label.

    image,cat,dog,outdoor
    photos/a.jpg,1,0,
    photos/b.jpg,,1,1

Each label cell is 1 (present), 0 (absent) or blank (unknown; -1 is read as unknown too). Yields
label kind `labels`; the label names are the label columns (every column but the image column,
or those listed in `labels`). Image paths are relative to `images` (default: the CSV's folder).
`where: {label: 1}` keeps the rows with those values: a positives source and a negatives source
per label, mixed with equal weights (`data.mixing`), give balanced positive/negative sampling.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from mtl_tf.data.sources.common import (
    MISSING, UNPARSABLE, DataProblem, RecordSource, SourceConfig, collect, load_image, require_file, source_example,
)

CELL_VALUES = {"1": 1, "0": 0, "": -1, "-1": -1}


class CsvConfig(SourceConfig):
    type: Literal["csv"] = "csv"
    file: str = Field(description="the CSV file (header row first)")
    image_column: str = "image"
    labels: list[str] | None = Field(None, min_length=1, description="label columns, in order (default: every "
                                     "column but the image column)")
    images: str | None = Field(None, description="folder the image paths are relative to (default: the CSV's)")
    where: dict[str, Literal[0, 1]] = Field(default_factory=dict, description="keep only the rows with these label "
                                            "values, e.g. {cat: 1}: one source of positives and one of negatives per "
                                            "label, mixed with equal weights, sample each label's classes evenly")

    def label_kinds(self) -> list[str]:
        return ["labels"]

    def class_names(self, kind: str) -> list[str]:
        if kind != "labels":
            return []
        if self.labels is not None:
            return list(self.labels)
        path = Path(self.file)
        header = read_header(path) if path.is_file() else []
        return [c for c in header if c != self.image_column]


def read_header(path: Path) -> list[str]:
    with open(path, newline="") as f:
        return [c.strip() for c in next(csv.reader(f), [])]


class CsvSource(RecordSource):
    """(image file, label vector) records, read and checked when opened."""

    Config = CsvConfig

    def __init__(self, config: CsvConfig, image_size):
        self.config, self.image_size = config, tuple(image_size)
        self.path = require_file(Path(config.file), "CSV file")
        header = read_header(self.path)
        self.columns = config.class_names("labels")
        missing = [c for c in [config.image_column, *self.columns] if c not in header]
        if missing:
            raise DataProblem(self.path, UNPARSABLE, f"no column {', '.join(missing)}; columns: {', '.join(header)}")
        if not self.columns:
            raise DataProblem(self.path, UNPARSABLE, "no label columns besides the image column")
        with open(self.path, newline="") as f:
            rows = list(enumerate(csv.DictReader(f), start=2))  # line numbers as an editor shows them
        self.folder = Path(config.images) if config.images else self.path.parent
        self.records, self.skipped = collect(rows, self._record, config.skip_invalid)
        self.records = self._where(self.records)

    def _where(self, records: list) -> list:
        """The records whose labels have the values `where` asks for."""
        unknown = sorted(set(self.config.where) - set(self.columns))
        if unknown:
            raise DataProblem(self.path, UNPARSABLE, f"where: {unknown} are not label columns")
        wanted = [(self.columns.index(c), v) for c, v in self.config.where.items()]
        return [(path, labels) for path, labels in records if all(labels[c] == v for c, v in wanted)]

    def _record(self, numbered_row) -> tuple[Path, np.ndarray]:
        line, row = numbered_row
        values = []
        for column in self.columns:
            cell = (row.get(column) or "").strip()
            if cell not in CELL_VALUES:
                raise DataProblem(self.path, UNPARSABLE, f"line {line}, column {column}: '{cell}' is not 1, 0 or blank")
            values.append(CELL_VALUES[cell])
        name = (row.get(self.config.image_column) or "").strip()
        if not name:
            raise DataProblem(self.path, MISSING, f"line {line}: no image path")
        return require_file(self.folder / name, "image"), np.array(values, np.int8)

    def __getitem__(self, index: int) -> dict:
        path, labels = self.records[index]
        return source_example(load_image(path), labels=labels)

    def describe(self) -> str:
        where = "".join(f", {c}={v}" for c, v in self.config.where.items())
        return f"csv({self.config.file}{where})"

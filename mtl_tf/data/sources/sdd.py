"""Stanford Drone Dataset: boxes of every Nth frame of each video.

    <root>/annotations/<scene>/<videoN>/annotations.txt
    <root>/videos/<scene>/<videoN>/video.mov          (frames read with OpenCV)
    or <frames>/<scene>/<videoN>/<frame number>.jpg   (frames extracted beforehand; any padding)

annotations.txt has one box per line, space separated: track id, xmin, ymin, xmax, ymax, frame,
lost, occluded, generated, "label" (pixels, 0-based frames). Lost boxes (outside the view) are
dropped; a sampled frame with no box is a true negative. SDD has no masks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from mtl_tf.data.example import empty_boxes
from mtl_tf.data.sources.common import (
    IMAGE_SUFFIXES, MISSING, UNKNOWN_CLASS, UNPARSABLE, UNREADABLE, BoxSourceConfig, DataProblem, RecordSource,
    add_image_labels, check_pixel_boxes, collect, source_example, load_image, require_file, unique,
)

# Frame gaps up to this are crossed by grabbing frames rather than seeking.
_MAX_GRAB = 120

SDD_CLASSES = ["Pedestrian", "Biker", "Skater", "Cart", "Car", "Bus"]


class SddConfig(BoxSourceConfig):
    type: Literal["sdd"] = "sdd"
    root: str = Field(description="folder holding annotations/ (and videos/ unless frames is set)")
    videos: list[str] | None = Field(None, description="'scene/videoN' entries (default: every annotated video)")
    every: int = Field(30, ge=1, description="take frames 0, every, 2 * every, ...")
    frames: str | None = Field(None, description="folder of extracted frames <scene>/<videoN>/<frame>.jpg")
    classes: list[str] = Field(default_factory=lambda: list(SDD_CLASSES), min_length=1,
                               description="labels in the annotation files")
    rename: dict[str, str] = Field(default_factory=dict, description="label -> class name in the recipe")
    ignore_classes: list[str] = Field(default_factory=list, description="labels whose boxes are dropped")
    drop_occluded: bool = False
    drop_generated: bool = Field(False, description="drop boxes interpolated by the annotation tool")

    def label_kinds(self) -> list[str]:
        return self.with_image_labels(["boxes"])

    def class_names(self, kind: str) -> list[str]:
        if kind not in self.label_kinds() or kind == "mask":
            return []
        return unique(self.rename.get(c, c) for c in self.classes if c not in self.ignore_classes)


@dataclass
class _Frame:
    video: str  # scene/videoN
    number: int
    image: Path | None  # an extracted frame file, or None to read the video


class SddSource(RecordSource):
    """Sampled frames of SDD videos with their boxes (see the module docstring)."""

    Config = SddConfig

    def __init__(self, config: SddConfig, image_size):
        self.config, self.image_size = config, tuple(image_size)
        self.root = Path(config.root)
        names = config.class_names("boxes")
        self._class_ids = {c: names.index(config.rename.get(c, c)) for c in config.classes if c not in config.ignore_classes}
        self._boxes: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = {}
        videos = config.videos or sorted(
            str(p.parent.relative_to(self.root / "annotations")) for p in (self.root / "annotations").glob("*/*/annotations.txt")
        )
        if not videos:
            raise DataProblem(self.root / "annotations", MISSING, "no <scene>/<videoN>/annotations.txt found")
        per_video, self.skipped = collect(videos, self._video_frames, config.skip_invalid)
        self.records = [frame for frames in per_video for frame in frames]
        self._capture = _VideoFrames()

    def annotation_path(self, video: str) -> Path:
        return self.root / "annotations" / video / "annotations.txt"

    def video_path(self, video: str) -> Path:
        found = sorted((self.root / "videos" / video).glob("video.*"))
        return found[0] if found else self.root / "videos" / video / "video.mov"

    def _video_frames(self, video: str) -> list[_Frame]:
        self._boxes[video] = self._parse(require_file(self.annotation_path(video), "annotation file"))
        every = self.config.every
        if self.config.frames:
            folder = Path(self.config.frames) / video
            files = {int(p.stem): p for p in folder.glob("*") if p.stem.isdigit() and p.suffix.lower() in IMAGE_SUFFIXES}
            if not files:
                raise DataProblem(folder, MISSING, "no frame images (<frame number>.jpg) in this folder")
            return [_Frame(video, n, files[n]) for n in sorted(files) if n % every == 0]
        path = require_file(self.video_path(video), "video")
        capture = cv2.VideoCapture(str(path))
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
        capture.release()
        if count <= 0:
            raise DataProblem(path, UNREADABLE, "OpenCV cannot open this video or finds no frames in it")
        return [_Frame(video, n, None) for n in range(0, count, every)]

    def _parse(self, path: Path) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """frame -> (pixel boxes [N, 4], class ids [N]) of the kept boxes of one annotations.txt."""
        rows: dict[int, list] = {}
        cfg = self.config
        for number, line in enumerate(path.read_text().splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            try:
                if len(fields) != 10:
                    raise ValueError(f"{len(fields)} columns")
                _, x0, y0, x1, y1, frame, lost, occluded, generated = (int(float(v)) for v in fields[:9])
            except ValueError as err:
                raise DataProblem(path, UNPARSABLE, f"line {number}: expected 'track xmin ymin xmax ymax frame "
                                  f"lost occluded generated \"label\"' ({err})") from None
            label = fields[9].strip('"')
            if label in cfg.ignore_classes:
                continue
            if label not in self._class_ids:
                raise DataProblem(path, UNKNOWN_CLASS, f"line {number}: label '{label}' is not one of {cfg.classes}")
            if lost or (occluded and cfg.drop_occluded) or (generated and cfg.drop_generated):
                continue
            rows.setdefault(frame, []).append((x0, y0, x1, y1, self._class_ids[label]))
        return {
            f: (np.array([r[:4] for r in boxes], np.float32), np.array([r[4] for r in boxes], np.int32))
            for f, boxes in rows.items()
        }

    def __getitem__(self, index: int) -> dict:
        frame = self.records[index]
        if frame.image is not None:
            image = load_image(frame.image)
        else:
            image = self._capture.read(self.video_path(frame.video), frame.number)
        boxes, classes = self._boxes[frame.video].get(frame.number, empty_boxes())
        height, width = image.shape[:2]
        boxes = check_pixel_boxes(boxes, height, width, self.annotation_path(frame.video), self.config.box_tolerance)
        return source_example(image, **add_image_labels({"boxes": boxes, "box_classes": classes}, self.config))

    def file_name(self, index: int) -> str:
        """'<scene>/<videoN>#<frame number>', as the video's annotations.txt counts frames."""
        frame = self.records[index]
        return f"{frame.video}#{frame.number}"

    def describe(self) -> str:
        return f"sdd({self.config.root}, every={self.config.every})"


class _VideoFrames:
    """Random access to video frames, keeping the last video open: reading frames in order
    (the usual case) never seeks."""

    def __init__(self):
        self._path, self._capture, self._next = None, None, 0

    def read(self, path: Path, number: int) -> np.ndarray:
        if path != self._path:
            if self._capture is not None:
                self._capture.release()
            self._path, self._capture, self._next = path, cv2.VideoCapture(str(path)), 0
        if self._next < number <= self._next + _MAX_GRAB:
            for _ in range(number - self._next):  # skipping without decoding beats seeking
                self._capture.grab()
        elif number != self._next:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, number)
        ok, bgr = self._capture.read()
        if not ok:
            self._path = None  # reopen next time
            raise DataProblem(path, UNREADABLE, f"frame {number} cannot be decoded")
        self._next = number + 1
        return np.ascontiguousarray(bgr[..., ::-1])

"""The `predict` job: overlays, each task's maps (e.g. class-id masks) and records files (e.g.
`<task>_detections.json`) for images, folders, videos or a recipe split."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from mtl_tf.inference import Predictor
from mtl_tf.report.render import render_all

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm"}


class InputError(ValueError):
    """An input that cannot be read; the message names the file."""


@dataclass
class Frame:
    name: str  # output file stem: the input's stem, or "<video stem>_<frame index>"
    image: np.ndarray  # uint8 RGB at its original size
    source: str  # what detections.json calls it: the file name, or "<video name>#<frame index>"


def read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as err:
        raise InputError(f"{path}: cannot read image: {err}") from None


def image_files(inputs: list[str]) -> Iterator[Path]:
    """Image and video files named by `inputs` (folders are listed, sorted)."""
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            yield from sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
        elif path.is_file():
            yield path
        else:
            raise InputError(f"{path}: no such file or folder")


def video_frames(path: Path) -> Iterator[Frame]:
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise InputError(f"{path}: cannot open video")
    index = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        yield Frame(f"{path.stem}_{index:06d}", cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), f"{path.name}#{index}")
        index += 1
    capture.release()
    if index == 0:
        raise InputError(f"{path}: no frame could be decoded")


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if image.shape[:2] == tuple(size):
        return image
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))


class PredictionWriter:
    """Writes overlays and each task's maps (`<task>_<map>/<frame>.png`), and collects each
    task's records (`<task>_<records file>`), for frames of any size."""

    def __init__(self, predictor: Predictor, out: Path, min_score: float):
        self.predictor = predictor
        self.out = Path(out)
        self.min_score = min_score
        self.records: dict[str, list[dict]] = {
            name: [] for name, task in predictor.tasks.items() if task.records_file
        }
        self.out.mkdir(parents=True, exist_ok=True)

    def labels(self, frame: Frame) -> dict:
        """{task: plain-named predictions} for one frame, mapped back to its original size."""
        size = frame.image.shape[:2]
        predictions = self.predictor.predict(resize(frame.image, self.predictor.image_size)[None])
        labels = {}
        for name, task in self.predictor.tasks.items():
            own = task.labels_from_prediction(predictions[name], 0, min_score=self.min_score)
            labels[name] = own = task.labels_to_size(own, size)
            if name in self.records:
                self.records[name].extend(task.prediction_records(own, frame.source, size))
        return labels

    def image(self, frame: Frame) -> None:
        labels = self.labels(frame)
        Image.fromarray(render_all(frame.image, labels, self.predictor.tasks)).save(self.out / f"{frame.name}.png")
        for name, task in self.predictor.tasks.items():
            for kind, array in task.prediction_maps(labels[name]).items():
                folder = self.out / f"{name}_{kind}"
                folder.mkdir(exist_ok=True)
                Image.fromarray(array).save(folder / f"{frame.name}.png")

    def video(self, path: Path) -> None:
        import cv2

        writer = None
        capture = cv2.VideoCapture(str(path))
        fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        capture.release()
        for frame in tqdm(video_frames(path), desc=path.name, unit="frame", leave=False):
            rendered = render_all(frame.image, self.labels(frame), self.predictor.tasks)
            if writer is None:
                h, w = rendered.shape[:2]
                writer = cv2.VideoWriter(str(self.out / f"{path.stem}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
            writer.write(cv2.cvtColor(rendered, cv2.COLOR_RGB2BGR))
        if writer is not None:
            writer.release()

    def records_path(self, task: str) -> Path:
        """Where `task`'s records go: `<task>_<records file>` (two tasks of a type never share one)."""
        return self.out / f"{task}_{self.predictor.tasks[task].records_file}"

    def finish(self) -> list[Path]:
        """Write each task's records file; returns their paths."""
        paths = []
        for name, records in self.records.items():
            paths.append(self.records_path(name))
            paths[-1].write_text(json.dumps(records, indent=1))
        return paths


def source_file_names(reader) -> list[str | None]:
    """The source file name of each of the reader's examples, in order (None where a source has
    no files, e.g. synthetic scenes)."""
    return [getattr(source, "file_name", lambda _: None)(i) for source in reader.sources for i in range(len(source))]


def run_predict(predictor: Predictor, inputs: list[str], out: Path, split: str | None = None,
                min_score: float = 0.3) -> PredictionWriter:
    """Predict on files/folders/videos in `inputs`, or on the recipe's `split`, into `out`."""
    writer = PredictionWriter(predictor, out, min_score)
    if split:
        from mtl_tf.evaluate.job import split_reader

        # The sources' own images at their own size: records are in the source files' pixels.
        reader = split_reader(predictor, split)
        files = source_file_names(reader)
        raw = (source[i]["image"] for source in reader.sources for i in range(len(source)))
        for i, image in enumerate(tqdm(raw, desc=split, unit="image", total=len(reader))):
            name = f"{split}_{i:05d}"
            writer.image(Frame(name, image, files[i] or f"{name}.png"))
    files = list(image_files(inputs))
    for path in tqdm(files, desc="predict", unit="file", disable=len(files) < 2):
        if path.suffix.lower() in VIDEO_SUFFIXES:
            writer.video(path)
        else:
            writer.image(Frame(path.stem, read_image(path), path.name))
    writer.finish()
    return writer

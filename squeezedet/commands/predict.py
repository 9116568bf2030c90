"""`squeezedet predict`: detections on an image, a folder or a video -> annotated media + KITTI results."""

from __future__ import annotations

import logging
from pathlib import Path

from squeezedet.commands import add_model_arguments, backend_options
from squeezedet.core.preprocess import IMAGE_SUFFIXES
from squeezedet.errors import DataError

log = logging.getLogger(__name__)

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def register(sub) -> None:
    p = sub.add_parser("predict", help="run a model on images or a video; write annotated output and KITTI results")
    add_model_arguments(p)
    p.add_argument("--source", required=True, help="image file, image folder or video file")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--score-threshold", type=float, help="override the model's default")
    p.set_defaults(func=run)


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def run(args) -> int:
    from tqdm import tqdm

    from squeezedet.inference import load_predictor

    src = Path(args.source)
    if not src.exists():
        raise DataError(f"{src}: source not found")
    out = Path(args.output)
    predictor = load_predictor(args.weights, args.model, args.config, args.threads, args.backend,
                               backend_options(args))
    if src.is_file() and src.suffix.lower() in VIDEO_EXTS:
        n = predict_video(predictor, src, out, args.score_threshold)
        log.info("wrote %s and %d result files to %s", out / f"{src.stem}_annotated.mp4", n, out / "results")
        return 0
    images = list_images(src) if src.is_dir() else [src]
    if not images:
        raise DataError(f"{src}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    total = 0
    for path in tqdm(images, desc="predict", unit="img"):
        total += len(predict_image(predictor, path, out, args.score_threshold))
    log.info("%d images, %d detections -> %s (annotated/, results/)", len(images), total, out)
    return 0


def _write_outputs(predictor, image_rgb, dets, stem: str, out: Path):
    """KITTI result file of one image/frame; returns the annotated image."""
    from squeezedet.core.annotate import draw_detections
    from squeezedet.core.kitti import kitti_name_for, write_results

    names = [predictor.class_names[i] for i in dets.labels]
    write_results(out / "results" / f"{stem}.txt", [kitti_name_for(n) for n in names], dets.boxes, dets.scores)
    return draw_detections(image_rgb, dets.boxes, names, dets.scores)


def predict_image(predictor, path: Path, out: Path, score_threshold=None):
    import cv2

    from squeezedet.core.io import atomic_path
    from squeezedet.core.preprocess import read_image_rgb

    img = read_image_rgb(path)
    dets = predictor.predict(img, score_threshold)
    vis = _write_outputs(predictor, img, dets, path.stem, out)
    target = out / "annotated" / f"{path.stem}.jpg"
    with atomic_path(target, suffix=".jpg") as tmp:
        cv2.imwrite(str(tmp), cv2.cvtColor(vis, cv2.COLOR_RGB2BGR))
    return dets


def predict_video(predictor, path: Path, out: Path, score_threshold=None) -> int:
    """Annotated video + one KITTI result file per frame (``NNNNNN.txt``, frame index from 0)."""
    import cv2
    from tqdm import tqdm

    from squeezedet.core.annotate import AnnotatedVideoWriter

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DataError(f"{path}: cannot open video")
    writer = AnnotatedVideoWriter(out / f"{path.stem}_annotated.mp4", cap.get(cv2.CAP_PROP_FPS) or 25.0)
    n = 0
    try:
        with tqdm(total=int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None, desc="predict", unit="frame") as bar:
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                dets = predictor.predict(rgb, score_threshold)
                writer.write(_write_outputs(predictor, rgb, dets, f"{n:06d}", out))
                n += 1
                bar.update()
    finally:
        cap.release()
        writer.close()
    if n == 0:
        raise DataError(f"{path}: no frames could be decoded")
    return n

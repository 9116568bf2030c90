"""Predictors: image in, Detections in image pixels out — for Keras weights or an exported model.

All use the shared preprocessing (resize the full frame) and the one numpy decoder, so `predict`,
`val` and the edge daemon agree box for box. The exported-model predictor runs any back end
(:mod:`squeezedet.backends`: LiteRT, ONNX Runtime, OpenVINO) and needs no TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from squeezedet.core.postprocess import Detections, postprocess
from squeezedet.core.preprocess import resize_for_model
from squeezedet.errors import ConfigError, ModelFileError, first_line


class Predictor:
    """Common decoding; subclasses implement ``raw(batch_uint8) -> [B, gh, gw, ch]`` and set the decode
    settings from the config's postprocess section or the sidecar (squeezedet.core.geometry.DecodeDefaults)."""

    class_names: list[str]
    input_size: tuple[int, int]
    anchors: np.ndarray
    score_threshold: float
    nms_threshold: float
    top_k: int
    max_detections: int

    def raw(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def decode(self, raw_one: np.ndarray, image_size, score_threshold=None) -> Detections:
        return postprocess(
            raw_one,
            self.anchors,
            len(self.class_names),
            self.input_size,
            image_size,
            score_threshold=self.score_threshold if score_threshold is None else score_threshold,
            nms_threshold=self.nms_threshold,
            top_k_before_nms=self.top_k,
            max_detections=self.max_detections,
        )

    def prepare(self, image_rgb: np.ndarray) -> np.ndarray:
        """A frame (uint8 RGB, any size) as the model's input batch ``[1, H, W, 3]``."""
        return resize_for_model(image_rgb, self.input_size)[None]

    def predict(self, image_rgb: np.ndarray, score_threshold=None) -> Detections:
        h, w = image_rgb.shape[:2]
        raw = self.raw(self.prepare(image_rgb))
        return self.decode(raw[0], (w, h), score_threshold)

    def predict_batch(self, images_rgb, score_threshold=None) -> list[Detections]:
        return [self.predict(img, score_threshold) for img in images_rgb]


class KerasPredictor(Predictor):
    """Keras model from a config + ``.weights.h5``; runs batches through one compiled call."""

    def __init__(self, cfg, weights_path=None, model=None):
        from squeezedet.model import build_model

        self.cfg = cfg
        self.class_names = list(cfg.model.classes)
        self.input_size = cfg.model.input_size
        self.anchors = cfg.model.anchors()
        pp = cfg.postprocess
        self.score_threshold, self.nms_threshold = pp.score_threshold, pp.nms_threshold
        self.top_k, self.max_detections = pp.top_k, pp.max_detections
        if model is None:
            model = build_model(cfg.model, training_dropout=False)
            load_weights(model, weights_path)
        self.model = model

    def raw(self, batch):
        import keras

        return keras.ops.convert_to_numpy(self.model(batch, training=False))

    def predict_batch(self, images_rgb, score_threshold=None):
        if not len(images_rgb):
            return []
        x = np.stack([resize_for_model(im, self.input_size) for im in images_rgb])
        raw = self.raw(x)
        return [
            self.decode(r, (im.shape[1], im.shape[0]), score_threshold) for r, im in zip(raw, images_rgb)
        ]


class ModelPredictor(Predictor):
    """An exported model (.tflite, .onnx or OpenVINO .xml) with its sidecar metadata, on any back end
    (no TensorFlow needed); decode settings default to the metadata's, each overridable."""

    def __init__(self, model_path, num_threads: int | None = None, delegate_path: str | None = None,
                 score_threshold: float | None = None, nms_threshold: float | None = None,
                 top_k: int | None = None, max_detections: int | None = None, backend: str = "auto",
                 options=None):
        from squeezedet.backends import load_backend
        from squeezedet.backends.options import backend_options
        from squeezedet.core.metadata import read_metadata

        meta = read_metadata(model_path)
        self.meta = meta
        self.class_names = list(meta.class_names)
        self.input_size = meta.input_size
        self.anchors = meta.anchors()
        self.score_threshold = meta.score_threshold if score_threshold is None else score_threshold
        self.nms_threshold = meta.nms_threshold if nms_threshold is None else nms_threshold
        self.top_k = top_k or meta.top_k
        self.max_detections = max_detections or meta.max_detections
        options = backend_options(options, **{
            k: v for k, v in (("num_threads", num_threads), ("delegate", delegate_path)) if v is not None})
        self.model = load_backend(model_path, backend, options, meta=meta)
        self.backend = self.model.name

    def raw(self, batch):
        return self.model(batch)


#: The first exported format's name for the same predictor.
TFLitePredictor = ModelPredictor


def load_weights(model, weights_path) -> None:
    """Load ``.weights.h5`` into ``model`` by layer name (dropout absent at inference is fine)."""
    path = Path(weights_path) if weights_path else None
    if path is None or not path.is_file():
        raise ModelFileError(f"{weights_path}: weights file not found")
    try:
        model.load_weights(str(path), skip_mismatch=False)
    except (ValueError, OSError, KeyError) as exc:
        raise ModelFileError(f"{path}: cannot load weights into {model.name} ({first_line(exc)})") from None


def config_for_weights(weights_path, config_path=None):
    """The config a weights file was trained with: --config, else config.yaml beside the weights."""
    from squeezedet.config import load_config

    if config_path:
        return load_config(config_path)
    guess = Path(weights_path).parent / "config.yaml"
    if guess.is_file():
        return load_config(guess)
    raise ConfigError(f"{weights_path}: no --config given and no config.yaml next to the weights")


def load_predictor(weights=None, model=None, config=None, num_threads=None, backend: str = "auto",
                   options=None) -> Predictor:
    """--weights W [--config C] -> KerasPredictor; --model M (.tflite/.onnx/.xml) -> ModelPredictor."""
    if bool(weights) == bool(model):
        raise ConfigError("give exactly one of --weights (Keras) or --model (.tflite, .onnx or OpenVINO .xml)")
    if model:
        return ModelPredictor(model, num_threads=num_threads, backend=backend, options=options)
    return KerasPredictor(config_for_weights(weights, config), weights)

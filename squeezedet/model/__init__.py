"""Keras 3 SqueezeDet / SqueezeDet+ (functional models) and pretrained-backbone loading."""

from squeezedet.model.squeezedet import build_model, count_params

__all__ = ["build_model", "count_params"]

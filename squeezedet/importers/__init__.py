"""Import published SqueezeDet weights (the authors' TF1 graphs and checkpoints, raw float32 parameter sets)
into our Keras model, with the source's geometry, and prove the import reproduces the source."""

from squeezedet.importers.base import SourceWeights
from squeezedet.importers.convert import import_model
from squeezedet.importers.source import read_source

__all__ = ["SourceWeights", "import_model", "read_source"]

"""SqueezeDet for edge cameras.

Importing this package (and ``squeezedet.core``) never imports TensorFlow: the edge daemon reuses the
numpy core on devices that only have the TFLite runtime.
"""

__version__ = "0.1.0"

"""Training: loss, learning-rate schedule, callbacks, trainer (TensorFlow / Keras 3)."""

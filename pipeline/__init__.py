"""Edge daemon: camera -> TFLite -> tracking/smoothing -> MQTT. Never imports TensorFlow."""

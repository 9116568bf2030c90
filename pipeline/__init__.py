"""Edge daemon: camera -> TFLite -> tracking/smoothing -> MQTT. Never imports TensorFlow."""

import os

# FFmpeg (inside OpenCV) prints its own lines on stderr ("moov atom not found", decode errors) beside
# our one-line errors; OpenCV reads these when cv2 is first imported, so set them before any import of
# it. A value already in the environment wins (set OPENCV_FFMPEG_LOGLEVEL=32 to see FFmpeg's messages).
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

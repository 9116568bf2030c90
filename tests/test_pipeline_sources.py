"""Frame sources: ordered files/folders, newest-frame live sources, reconnect with back-off."""

import logging
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from pipeline_helpers import RED, cell_rect_frame, make_video

from pipeline.config import SourceConfig
from pipeline.sources import FrameSource, SourceError, source_kind


class FakeCapture:
    """Frames whose pixel value is their sequence number; read() fails after ``n`` frames."""

    def __init__(self, n, start=0, delay=0.0):
        self.n, self.i, self.start, self.delay = n, 0, start, delay
        self.released = False

    def read(self):
        if self.delay:
            time.sleep(self.delay)
        if self.i >= self.n:
            return False, None
        self.i += 1
        return True, np.full((8, 8, 3), (self.start + self.i) % 256, np.uint8)

    def get(self, prop):
        return 25.0

    def release(self):
        self.released = True


def drain(source, limit=200, timeout=2.0):
    frames, deadline = [], time.monotonic() + timeout
    while len(frames) < limit and time.monotonic() < deadline and not source.ended:
        frame = source.get(timeout=0.1)
        if frame is not None:
            frames.append(frame)
    return frames


def test_source_kinds(tmp_path):
    assert source_kind("0") == "camera"
    assert source_kind("/dev/video2") == "camera"
    assert source_kind("rtsp://user:pw@cam/stream") == "stream"
    assert source_kind("http://cam/mjpg") == "stream"
    assert source_kind(str(tmp_path)) == "folder"
    assert source_kind(str(tmp_path / "clip.mp4")) == "file"
    assert source_kind("libcamerasrc ! appsink", "gstreamer") == "pipeline"


def test_file_is_read_in_order_and_ends(tmp_path):
    video = make_video(tmp_path / "v.avi", [[(0, i % 8, RED)] for i in range(7)])
    statuses = []
    src = FrameSource(SourceConfig(uri=str(video)), on_status=lambda s, d: statuses.append(s))
    src.open()
    assert src.fps == pytest.approx(10.0)
    src.start()
    frames = drain(src)
    src.stop()
    assert [f.index for f in frames] == list(range(7))
    assert src.ended and src.dropped == 0
    assert frames[0].image.shape == (128, 256, 3)
    assert frames[3].image[0:32, 96:128, 0].mean() > 200  # RGB order: red is channel 0
    assert statuses == ["online", "ended"]


def test_file_reports_ended_only_once_its_last_frame_is_taken(tmp_path):
    """The reader reaches the end of the file while frames still wait in its queue: the camera (and its MQTT
    availability) must stay online until they have been taken."""
    video = make_video(tmp_path / "v.avi", [[(0, 0, RED)]] * 5)
    statuses = []
    src = FrameSource(SourceConfig(uri=str(video), prefetch=8), on_status=lambda s, d: statuses.append(s))
    src.open()
    src.start()
    deadline = time.monotonic() + 2.0
    while src.queue_depth < 6 and time.monotonic() < deadline:  # 5 frames + the end marker, all read
        time.sleep(0.01)
    assert src.queue_depth == 6
    assert statuses == ["online"] and not src.ended
    frames = drain(src)
    src.stop()
    assert len(frames) == 5 and statuses == ["online", "ended"]


def test_looping_file_keeps_counting(tmp_path):
    video = make_video(tmp_path / "v.avi", [[(0, 0, RED)]] * 3)
    src = FrameSource(SourceConfig(uri=str(video), loop=True))
    src.open()
    src.start()
    frames = drain(src, limit=8)
    src.stop()
    assert [f.index for f in frames] == list(range(8)) and not src.ended


def test_looping_file_seeks_back_instead_of_reopening(tmp_path):
    """Each loop starts again at the real first frame, through one open capture (a reopen costs 3x a seek)."""
    from pipeline.sources import open_capture

    video = make_video(tmp_path / "v.avi", [[(0, col, RED)] for col in (1, 4, 7)])
    opened = []
    src = FrameSource(SourceConfig(uri=str(video), loop=True), opener=lambda cfg: opened.append(1) or open_capture(cfg))
    src.open()
    src.start()
    frames = drain(src, limit=8)
    src.stop()
    lit = [int(np.argmax(f.image[0:32, :, 0].reshape(32, -1, 32).mean(axis=(0, 2)))) for f in frames]
    assert lit == [1, 4, 7, 1, 4, 7, 1, 4]
    assert len(opened) == 1


@pytest.mark.parametrize("threads, expected", [(None, 1), (2, 2)])
def test_video_file_decoder_threads(threads, expected):
    """Files decode on one thread unless told otherwise: frame threading costs CPU the detector needs."""
    from pipeline.sources import open_capture

    video = Path(__file__).resolve().parents[1] / "assets" / "demo" / "highway_dashcam.mp4"  # H.264
    cap = open_capture(SourceConfig(uri=str(video), decode_threads=threads))
    try:
        assert cap.get(cv2.CAP_PROP_N_THREADS) == expected
        assert cap.read()[0]
    finally:
        cap.release()


def test_hardware_decode_any_falls_back_to_software_and_says_which(caplog):
    from pipeline.sources import open_capture

    video = Path(__file__).resolve().parents[1] / "assets" / "demo" / "highway_dashcam.mp4"
    with caplog.at_level(logging.INFO, logger="pipeline.sources"):
        cap = open_capture(SourceConfig(uri=str(video), hwaccel="any"))
    try:
        assert cap.read()[0]
    finally:
        cap.release()
    fields = next(r.fields for r in caplog.records if r.getMessage() == "video decode")
    assert fields["asked"] == "any"
    if Path("/dev/dri").exists():  # a GPU may really decode here: any of OpenCV's names
        assert fields["hardware"] in {"none", "vaapi", "drm", "d3d11", "mfx"}
    else:
        assert fields["hardware"] == "none"


def test_named_hardware_decoder_that_is_missing_is_a_one_line_error():
    from pipeline.sources import open_capture

    if Path("/dev/dri").exists():
        pytest.skip("this machine has a DRM device: VAAPI may really work here")
    video = Path(__file__).resolve().parents[1] / "assets" / "demo" / "highway_dashcam.mp4"
    with pytest.raises(SourceError, match=r"highway_dashcam.mp4: cannot open file \(hardware decode 'vaapi' "
                                          r"unavailable, or unreadable"):
        open_capture(SourceConfig(uri=str(video), hwaccel="vaapi"))


def test_looping_file_that_reopens_without_frames_backs_off():
    """A looping file that worked and then opens with nothing to read (truncated while running) must not
    be reopened in a tight loop: consecutive empty reopens wait like reconnects (0.05, 0.1, 0.2 s ...)."""
    opens = []

    def opener(cfg):
        opens.append(time.monotonic())
        return FakeCapture(2 if len(opens) == 1 else 0)

    src = FrameSource(SourceConfig(uri="clip.mp4", loop=True, reconnect_initial_s=0.05, reconnect_max_s=0.2),
                      opener=opener)
    src.open()
    src.start()
    frames = drain(src, limit=10, timeout=0.6)
    src.stop()
    assert len(frames) == 2
    assert 3 <= len(opens) <= 8, len(opens)  # without back-off: thousands in 0.6 s
    assert opens[-1] - opens[-2] >= 0.1


class SeekNowhere(FakeCapture):
    """A capture that claims to seek but keeps failing reads: the source must reopen, not spin."""

    def set(self, prop, value):
        return True


def test_looping_file_whose_seek_does_not_work_is_reopened(tmp_path):
    video = make_video(tmp_path / "v.avi", [[(0, 0, RED)]] * 2)
    caps = []

    def opener(cfg):
        caps.append(SeekNowhere(2, start=10 * len(caps)))
        return caps[-1]

    src = FrameSource(SourceConfig(uri=str(video), loop=True), opener=opener)
    src.open()
    src.start()
    frames = drain(src, limit=6)
    src.stop()
    assert [int(f.image[0, 0, 0]) for f in frames] == [1, 2, 11, 12, 21, 22]
    assert len(caps) >= 3 and all(c.released for c in caps)  # the reader prefetches ahead of drain()


def test_folder_in_name_order_skipping_unreadable(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, col in enumerate((2, 0, 1)):
        cv2.imwrite(str(folder / f"{i:03d}.png"), cv2.cvtColor(cell_rect_frame([(0, col, RED)]), cv2.COLOR_RGB2BGR))
    (folder / "001b.jpg").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("ignored")
    src = FrameSource(SourceConfig(uri=str(folder)))
    src.open()
    src.start()
    frames = drain(src)
    src.stop()
    cols = [int(np.argmax(f.image[0:32, :, 0].reshape(32, 8, 32).mean(axis=(0, 2)))) for f in frames]
    assert cols == [2, 0, 1] and src.ended


@pytest.mark.parametrize("content", [None, b"", b"\x00garbage" * 100])
def test_unreadable_video_fails_at_open(tmp_path, content):
    path = tmp_path / "clip.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SourceError, match="clip.mp4"):
        FrameSource(SourceConfig(uri=str(path))).open()


def test_empty_folder_fails_at_open(tmp_path):
    with pytest.raises(SourceError, match="no images"):
        FrameSource(SourceConfig(uri=str(tmp_path))).open()


def test_live_source_keeps_only_the_newest_frame_and_counts_drops():
    cap = FakeCapture(60, delay=0.002)
    src = FrameSource(SourceConfig(uri="0"), opener=lambda cfg: cap)
    src.open()
    src.start()
    got = []
    deadline = time.monotonic() + 3
    while cap.i < 60 and time.monotonic() < deadline:
        frame = src.get(timeout=0.2)
        if frame is not None:
            got.append(frame.index)
        time.sleep(0.02)  # a detector slower than the camera
    time.sleep(0.05)
    last = src.get(timeout=0.2)
    src.stop()
    got += [last.index] if last is not None else []
    assert got == sorted(got) and len(set(got)) == len(got)
    assert src.dropped > 0
    assert len(got) + src.dropped == 60  # every frame was either delivered or counted as dropped


def test_live_source_reconnects_with_backoff_and_reports_status(caplog):
    """Stream delivers 3 frames, dies; the next two reopen attempts fail, the third succeeds."""
    attempts = []

    def opener(cfg):
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            return FakeCapture(3)
        if len(attempts) in (2, 3):
            raise SourceError("rtsp://cam/stream: cannot open stream")
        return FakeCapture(1000, start=100, delay=0.005)

    statuses = []
    lock = threading.Lock()

    def on_status(state, detail):
        with lock:
            statuses.append((state, detail))

    cfg = SourceConfig(uri="rtsp://cam/stream", reconnect_initial_s=0.05, reconnect_max_s=0.2)
    src = FrameSource(cfg, camera="door", opener=opener, on_status=on_status)
    with caplog.at_level(logging.INFO, logger="pipeline.sources"):
        src.open()
        src.start()
        frames = drain(src, limit=6, timeout=5)
        src.stop()
    assert len(attempts) == 4
    gaps = np.diff(attempts[1:])
    assert gaps[0] >= 0.09 and gaps[1] >= 0.19  # 0.05, 0.1, 0.2 s back-off (exponential)
    states = [s for s, _ in statuses]
    assert states[0] == "online" and states[-1] == "online"
    assert states.count("reconnecting") >= 3
    assert any("attempt 3" in d for s, d in statuses if s == "reconnecting")
    reconnect_logs = [r for r in caplog.records if r.getMessage() == "reconnecting source"]
    assert [r.fields["attempt"] for r in reconnect_logs] == [1, 2, 3]
    assert all(r.fields["camera"] == "door" for r in reconnect_logs)
    assert any(r.getMessage() == "source lost" for r in caplog.records)
    assert frames[-1].image[0, 0, 0] >= 100  # frames from the reopened stream


def test_live_source_not_there_at_start_is_retried_not_fatal():
    calls = []

    def opener(cfg):
        calls.append(1)
        if len(calls) == 1:
            raise SourceError("/dev/video0: cannot open camera")
        return FakeCapture(100, delay=0.005)

    src = FrameSource(SourceConfig(uri="/dev/video0", reconnect_initial_s=0.05), opener=opener)
    src.open()  # no exception
    src.start()
    frames = drain(src, limit=3)
    src.stop()
    assert len(calls) == 2 and len(frames) == 3

"""Camera sources. The picamera2 adapter runs against a stand-in that has
picamera2's real method names and return shapes (picamera2 itself cannot be
installed off a Pi)."""

import time

import numpy as np
import pytest
from PIL import Image

from gate.camera import Picamera2Source, open_source
from gate.core.errors import CameraError


class StandInRequest:
    def __init__(self, cam, bufs):
        self.cam, self.bufs = cam, bufs
        self.released = False

    def release(self):
        assert not self.released, "request released twice"
        self.released = True
        self.cam.outstanding -= 1


class StandInMappedArray:
    """picamera2.MappedArray(request, stream): a context manager with .array."""

    def __init__(self, request, stream, reshape=True, write=True):
        assert stream in request.bufs, stream
        self.request, self.stream = request, stream

    def __enter__(self):
        self.array = self.request.bufs[self.stream]
        self.request.cam.mapped += 1
        return self

    def __exit__(self, *exc):
        self.array = None
        self.request.cam.mapped -= 1


class StandInPicamera2:
    cameras = [{"Model": "imx708"}]
    instances = []

    @staticmethod
    def global_camera_info():
        return StandInPicamera2.cameras

    def __init__(self, camera_num=0):
        self.controls_set = {}
        self.control_calls = []
        self.mapped = 0
        self.camera_controls = {"ExposureTime": (1, 1000000, None), "AfMode": (0, 2, 0),
                                "FrameDurationLimits": (1, 1000000, None)}
        self.started = False
        self.outstanding = 0
        self.stride = 704
        self.stall = False
        StandInPicamera2.instances.append(self)

    def create_video_configuration(self, main=None, lores=None, buffer_count=6, controls=None, **kw):
        return {"main": main, "lores": lores, "buffer_count": buffer_count}

    def configure(self, cfg):
        self.config = cfg

    def set_controls(self, ctl):
        self.controls_set.update(ctl)
        self.control_calls.append(dict(ctl))

    def autofocus_cycle(self, wait=None, signal_function=None):
        raise AssertionError("its job would queue our capture_request behind the AF scan")

    def start(self):
        self.started = True

    def capture_request(self, wait=None, flush=None):
        if self.stall:
            raise TimeoutError("frame wait timed out")
        bufs = {}
        for stream, value, stride in (("lores", 200, self.stride), ("main", 90, 1344)):
            w, h = self.config[stream]["size"]
            buf = np.zeros((h * 3 // 2, max(stride, w)), np.uint8)  # YUV420, stride wider than width
            buf[:h, :w] = value
            buf[:h, w:] = 13           # padding that must not leak into the frame
            bufs[stream] = buf
        self.outstanding += 1
        return StandInRequest(self, bufs)

    def stop(self):
        self.started = False

    def close(self):
        pass


def make_source(**kw):
    return Picamera2Source(640, 480, 30, factory=StandInPicamera2, mapped_array=StandInMappedArray, **kw)


def test_camera_picamera2_y_plane_is_a_view_of_the_lores_buffer():
    src = make_source()
    src.start()
    cam = StandInPicamera2.instances[-1]
    assert cam.config["lores"] == {"size": (640, 480), "format": "YUV420"}
    frame = src.read(0.5)
    assert frame.y.shape == (480, 640) and (frame.y == 200).all()
    assert frame.y.strides == (704, 1)  # no copy: the stride of the camera buffer
    assert cam.outstanding == 1 and frame.main is None and cam.mapped == 1
    frame.release()
    frame.release()  # idempotent
    assert cam.outstanding == 0 and cam.mapped == 0
    src.close()
    assert not cam.started


def test_camera_picamera2_controls_follow_the_sensor():
    src = make_source(max_exposure_us=5000)
    src.start()
    ctl = StandInPicamera2.instances[-1].controls_set
    assert ctl["FrameDurationLimits"] == (33333, 33333)
    assert ctl["ExposureTime"] == 5000 and ctl["AfMode"] == 2 and ctl["AfRange"] == 1
    # A fixed-focus sensor advertises no AfMode: none is set.
    assert "AfMode" not in make_source().controls({"ExposureTime": ()})
    manual = make_source(lens_position=4.0).controls({"AfMode": ()})
    assert manual["AfMode"] == 0 and manual["LensPosition"] == 4.0


def test_camera_picamera2_no_camera_is_a_one_line_error():
    StandInPicamera2.cameras = []
    try:
        with pytest.raises(CameraError) as e:
            make_source().start()
        assert "ribbon cable" in str(e.value) and "\n" not in str(e.value)
    finally:
        StandInPicamera2.cameras = [{"Model": "imx708"}]


def test_camera_picamera2_stall_returns_none():
    src = make_source()
    src.start()
    StandInPicamera2.instances[-1].stall = True
    assert src.read(0.01) is None


def test_camera_picamera2_missing_library_says_what_to_install():
    with pytest.raises(CameraError, match="python3-picamera2"):
        Picamera2Source().start()


def test_camera_replay_folder_in_name_order_paced(tmp_path):
    for i, v in enumerate([10, 20, 30]):
        Image.fromarray(np.full((48, 64), v, np.uint8)).save(tmp_path / f"f{2 - i}.png")
    src = open_source(f"replay:{tmp_path}@20")
    src.start()
    t0 = time.monotonic()
    got = []
    while not src.finished:
        f = src.read(0.5)
        if f is not None:
            got.append(int(f.y[0, 0]))
    assert got == [30, 20, 10]
    assert time.monotonic() - t0 >= 0.09  # 3 frames at 20 fps


def test_camera_open_source_forms():
    assert open_source("replay:/x/y@7.5").fps == 7.5
    assert str(open_source("replay:/x/a@b").path) == "/x/a@b"
    assert open_source("v4l2:/dev/video2").device == "/dev/video2"
    with pytest.raises(CameraError, match="unknown camera source"):
        open_source("webcam")
    with pytest.raises(CameraError, match="does not exist"):
        open_source("replay:/nonexistent").start()


def test_camera_v4l2_read_honours_its_timeout():
    """OpenCV's VideoCapture.read() blocks while a USB camera hangs; the source's read must not."""
    import threading

    from gate.camera import V4L2Source, _V4L2Reader

    class HangingCapture:            # cv2.VideoCapture's shape: read() -> (ok, image), release()
        def __init__(self):
            self.go = threading.Event()
            self.released = False

        def read(self):
            self.go.wait(5)
            return (not self.released), np.zeros((480, 640, 3), np.uint8)

        def release(self):
            self.released = True
            self.go.set()
    src = V4L2Source("/dev/video-test")
    cap = src.cap = HangingCapture()
    src._reader = _V4L2Reader(cap, src._frames)
    src._reader.start()
    t0 = time.monotonic()
    assert src.read(0.2) is None
    assert time.monotonic() - t0 < 2.0   # the hanging read holds out for 5 s; a busy machine may add a little
    cap.go.set()                      # the camera comes back
    frame = src.read(2.0)
    assert frame is not None and frame.y.shape == (480, 640)
    src.close()
    assert cap.released and not src._reader


def test_camera_picamera2_main_stream_is_a_second_view_released_with_the_frame():
    src = make_source(main_scale=2)
    src.start()
    cam = StandInPicamera2.instances[-1]
    assert cam.config["main"] == {"size": (1280, 960), "format": "YUV420"}
    assert cam.config["lores"] == {"size": (640, 480), "format": "YUV420"}
    frame = src.read(0.5)
    assert frame.main.shape == (960, 1280) and (frame.main == 90).all() and (frame.y == 200).all()
    assert frame.main.strides == (1344, 1)   # a view of the camera's buffer, not a copy
    assert cam.mapped == 2
    frame.release()
    assert cam.mapped == 0 and cam.outstanding == 0


def test_camera_picamera2_refocus_is_rate_bounded_and_returns_to_continuous():
    t = [100.0]
    src = make_source(refocus_s=3.0, clock=lambda: t[0])
    src.start()
    cam = StandInPicamera2.instances[-1]
    cam.control_calls.clear()
    assert src.refocus()
    assert cam.control_calls == [{"AfMode": 1, "AfTrigger": 0}]     # Auto + Start: one scan
    t[0] += 1.0
    assert not src.refocus()                                        # within refocus_s: not again
    src.read(0.1).release()                                         # the scan has had its second
    assert cam.control_calls[-1] == {"AfMode": 2}                   # continuous AF again
    t[0] += 2.5
    assert src.refocus() and src.refocuses == 2


def test_camera_picamera2_fixed_lens_is_never_refocused():
    for kw in ({"lens_position": 3.5}, {"autofocus": False}, {"refocus_s": 0}):
        src = make_source(**kw)
        src.start()
        cam = StandInPicamera2.instances[-1]
        calls = len(cam.control_calls)
        assert not src.refocus()
        assert len(cam.control_calls) == calls, kw
    fixed = make_source()
    fixed.start()
    del StandInPicamera2.instances[-1].camera_controls["AfMode"]   # a fixed-focus sensor
    assert not fixed.refocus()


def test_camera_replay_offers_lores_and_main_pair(tmp_path):
    from gate.camera import ReplaySource
    img = np.zeros((96, 128), np.uint8)
    img[:, ::2] = 255          # 1-pixel bars: decimation would alias them, a box filter greys them
    Image.fromarray(img).save(tmp_path / "a.png")
    src = ReplaySource(tmp_path, fps=0, main_scale=2)
    src.start()
    f = src.read(0.1)
    assert f.main.shape == (96, 128) and f.y.shape == (48, 64)
    assert (f.y == 127).all() and (f.main == img).all()
    assert src.read(0.1) is None and src.finished

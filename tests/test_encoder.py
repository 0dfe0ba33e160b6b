"""Rendition encoders keep within their bit budget over short windows (x264 VBV), so a
keyframe does not burst past a weak link's rate."""

from __future__ import annotations

import av

from drone_sim.scene import Scene
from relay.config import Rendition
from relay.pipeline.encoder import TIME_BASE, RenditionEncoder


def peak_rate_kbps(sizes: list[int], fps: int, window_s: float) -> float:
    n = max(1, round(window_s * fps))
    return max(sum(sizes[i:i + n]) for i in range(len(sizes) - n + 1)) * 8 / window_s / 1000


def encode_sizes(rendition: Rendition, frames: int = 150, key_every: int = 30) -> list[int]:
    scene = Scene(640, 360)
    enc = RenditionEncoder(rendition, 640, 360, gop_frames=60)
    sizes = []
    for i in range(frames):
        f = av.VideoFrame.from_ndarray(scene.render(i, t=i / 30), format="yuv420p")
        pts = int(i / 30 * TIME_BASE.denominator)
        sizes.append(sum(p.size for p in enc.encode(f, pts, keyframe=i % key_every == 0)))
    enc.close()
    return sizes


def test_keyframes_stay_within_the_renditions_budget() -> None:
    r = Rendition("lte", 360, 600, max_fps=30)
    sizes = encode_sizes(r)
    peak = peak_rate_kbps(sizes, 30, 0.5)
    mean = sum(sizes) * 8 / (len(sizes) / 30) / 1000
    print(f"\n600 kbit/s rendition, a keyframe every second: mean {mean:.0f} kbit/s, "
          f"peak over 0.5 s {peak:.0f} kbit/s ({peak / 600:.2f}x budget)")
    assert peak <= 600 * 1.3, f"peak {peak:.0f} kbit/s over 0.5 s for a 600 kbit/s rendition"
    assert mean <= 600 * 1.1


def test_a_keyframe_comes_by_time_when_the_frame_rate_is_shed() -> None:
    """A rendition's GOP is counted in frames: at a sixth of its frame rate (the overload
    governor) a 2 s GOP would last 12 s, and a viewer that lost a packet would wait that long
    for a clean picture. A keyframe is also due after keyframe_interval_s of time."""
    import time

    from relay.config import parse
    from relay.pipeline.encoders import EncoderPool

    media = parse({"media": {"keyframe_interval_s": 0.3}}, env={}).media
    pool = EncoderPool(media)
    r = Rendition("low", 180, 300, max_fps=30)  # a GOP of 9 frames
    scene = Scene(320, 180)
    keys = []
    for i in range(12):  # 5 fps: a sixth of 30
        img = av.VideoFrame.from_ndarray(scene.render(i, t=i / 5), format="yuv420p").to_ndarray()
        out = pool.encode(img, (320, 180), [r], set(), int(i / 5 * TIME_BASE.denominator), {"arrival": 0.0},
                          0, None)
        keys.append(any(u.keyframe for u in out["low"]))
        time.sleep(0.2)
    pool.close()
    gaps = [b - a for a, b in zip([i for i, k in enumerate(keys) if k], [i for i, k in enumerate(keys) if k][1:],
                                  strict=False)]
    assert keys[0] and gaps and max(gaps) <= 2, keys  # 0.4 s apart at most, not 9 frames (1.8 s)

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


def test_intra_refresh_spreads_the_periodic_keyframe_and_keeps_idr_on_request() -> None:
    # The bottom rung (360p, 10 fps, 250 kbit/s), a keyframe every 2 s of its own, one
    # more asked for (a viewer switching to it) at frame 45.
    def run(refresh: bool) -> tuple[list[int], list[int]]:
        r = Rendition("floor", 360, 250, max_fps=10, intra_refresh=refresh)
        scene = Scene(640, 360)
        enc = RenditionEncoder(r, 640, 360, gop_frames=20)
        sizes, keys = [], []
        for i in range(100):
            f = av.VideoFrame.from_ndarray(scene.render(i * 3, t=i / 10), format="yuv420p")
            for p in enc.encode(f, i * 9000, keyframe=i == 45):
                sizes.append(p.size)
                if enc.is_keyframe(p):
                    keys.append(i)
        assert enc.keyframes == len(keys)
        enc.close()
        return sizes, keys

    plain, plain_keys = run(False)
    refresh, refresh_keys = run(True)
    assert plain_keys == [0, 20, 40, 45, 65, 85], plain_keys  # (the GOP restarts at one asked for)
    # Intra refresh: an IDR only where a decoder can start and one was due (the first
    # picture, the one asked for); the refresh's recovery points are not taken for one.
    assert refresh_keys == [0, 45], refresh_keys
    med = sorted(plain)[len(plain) // 2]
    spikes = sum(s > 2 * med for s in plain[1:])
    spikes_refresh = sum(s > 2 * med for s in refresh[1:])
    print(f"\nfloor rung: frames over 2x the median: keyframes every 2 s {spikes}, intra refresh "
          f"{spikes_refresh}; p95 {sorted(plain)[95]} B vs {sorted(refresh)[95]} B")
    assert spikes >= 4 and spikes_refresh <= 2

"""The bottom rung's keyframes: periodic IDR frames against x264's periodic intra refresh.

    .venv/bin/python -m bench.intrarefresh [--frames 200]

Encodes the simulator's scene as the ladder's bottom rung (640x360, 10 fps, 250 kbit/s,
VBV over 0.25 s, the relay's x264 settings) twice — with a keyframe every 2 s, and with
``intra-refresh=1`` (a column of intra blocks sweeping the picture instead) — and prints
the frame sizes: a keyframe several times the median frame is what freezes a viewer on
a 300 kbit/s link. Also checks that a forced keyframe (a switch, a new viewer) is still an
IDR picture with intra refresh, and whether libavcodec flags the refresh's recovery points
as keyframes (the relay's GOP cache and joins take a flagged frame for an IDR).
"""

from __future__ import annotations

import argparse
import fractions

import av

from drone_sim.scene import Scene
from relay.sources.h264 import has_nal


def idr(data: bytes) -> bool:
    return has_nal(data, 5)  # an IDR slice


def encode(frames: int, refresh: bool) -> None:
    scene = Scene(640, 360)
    ctx = av.CodecContext.create("libx264", "w")
    params = ("keyint=20:min-keyint=20:scenecut=0:repeat-headers=1:bframes=0:aud=0:"
              "vbv-maxrate=250:vbv-bufsize=62")
    ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline",
                   "x264-params": params + (":intra-refresh=1" if refresh else "")}
    ctx.width, ctx.height, ctx.pix_fmt = 640, 360, "yuv420p"
    ctx.time_base, ctx.framerate = fractions.Fraction(1, 90000), fractions.Fraction(10, 1)
    ctx.bit_rate, ctx.thread_count = 250_000, 1
    ctx.open()
    forced = frames // 2 + 5
    sizes: list[int] = []
    flagged = idrs = 0
    forced_idr = False
    for i in range(frames):
        frame = av.VideoFrame.from_ndarray(scene.render(i * 3, t=i / 10), format="yuv420p")
        frame.pts, frame.time_base = i * 9000, ctx.time_base
        if i == forced:
            frame.pict_type = av.video.frame.PictureType.I
        for p in ctx.encode(frame):
            data = bytes(p)
            sizes.append(len(data))
            flagged += bool(p.is_keyframe)
            idrs += idr(data)
            forced_idr |= i == forced and idr(data)
    s = sorted(sizes)
    med = s[len(s) // 2]
    name = "intra refresh" if refresh else "keyframes/2 s"
    print(f"{name:14} max {max(s):5d} B  p95 {s[int(0.95 * len(s))]:5d} B  "
          f"median {med:5d} B  frames > 2x median {sum(x > 2 * med for x in s):3d}  "
          f"flagged keyframe {flagged:3d}  IDR {idrs:3d}  forced -> IDR {forced_idr}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=200)
    args = ap.parse_args()
    encode(args.frames, refresh=False)
    encode(args.frames, refresh=True)


if __name__ == "__main__":
    main()

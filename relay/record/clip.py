"""Cut a clip from recorded segments: keyframe-aligned, concatenated without re-encoding.

The clip starts at the last keyframe at or before the asked start (so its first picture
decodes) and ends at the asked end. Segments are placed on one timeline by their wall-clock
starts, so a gap in the record stays a gap in the clip. A segment still being written is
read up to its last complete fragment.
"""

from __future__ import annotations

import contextlib
import fractions
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
from av.bitstream import BitStreamFilterContext

from .writer import parameter_sets

__all__ = ["ClipInfo", "ClipPart", "cut_clip"]

TIME_BASE = fractions.Fraction(1, 90000)


@dataclass(frozen=True)
class ClipPart:
    path: Path
    start_ms: int  # the segment's wall-clock start


@dataclass
class ClipInfo:
    start_ms: int = 0  # wall clock of the clip's first frame
    end_ms: int = 0
    frames: int = 0
    segments: int = 0


def _packets(part: ClipPart) -> tuple[list[tuple[int, bool, bytes]], tuple[int, int]]:
    """(wall ms, keyframe, Annex-B data) of every readable packet of a segment, and its size.

    MP4 holds length-prefixed NAL units; a new MP4 muxer takes them back only as Annex-B
    (with SPS/PPS in band), which ``h264_mp4toannexb`` gives."""
    out: list[tuple[int, bool, bytes]] = []
    size = (0, 0)
    with contextlib.suppress(av.FFmpegError), av.open(str(part.path)) as c:
        st = c.streams.video[0]
        size = (st.codec_context.width, st.codec_context.height)
        tb = float(st.time_base or TIME_BASE)
        bsf = BitStreamFilterContext("h264_mp4toannexb", st)
        first: int | None = None
        for pkt in c.demux(st):
            if pkt.pts is None or pkt.size == 0:
                continue
            first = pkt.pts if first is None else first
            wall = part.start_ms + round((pkt.pts - first) * tb * 1000)
            for q in bsf.filter(pkt):
                out.append((wall, bool(q.is_keyframe), bytes(q)))
    return out, size


def cut_clip(parts: list[ClipPart], start_ms: int, end_ms: int, out_path: Path) -> ClipInfo:
    """Write the clip [start_ms, end_ms] to ``out_path`` (MP4, moov first); info of what it holds."""
    info = ClipInfo()
    chosen: list[tuple[int, bool, bytes]] = []
    size: tuple[int, int] | None = None
    for part in sorted(parts, key=lambda p: p.start_ms):
        pkts, part_size = _packets(part)
        if not pkts:
            continue
        if size is not None and part_size != size:
            break  # the picture size changed (a new publisher): the clip ends here
        used = False
        for wall, key, data in pkts:
            if wall > end_ms:
                break
            if wall < start_ms:
                if key:
                    chosen = [(wall, key, data)]  # restart at the latest keyframe before the start
                elif chosen:
                    chosen.append((wall, key, data))
                used = used or bool(chosen)
                continue
            if not chosen and not key:
                continue  # no keyframe yet: these would not decode
            chosen.append((wall, key, data))
            used = True
        if used:
            info.segments += 1
            size = size or part_size
    if not chosen:
        return info
    with av.open(str(out_path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        ost = out.add_stream("h264", rate=30)
        assert size is not None
        ost.width, ost.height = size
        ost.time_base = TIME_BASE
        config = parameter_sets(chosen[0][2])
        if config:
            ost.codec_context.extradata = config
        base = chosen[0][0]
        last = -1
        for wall, key, data in chosen:
            pts = max(last + 1, (wall - base) * 90)
            packet: Any = av.Packet(data)
            packet.pts = packet.dts = pts
            packet.time_base = TIME_BASE
            packet.stream = ost
            packet.is_keyframe = key
            out.mux(packet)
            last = pts
    info.start_ms, info.end_ms, info.frames = chosen[0][0], chosen[-1][0], len(chosen)
    return info

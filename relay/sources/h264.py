"""H.264 plumbing shared by the sources: FLV/AVC → Annex-B, SPS/PPS for keyframes, and
passthrough units (the source's own packets, re-timed to 90 kHz, ready for aiortc)."""

from __future__ import annotations

import fractions
import logging
import time
from typing import Any

import av

from ..media import Unit, now

__all__ = [
    "START",
    "AvcToAnnexB",
    "FrameAssembler",
    "PassthroughClock",
    "annexb_config",
    "flv_codec_name",
    "has_nal",
    "length_prefixed",
    "sized_units",
]

log = logging.getLogger("relay.source")
START = b"\x00\x00\x00\x01"
TIME_BASE = fractions.Fraction(1, 90000)


def has_nal(data: bytes, nal_type: int) -> bool:
    """Whether an Annex-B access unit contains a NAL unit of ``nal_type`` (7 = SPS)."""
    i = data.find(b"\x00\x00\x01")
    while i != -1 and i + 3 < len(data):
        if data[i + 3] & 0x1F == nal_type:
            return True
        i = data.find(b"\x00\x00\x01", i + 3)
    return False


def annexb_config(extradata: bytes | None) -> bytes:
    """SPS/PPS from a decoder's extradata, in Annex-B form (converted from avcC if needed)."""
    if not extradata:
        return b""
    if extradata[:1] == b"\x01":  # avcC
        conv = AvcToAnnexB()
        conv._config(extradata)
        return conv.sps_pps
    return extradata


def length_prefixed(data: bytes, n: int) -> list[bytes]:
    """The NAL units of an AVCC/HVCC sample (each after an ``n``-byte big-endian length);
    a truncated one ends the list (what was whole is kept)."""
    out, i = [], 0
    while i + n <= len(data):
        size = int.from_bytes(data[i:i + n], "big")
        i += n
        if size == 0 or i + size > len(data):
            break
        out.append(data[i:i + size])
        i += size
    return out


def sized_units(rec: bytes, i: int, count: int) -> tuple[list[bytes], int, bool]:
    """``count`` units from ``rec[i:]``, each after a 2-byte big-endian length (the parameter
    sets of an avcC/hvcC record): (units, the index after them, whether all were whole)."""
    out: list[bytes] = []
    for _ in range(count):
        if i + 2 > len(rec):
            return out, i, False
        size = int.from_bytes(rec[i:i + 2], "big")
        out.append(rec[i + 2:i + 2 + size])
        i += 2 + size
    return out, i, True


# FLV's legacy video codec ids, and Enhanced RTMP's FourCCs (the header's high bit set).
FLV_CODECS = {2: "Sorenson H.263", 3: "Screen video", 4: "On2 VP6", 5: "On2 VP6 with alpha",
              6: "Screen video 2", 12: "H.265 (FLV codec id 12)", 13: "AV1 (FLV codec id 13)"}
FOURCCS = {b"hvc1": "H.265 (Enhanced RTMP hvc1)", b"av01": "AV1 (Enhanced RTMP av01)",
           b"vp09": "VP9 (Enhanced RTMP vp09)", b"avc1": "H.264 in Enhanced RTMP (avc1)"}


def flv_codec_name(body: bytes) -> str:
    """What a video tag carries, for a person (a log line, the API, the slate)."""
    if body[0] & 0x80:
        fourcc = bytes(body[1:5])
        return FOURCCS.get(fourcc, f"Enhanced RTMP {fourcc.decode('ascii', 'replace')!r}")
    codec_id = body[0] & 0x0F
    return FLV_CODECS.get(codec_id, f"FLV codec id {codec_id}")


class AvcToAnnexB:
    """FLV/AVC video tag bodies → Annex-B access units (SPS/PPS before each keyframe)."""

    def __init__(self) -> None:
        self.length_size = 4
        self.sps_pps = b""
        self.ignored_codecs: set[int] = set()
        self.unsupported = ""  # the last video codec we could not take, said for people

    def feed(self, body: bytes) -> tuple[bytes, bool] | None:
        if len(body) < 5:
            return None
        frame_type, codec_id = body[0] >> 4, body[0] & 0x0F
        if body[0] & 0x80 or codec_id != 7:  # enhanced RTMP / HEVC / DJI's id 12: not AVC
            self.ignored_codecs.add(codec_id)
            self.unsupported = flv_codec_name(body)
            return None
        kind = body[1]
        data = body[5:]
        if kind == 0:
            self._config(data)
            return None
        if kind != 1:
            return None
        nals = length_prefixed(data, self.length_size)
        if not nals:
            return None
        has_sps = any((nal[0] & 0x1F) == 7 for nal in nals)
        key = frame_type == 1
        au = b"".join(START + nal for nal in nals)
        if key and not has_sps and self.sps_pps:
            au = self.sps_pps + au
        return au, key

    def _config(self, rec: bytes) -> None:
        if len(rec) < 7:
            return
        self.length_size = (rec[4] & 0x03) + 1
        out: list[bytes] = []
        i = 6
        for count_mask in (0x1F, 0xFF):
            units, i, whole = sized_units(rec, i, rec[i - 1] & count_mask)
            if not whole:
                return
            out += units
            i += 1  # the PPS count byte
        self.sps_pps = b"".join(START + u for u in out)



def _first_slice_starts_frame(au: bytes) -> bool | None:
    """For the first VCL NAL (types 1, 5) of an access unit: does it start a picture?

    The slice header begins with first_mb_in_slice as ue(v): a leading 1 bit means 0.
    None when the unit has no VCL NAL (only SPS/PPS/SEI).
    """
    i = au.find(b"\x00\x00\x01")
    while i != -1 and i + 4 < len(au):
        nal_type = au[i + 3] & 0x1F
        if nal_type in (1, 5):
            return bool(au[i + 4] & 0x80)
        i = au.find(b"\x00\x00\x01", i + 3)
    return None


class FrameAssembler:
    """One access unit per decode, even when a sender splits a frame over several RTMP
    messages (seen with DJI apps). Well-behaved streams pass straight through; once a
    message continues a frame (its first slice does not start at macroblock 0), this
    publisher's units are assembled by timestamp instead — one frame of delay, for that
    stream only."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.split = False
        self._pending: list[bytes] = []
        self._pending_key = False
        self._pending_ts: int | None = None

    def push(self, au: bytes, key: bool, timestamp: int) -> list[tuple[bytes, bool, int]]:
        """Whole frames as (access unit, keyframe, FLV timestamp in ms)."""
        starts = _first_slice_starts_frame(au)
        if not self.split:
            if starts is False:
                self.split = True
                log.warning("frames split across RTMP messages: assembling them "
                            "(+1 frame of delay for this stream)", extra={"stream": self.stream})
                self._pending, self._pending_key, self._pending_ts = [au], key, timestamp
                return []
            return [(au, key, timestamp)]
        out: list[tuple[bytes, bool, int]] = []
        new_frame = timestamp != self._pending_ts or starts is True
        if self._pending and new_frame:
            out.append((b"".join(self._pending), self._pending_key, self._pending_ts or 0))
            self._pending, self._pending_key = [], False
        self._pending.append(au)
        self._pending_key |= key
        self._pending_ts = timestamp
        return out


class PassthroughClock:
    """Turns source packets into passthrough units: Annex-B, SPS/PPS before keyframes,
    90 kHz timestamps that keep increasing across reconnects and source clock jumps."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self._base = 0
        self._last = -1
        self._src0: float | None = None
        self._warned_bframes = False

    def unit(self, data: bytes, keyframe: bool, src_seconds: float | None, config: bytes,
             arrived: float, dts_differs: bool = False) -> Unit:
        if dts_differs and not self._warned_bframes:
            self._warned_bframes = True
            log.warning("source has B-frames: passthrough viewers may stutter; use transcode",
                        extra={"stream": self.stream})
        if keyframe and config and not has_nal(data, 7):
            data = config + data
        if src_seconds is None:
            src_seconds = arrived
        if self._src0 is None:
            self._src0 = src_seconds
        pts = self._base + int((src_seconds - self._src0) * 90000)
        if pts <= self._last or (pts > self._last + 90000 * 5 and self._last >= 0):
            # backwards or a big jump (reconnect, wrap): continue one frame after the last
            self._base = self._last + 3000
            self._src0 = src_seconds
            pts = self._base
        self._last = pts
        packet: Any = av.Packet(data)
        packet.pts = pts
        packet.dts = pts
        packet.time_base = TIME_BASE
        unit = Unit(packet, keyframe, {"arrival": arrived}, int(time.time() * 1000))
        unit.timeline["encoded"] = now()
        return unit

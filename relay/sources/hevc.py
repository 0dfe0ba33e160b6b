"""H.265 in RTMP → Annex-B access units: Enhanced RTMP (``hvc1`` FourCC) and the legacy FLV
codec id 12 that many encoders (DJI among them) use. Decoded once and transcoded to the
H.264 ladder for browsers; the source's own H.265 is not forwarded to H.264 viewers."""

from __future__ import annotations

from .h264 import length_prefixed, sized_units

__all__ = ["HvcToAnnexB", "is_hevc"]

START = b"\x00\x00\x00\x01"
PARAMETER_SETS = (32, 33, 34)  # VPS, SPS, PPS


def is_hevc(body: bytes) -> bool:
    """Whether an FLV video tag body carries H.265."""
    if len(body) < 5:
        return False
    if body[0] & 0x80:
        return bytes(body[1:5]) == b"hvc1"
    return body[0] & 0x0F == 12


class HvcToAnnexB:
    """FLV/HEVC video tag bodies → (Annex-B access unit, keyframe, composition offset ms),
    the parameter sets (VPS/SPS/PPS) before each keyframe that lacks them."""

    def __init__(self) -> None:
        self.length_size = 4
        self.params = b""

    def feed(self, body: bytes) -> tuple[bytes, bool, int] | None:
        if len(body) < 5:
            return None
        if body[0] & 0x80:  # Enhanced RTMP: [1|frame type:3|packet type:4] FourCC ...
            frame_type, packet_type = (body[0] >> 4) & 0x07, body[0] & 0x0F
            if bytes(body[1:5]) != b"hvc1":
                return None
            if packet_type == 0:  # SequenceStart: the HEVCDecoderConfigurationRecord
                self._config(body[5:])
                return None
            if packet_type == 1:  # CodedFrames: a composition time offset, then NAL units
                cts, data = _s24(body[5:8]), body[8:]
            elif packet_type == 3:  # CodedFramesX: no offset
                cts, data = 0, body[5:]
            else:
                return None
        else:  # legacy codec id 12, laid out as AVC is: [frame type|12] [packet type] [cts:3]
            frame_type = body[0] >> 4
            if body[1] == 0:
                self._config(body[5:])
                return None
            if body[1] != 1:
                return None
            cts, data = _s24(body[2:5]), body[5:]
        nals = length_prefixed(data, self.length_size)
        if not nals:
            return None
        key = frame_type == 1
        au = b"".join(START + n for n in nals)
        if key and self.params and not any((n[0] >> 1) & 0x3F in PARAMETER_SETS for n in nals):
            au = self.params + au
        return au, key, cts

    def _config(self, rec: bytes) -> None:
        """hvcC (ISO/IEC 14496-15 8.3.3): 22 bytes, then arrays of parameter set NAL units."""
        if len(rec) < 23:
            return
        self.length_size = (rec[21] & 0x03) + 1
        out, i = [], 23
        for _ in range(rec[22]):
            if i + 3 > len(rec):
                break
            units, i, _whole = sized_units(rec, i + 3, int.from_bytes(rec[i + 1:i + 3], "big"))
            out += [START + u for u in units]
        self.params = b"".join(out)


def _s24(b: bytes) -> int:
    v = int.from_bytes(b[:3], "big")
    return v - (1 << 24) if v & 0x800000 else v

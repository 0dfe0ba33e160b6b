"""The stamp survives real VP8/H.264 compression at 500 kbit/s and scaling to 640x360."""

from __future__ import annotations

import av
import numpy as np
import pytest

from drone_sim.scene import Scene
from drone_sim.stamp import Stamp, crc16, decode, encode_bits, paint
from relay.pipeline.overlay import planes
from relay.pipeline.stamp import paint_relay_stamp
from tests.helpers import codec_pair


def test_crc_reference_value() -> None:
    assert crc16(b"123456789") == 0x29B1  # CRC-16/CCITT-FALSE check value


def test_bits_round_trip_exactly() -> None:
    luma = np.full((720, 1280), 90, np.uint8)
    s = Stamp(0xDEADBEEF, 1_795_000_000_123)
    paint(luma, s)
    assert decode(luma) == s
    assert len(encode_bits(s)) == 96


def test_corrupt_stamp_is_rejected() -> None:
    luma = np.full((720, 1280), 90, np.uint8)
    paint(luma, Stamp(7, 123456))
    luma[17:31, 17:31] = 255 - luma[17:31, 17:31]  # flip the first cell
    assert decode(luma) is None
    assert decode(np.zeros((360, 640), np.uint8)) is None


@pytest.mark.parametrize("codec", ["libx264", "libvpx"])
@pytest.mark.parametrize("size", [(1280, 720), (640, 360)])
def test_stamp_survives_codec_and_scaling(codec: str, size: tuple[int, int]) -> None:
    scene = Scene(1280, 720)
    enc, dec = codec_pair(codec, size)
    sent, got = {}, []
    base_ms = 1_795_000_000_000
    for i in range(60):
        img = scene.render(i, capture_ms=base_ms + i * 33)
        y, u, v = planes(img, 1280, 720)
        paint_relay_stamp(y, u, v, i, base_ms + i * 33 + 5)
        frame = av.VideoFrame.from_ndarray(img, format="yuv420p").reformat(*size)
        frame.pts = i
        sent[i] = base_ms + i * 33
        for pkt in enc.encode(frame):
            for out in dec.decode(pkt):
                gray = out.to_ndarray(format="gray")
                got.append((decode(gray), decode(gray, "relay")))
    drone_ok = [d for d, _ in got if d is not None]
    relay_ok = [r for _, r in got if r is not None]
    assert len(got) >= 50
    assert len(drone_ok) == len(got) and len(relay_ok) == len(got)
    assert all(s.capture_ms == sent[s.frame] for s in drone_ok)
    assert all(r.capture_ms == sent[r.frame] + 5 for r in relay_ok)


def test_slate_text_has_its_dark_edge_only_around_its_letters() -> None:
    """OpenCV's fonts widen with thickness: a thicker dark copy under the light text ran past
    it and the slate read "no picture for 5 s s". The edge ends where the letters end."""
    import numpy as np

    from relay.pipeline.overlay import draw_slate

    w, h = 1280, 720
    out = draw_slate(np.full((h * 3 // 2, w), 128, np.uint8), w, h, "d1", "SIGNAL LOST",
                     "d1: no picture for 5 s")
    band = out[h // 2 + 10:h // 2 + 90]  # the detail line, under the title
    light = np.nonzero((band > 200).any(axis=0))[0]
    dark = np.nonzero((band < 60).any(axis=0))[0]
    assert light.size and dark.size
    assert dark.max() <= light.max() + 4 and dark.min() >= light.min() - 4, (light.min(), light.max(),
                                                                           dark.min(), dark.max())

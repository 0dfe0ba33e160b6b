"""H.264 passthrough: the source's packets go to viewers without decode or encode."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from tests.e2e.test_ingest import StampedFfmpeg, config, free_port, stamps_advance
from tests.helpers import WhepViewer, wait_for

pytestmark = pytest.mark.usefixtures("ffmpeg_required")


async def test_passthrough_only_never_decodes_and_joins_fast(relay_factory: Any) -> None:
    port = free_port(socket.SOCK_DGRAM)
    relay = await relay_factory(config(streams={"pt1": {
        "source": f"udp://127.0.0.1:{port}", "mode": "passthrough"}}))
    # A long GOP (4 s): without the GOP cache a late viewer would wait for the next keyframe.
    pusher = StampedFfmpeg("mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316", ["-g", "120"])
    viewers: list[WhepViewer] = []
    try:
        entry = relay.entry("pt1")
        await wait_for(lambda: entry.state.value == "live", 15, "passthrough stream live")
        first = WhepViewer(relay.url, "pt1")  # default rendition of a passthrough stream: source
        viewers.append(first)
        await first.start()
        await stamps_advance(first, timeout=20)
        doc = (await relay.streams())["pt1"]
        assert doc["mode"] == "passthrough" and doc["encoders"] == 0
        assert [r["name"] for r in doc["renditions"]] == ["source"]
        assert (doc["width"], doc["height"]) == (640, 360)  # known without decoding
        assert entry.frames_in == 0, "passthrough-only: the relay decoded nothing"
        # A late joiner mid-GOP gets a picture from the cached GOP, not after the next keyframe:
        # its first picture was captured before it asked (a keyframe after the join would
        # carry a later capture time), whatever the load.
        source = entry.passthrough
        assert source is not None
        await wait_for(lambda: source.gop_cached >= 30, 10, "a second of the GOP cached")
        late = WhepViewer(relay.url, "pt1", rendition="source")
        viewers.append(late)
        asked_ms = time.time() * 1000
        await late.start()
        await stamps_advance(late, n=20)
        first_capture = late.seen.stamps[0][0].capture_ms
        assert first_capture < asked_ms - 500, (first_capture, asked_ms)
        # A transcoded rendition does not exist in passthrough mode.
        with pytest.raises(AssertionError, match="404"):
            await WhepViewer(relay.url, "pt1", rendition="low").start()
    finally:
        for v in viewers:
            await v.close()
        pusher.kill()


async def test_both_modes_side_by_side_and_slate_for_passthrough(relay_factory: Any) -> None:
    port = free_port(socket.SOCK_DGRAM)
    relay = await relay_factory(config(streams={"pt2": {
        "source": f"udp://127.0.0.1:{port}", "mode": "both"}}))
    url = f"udp://127.0.0.1:{port}?pkt_size=1316"
    pusher = StampedFfmpeg("mpegts", url)
    src = WhepViewer(relay.url, "pt2", rendition="source")
    low = WhepViewer(relay.url, "pt2", rendition="low")
    try:
        entry = relay.entry("pt2")
        await wait_for(lambda: entry.state.value == "live", 15, "stream live")
        await src.start()
        await low.start()
        await stamps_advance(src)
        await stamps_advance(low)
        assert (await relay.streams())["pt2"]["encoders"] == 1  # only the transcoded one
        # Signal lost: the passthrough viewer keeps its session and gets the slate too.
        pusher.kill()
        await wait_for(lambda: entry.state.value == "lost", 10, "lost")
        n = src.seen.frames
        await src.wait_frames(n + 3, timeout=6)
        pusher = StampedFfmpeg("mpegts", url)
        await wait_for(lambda: entry.state.value == "live", 15, "back")
        await stamps_advance(src)  # source packets again, same session
        await stamps_advance(low)
        stats = relay.services.whep
        assert any(v.rendition == "source" for v in relay.viewers("pt2").values()) and stats is not None
        book = entry.latency.summary()
        assert "source" in book and book["source"]["relay_ms"]["p50"] is not None
    finally:
        await src.close()
        await low.close()
        pusher.kill()

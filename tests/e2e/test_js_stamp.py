"""viewer/stamp.js reads stamps from frames that went through real H.264/VP8 and scaling."""

from __future__ import annotations

import base64

import av
import cv2
import pytest

from drone_sim.scene import Scene
from relay.pipeline.overlay import planes
from relay.pipeline.stamp import paint_relay_stamp
from tests.browser import chromium
from tests.helpers import RelayHandle, codec_pair

pytestmark = [pytest.mark.browser,
              pytest.mark.usefixtures("chromium_required")]

BASE_MS = 1_795_000_000_000


def compressed_frames(codec: str, size: tuple[int, int], n: int = 24) -> list[tuple[str, int]]:
    """PNG data URLs of decoded frames, with the frame number each should carry."""
    scene = Scene(1280, 720)
    enc, dec = codec_pair(codec, size)
    out = []
    for i in range(n):
        img = scene.render(i, capture_ms=BASE_MS + i * 33)
        y, u, v = planes(img, 1280, 720)
        paint_relay_stamp(y, u, v, i, BASE_MS + i * 33 + 7)
        f = av.VideoFrame.from_ndarray(img, format="yuv420p").reformat(*size)
        f.pts = i
        for pkt in enc.encode(f):
            for frame in dec.decode(pkt):
                ok, png = cv2.imencode(".png", frame.to_ndarray(format="bgr24"))
                assert ok
                out.append(("data:image/png;base64," + base64.b64encode(png.tobytes()).decode(),
                            int(frame.pts)))
    return out


JS = """async (urls) => {
  const m = await import('/static/stamp.js');
  const r = new m.StampReader();
  const out = [];
  for (const u of urls) {
    const im = new Image(); im.src = u; await im.decode();
    out.push([r.read(im, im.naturalWidth, im.naturalHeight, 'drone'),
              r.read(im, im.naturalWidth, im.naturalHeight, 'relay')]);
  }
  return out;
}"""


async def test_js_decoder_round_trips(relay: RelayHandle) -> None:
    cases = [(c, s) for c in ("libx264", "libvpx") for s in ((1280, 720), (640, 360))]
    async with chromium() as ctx:
        page = await ctx.new_page()
        await page.goto(f"{relay.url}/")
        for codec, size in cases:
            frames = compressed_frames(codec, size)
            assert len(frames) >= 20
            got = await page.evaluate(JS, [u for u, _ in frames])
            for (drone, relay_stamp), (_, pts) in zip(got, frames, strict=True):
                assert drone is not None, f"{codec} {size}: drone stamp unreadable"
                assert relay_stamp is not None, f"{codec} {size}: relay stamp unreadable"
                assert drone["frame"] == pts and drone["captureMs"] == BASE_MS + pts * 33
                assert relay_stamp["captureMs"] == BASE_MS + pts * 33 + 7
        # A frame without a stamp reads as nothing, not as garbage.
        blank = await page.evaluate("""async () => {
          const m = await import('/static/stamp.js');
          const c = document.createElement('canvas'); c.width = 640; c.height = 360;
          const g = c.getContext('2d'); g.fillStyle = '#777'; g.fillRect(0, 0, 640, 360);
          return new m.StampReader().read(c, 640, 360, 'drone');
        }""")
        assert blank is None


async def test_a_figure_that_could_not_be_is_counted_never_shown(relay: RelayHandle) -> None:
    """viewer/whep.js: a picture shown before it was captured (below zero), or a stamp read
    from the pixels with a capture time after the relay received the frame (the canvas already
    held the next frame), is a misread: counted, never the figure (the wall once read "age 0
    ms", a negative figure clamped, on a feed whose pixels were read one frame late)."""
    async with chromium() as ctx:
        page = await ctx.new_page()
        await page.goto(f"{relay.url}/")
        got = await page.evaluate("""async () => {
          const { WhepPlayer } = await import('/static/whep.js');
          const p = new WhepPlayer(document.createElement('video'), 'x', { readStamps: false });
          const out = [];
          p._record(-20, 'glass-to-glass', 'rtp', 1000);             // before capture
          out.push([p.stats.latency, p.stats.misread]);
          p._fromRtp(10_000, [9_950, null, 0], { captureMs: 9_960 }); // captured after arrival
          out.push([p.stats.latency, p.stats.misread]);
          p._fromRtp(10_000, [9_950, null, 0], { captureMs: 9_900 }); // a true reading
          out.push([p.stats.latency, p.stats.misread, p.stats.kind]);
          return out;
        }""")
    assert got == [[None, 1], [None, 2], [100, 2, "glass-to-glass"]], got


async def test_the_hud_says_why_the_picture_is_reduced_in_a_commanders_words(relay: RelayHandle) -> None:
    """viewer/view.js: the ABR's reason ("down: loss 8 %", "down: decoding 13 of 30 fps") is a
    technician's; the HUD's folded line says "picture reduced: weak link" or "...: this device
    cannot keep up", and nothing while the picture is the one asked for."""
    async with chromium() as ctx:
        page = await ctx.new_page()
        await page.goto(f"{relay.url}/view/nostream")
        await page.wait_for_function("typeof window.__plainWords === 'function'")
        said = await page.evaluate("""() => [
          {auto: true, renditionReason: "down: loss 8 %, NACKs 12 % of packets"},
          {auto: true, renditionReason: "down: decoding 13 of 30 fps"},
          {auto: true, renditionReason: "up: clean for 8 s"},
          {auto: false, renditionReason: "chosen"},
        ].map(window.__plainWords)""")
        shown = await page.evaluate("getComputedStyle(document.getElementById('plain')).display")
    assert said == ["picture reduced: weak link", "picture reduced: this device cannot keep up", "", ""], said
    assert shown == "none"  # (empty: no line at all)

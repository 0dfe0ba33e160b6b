"""The record follows: a vehicle's sealed files go to the centre when the uplink has room.

The vehicle records at full quality (signed, hash-chained manifests). In the background,
each stream's manifest lines the centre does not hold yet are sent in order, each with the
file it seals (``PUT /api/mirror/<stream>/<seq>``; the centre verifies every one against
the vehicle's key and chain before keeping it). It starts where the centre says it stands
(``GET /api/mirror/<stream>``), so a drop, a restart or a 30-minute outage resumes at the
next line and nothing is sent twice.

Rate: at most ``forward_backfill_kbps``; while the stream is forwarded live on "auto",
only what the link shows beyond the live stream (half the gap between the estimate and
what live sends), and nothing at all while live is below its top rung or stepped down in
the last 10 s: the live picture always comes first.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from ..config import StreamConfig
from ..record import RecordService
from ..record.chain import read_lines
from ..record.layout import MANIFEST
from .forward import Forwarder
from .peerhttp import Backoff, Refused, SaidOnce, read_json, read_text, ssl_for

__all__ = ["Backfill"]

log = logging.getLogger("relay.forward")
CHUNK = 16 * 1024
FILE_KINDS = ("segment", "snapshot", "telemetry")
QUIET_AFTER_DOWN_S = 10.0


def mirror_base(forward_url: str) -> str:
    """The centre's mirror API, from the WHIP URL the stream is forwarded to."""
    p = urlsplit(forward_url)
    return f"{p.scheme}://{p.netloc}/api/mirror"


class Backfill:
    """One stream's record to one centre."""

    def __init__(self, record: RecordService, sc: StreamConfig, forwarder: Forwarder) -> None:
        self.record = record
        self.sc = sc
        self.forwarder = forwarder
        self.base = f"{mirror_base(forwarder.url)}/{sc.name}"
        self.max_kbps = float(sc.forward_backfill_kbps)
        self.state = "idle"  # idle (all sent), sending, paused (live needs the link), unreachable, refused
        self.centre_seq = 0  # what the centre holds
        self.local_seq = 0  # what this relay's manifest holds
        self.lines_sent = self.bytes_sent = 0
        self.paused_s = 0.0
        self.last_error = ""
        self.caught_up_at: float | None = None
        self._told = SaidOnce(log, "record refused by the centre")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.sc.forward_token}"}

    async def run(self) -> None:
        network, refused = Backoff(1.0, 5.0), Backoff(5.0, 120.0)
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    sent = await self._round(http)
                    self.last_error = ""
                    network.reset()
                    refused.reset()
                    await asyncio.sleep(0.5 if sent else 2.0)
                except Refused as exc:
                    self._refused(exc)
                    await asyncio.sleep(refused.take())
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    self.state, self.last_error = "unreachable", f"{type(exc).__name__}: {exc}"[:200]
                    await asyncio.sleep(network.take())
                except Exception as exc:  # anything else: said once per kind, and tried again
                    self._refused(Refused(0, f"unexpected {type(exc).__name__}: {exc}"[:200]))
                    await asyncio.sleep(refused.take())

    def _refused(self, exc: Refused) -> None:
        self.state, self.last_error = "refused", str(exc)
        self._told.refused(exc, stream=self.sc.name, url=self.base)

    async def _round(self, http: aiohttp.ClientSession) -> int:
        """Send what the centre lacks, in order; returns the lines sent."""
        lines = [ln for ln in read_lines(self.record.root / self.sc.name / MANIFEST) if ln.doc is not None]
        self.local_seq = int(lines[-1].doc.get("seq", 0)) if lines and lines[-1].doc else 0
        async with http.get(self.base, headers=self.headers, ssl=ssl_for(self.sc),
                            timeout=aiohttp.ClientTimeout(total=10)) as resp:
            if resp.status != 200:
                raise Refused(resp.status, (await read_text(resp, 4096)).strip()[:200])
            doc = await read_json(resp, 4096)
            seq = doc.get("seq") if isinstance(doc, dict) else None
            if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
                raise Refused(502, "the centre's answer has no seq")
            self.centre_seq = seq
        todo = [ln for ln in lines if ln.doc is not None and int(ln.doc.get("seq", 0)) > self.centre_seq]
        if not todo:
            if self.state != "idle":
                self.caught_up_at = time.time()
            self.state = "idle"
            return 0
        for line in todo:
            assert line.doc is not None
            await self._send(http, int(line.doc["seq"]), line.raw, line.doc)
        return len(todo)

    async def _send(self, http: aiohttp.ClientSession, seq: int, raw: bytes, doc: dict[str, Any]) -> None:
        headers = {**self.headers, "X-Manifest-Line": base64.b64encode(raw).decode(),
                   "Content-Type": "application/octet-stream"}
        body = b""
        if doc.get("kind") in FILE_KINDS:
            path = self.record.root / str(doc.get("file"))
            try:
                body = await asyncio.get_running_loop().run_in_executor(None, Path(path).read_bytes)
            except OSError:
                headers["X-File-Gone"] = "1"  # retention took it first; its deletion line follows
        headers["Content-Length"] = str(len(body))
        async with http.put(f"{self.base}/{seq}", data=self._paced(body), headers=headers,
                            ssl=ssl_for(self.sc),
                            timeout=aiohttp.ClientTimeout(total=None, sock_read=60)) as resp:
            if resp.status not in (200, 201):
                raise Refused(resp.status, (await read_text(resp, 4096)).strip()[:200])
        self.centre_seq = seq
        self.lines_sent += 1
        self.bytes_sent += len(body)

    async def _paced(self, body: bytes) -> AsyncIterator[bytes]:
        """The body in chunks, no faster than the room the link has (waiting while it has none)."""
        for i in range(0, len(body), CHUNK):
            chunk = body[i:i + CHUNK]
            while True:
                kbps = self.room_kbps()
                if kbps > 0:
                    break
                self.state = "paused"
                self.paused_s += 0.25
                await asyncio.sleep(0.25)
            self.state = "sending"
            yield chunk
            await asyncio.sleep(len(chunk) * 8 / 1000 / kbps)

    def room_kbps(self) -> float:
        """What the backfill may use now (0: the live stream needs the link)."""
        adapter = self.forwarder.adapter
        viewer = self.forwarder.viewer
        if viewer is None or adapter is None:
            return self.max_kbps  # nothing live to protect, or a fixed rung (its link known good)
        ctl = adapter.ctl
        top = max(ctl.ladder, key=lambda r: r.kbps).name
        recent_down = any(s["to"] != top and time.time() - s["t"] < QUIET_AFTER_DOWN_S
                          for s in viewer.info.switches[-3:])
        if ctl.current != top or recent_down:
            return 0.0
        estimate = ctl.estimate_kbps
        if estimate is None:
            return 0.25 * self.max_kbps
        return max(0.0, min(self.max_kbps, 0.5 * (estimate - ctl.sent_kbps)))

    def status(self) -> dict[str, Any]:
        self.local_seq = max(self.local_seq, self.record.chain(self.sc.name).length)  # (sealed since)
        return {"state": self.state, "centre_seq": self.centre_seq, "local_seq": self.local_seq,
                "behind": max(0, self.local_seq - self.centre_seq), "lines_sent": self.lines_sent,
                "bytes_sent": self.bytes_sent, "paused_s": round(self.paused_s, 1),
                "room_kbps": round(self.room_kbps()), "last_error": self.last_error or None}


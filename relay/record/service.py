"""The incident record for every stream: recorders fed from the hub, the signed manifests,
retention, the free-space floor, snapshots and the audit log.

A recorder is a reader of the hub like any viewer (its own bounded queue): the source's
H.264 where the publisher sends H.264 (no re-encode), the top transcoded rendition
otherwise. It never slows the live path; what it cannot keep up with is dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import av

from ..aio import within
from ..config import Config
from ..registry import Entry, Registry
from .chain import Chain, Signer, load_public_key
from .layout import MANIFEST, MARKERS, SEGMENT_NAME, SNAPSHOT_NAME, file_time_ms, iso, snapshot_path
from .mirror import MIRRORS, Mirror, Replays
from .recorder import Segment, StreamRecorder
from .retention import Held, plan_deletions
from .verify import verify_chain
from .writer import Sealed, SegmentWriter, file_sha256

__all__ = ["RecordService", "Segment", "StreamRecorder"]  # (the last two: .recorder)

log = logging.getLogger("relay.record")
SPAN_GAP_MS = 400  # segments closer than this form one span (within a recording: one frame)


class RecordService:
    def __init__(self, config: Config, registry: Registry) -> None:
        self.config = config
        self.registry = registry
        rc = config.record
        self.root = Path(rc.dir).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        key = Path(rc.signing_key) if rc.signing_key else self.root / "signing-key.pem"
        self.signer = Signer.load(key, rc.generate_key)
        pub = self.root / "signing-key.pub.pem"
        if not pub.exists() or pub.read_bytes() != self.signer.public_pem():
            pub.write_bytes(self.signer.public_pem())
        self.audit = Chain(self.root / "audit.jsonl", self.signer)
        self.chains: dict[str, Chain] = {}
        self.index: dict[str, list[Segment]] = {}
        self.recorders: dict[str, StreamRecorder] = {}
        self.paused = ""  # why recording stopped ("" = recording)
        self.deleted = 0
        self.last_free_mb = 0.0
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        # Telemetry samples (t, JSON) collected for the segment being written, per stream.
        self._tele: dict[str, list[tuple[float, str]]] = {}
        self._tele_seq: dict[str, int] = {}
        for d in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if d.name != MIRRORS:
                self._load(d.name)
        # Vehicles' records kept here as they signed them (mirror.py); never in retention.
        self.mirrors = {v.name: Mirror(self.root, v.name, load_public_key(v.public_key))
                        for v in config.vehicles}
        self.replays = Replays(self.mirrors, {v.name: v.streams for v in config.vehicles})

    # ------------------------------------------------------------------ index & chain

    def chain(self, stream: str) -> Chain:
        c = self.chains.get(stream)
        if c is None:
            c = self.chains[stream] = Chain(self.root / stream / MANIFEST, self.signer)
        return c

    def _load(self, stream: str) -> None:
        """Read a stream's manifest; seal files a crash left unsealed (marked recovered)."""
        chain = self.chain(stream)
        from .chain import read_lines

        held: dict[str, Segment] = {}
        for line in read_lines(chain.path):
            d = line.doc or {}
            f = d.get("file")
            if not isinstance(f, str):
                continue
            if d.get("kind") in ("segment", "snapshot", "telemetry"):
                held[f] = Segment(f, int(d.get("start_ms", 0)), int(d.get("end_ms", 0)),
                                  int(d.get("size", 0)), str(d.get("kind")))
            elif d.get("kind") == "deleted":
                held.pop(f, None)
        for path in sorted((self.root / stream).glob("*/*")):
            rel = str(path.relative_to(self.root))
            if rel in held or not (SEGMENT_NAME.match(path.name) or SNAPSHOT_NAME.match(path.name)):
                continue
            seg = self._recover(stream, path)
            if seg is not None:
                held[rel] = seg
        self.index[stream] = sorted(held.values(), key=lambda s: s.start_ms)

    def _recover(self, stream: str, path: Path) -> Segment | None:
        start = file_time_ms(path.name)
        assert start is not None
        if path.suffix == ".jpg":
            return self._seal_file(stream, path, "snapshot", start, start, {"recovered": True})
        frames, duration_ms = probe(path)
        if frames == 0:
            log.warning("unsealed segment holds no frame, left aside", extra={"path": str(path)})
            return None
        log.warning("sealing a segment left open by a crash", extra={"path": str(path), "frames": frames})
        return self._seal_file(stream, path, "segment", start, start + duration_ms,
                               {"frames": frames, "recovered": True, "reason": "recovered after a crash"})

    def _seal_file(self, stream: str, path: Path, kind: str, start_ms: int, end_ms: int,
                   extra: dict[str, Any]) -> Segment:
        digest, size = file_sha256(path)
        rel = str(path.relative_to(self.root))
        self.chain(stream).append({"kind": kind, "file": rel, "sha256": digest, "size": size,
                                   "start_ms": start_ms, "end_ms": end_ms, "start": iso(start_ms),
                                   "time": iso(time.time() * 1000), **extra})
        return Segment(rel, start_ms, end_ms, size, kind)

    def _on_sealed(self, stream: str, loop: asyncio.AbstractEventLoop) -> Any:
        def sealed(s: Sealed) -> None:  # writer thread
            seg = self._seal_file(stream, s.path, "segment", s.start_ms, s.end_ms, {
                "frames": s.frames, "keyframes": s.keyframes, "width": s.width, "height": s.height,
                "reason": s.reason})
            log.info("segment sealed", extra={"stream": stream, "file": seg.file, "frames": s.frames,
                                              "bytes": seg.size, "reason": s.reason})
            loop.call_soon_threadsafe(self._add, stream, seg)

        return sealed

    def _add(self, stream: str, seg: Segment) -> None:
        self.index.setdefault(stream, []).append(seg)
        if seg.kind == "segment":
            self._seal_telemetry(stream, seg)
        self.index[stream].sort(key=lambda s: s.start_ms)
        self._wake.set()

    def collect_telemetry(self) -> None:
        """Take the samples each recorded stream's telemetry made since the last call (its
        ring holds 30 s; called every few seconds and at each sealed segment)."""
        for name in self.recorders:
            entry = self.registry.get(name)
            if entry is None:
                continue
            tele = entry.telemetry
            tele.flush()
            seq = self._tele_seq.get(name, 0)
            buf = self._tele.setdefault(name, [])
            buf.extend((t, doc) for n, t, doc in tele.recent if n > seq)
            self._tele_seq[name] = tele.seq
            if len(buf) > 20000:  # a segment of an hour at 5 Hz; beyond: the oldest go
                del buf[: len(buf) - 20000]

    def _seal_telemetry(self, stream: str, seg: Segment) -> None:
        """The telemetry track of a sealed segment, as a JSON-lines file beside it, sealed in
        the same manifest: a replayed clip shows where the drone was."""
        self.collect_telemetry()
        buf = self._tele.get(stream, [])
        lo, hi = seg.start_ms / 1000, seg.end_ms / 1000
        track = [doc for t, doc in buf if lo <= t <= hi]
        self._tele[stream] = [(t, doc) for t, doc in buf if t > hi]
        if not track:
            return
        path = self.root / (seg.file.removesuffix(".mp4") + ".telemetry.jsonl")
        try:
            path.write_text("\n".join(track) + "\n", encoding="utf-8")
            tseg = self._seal_file(stream, path, "telemetry", seg.start_ms, seg.end_ms,
                                   {"segment": seg.file, "samples": len(track)})
        except OSError as exc:
            log.error("telemetry track not written", extra={"stream": stream, "error": str(exc)})
            return
        self.index[stream].append(tseg)

    def telemetry_track(self, stream: str, from_ms: int, to_ms: int) -> list[dict[str, Any]]:
        """Recorded telemetry samples between two times (the sealed tracks, then what is
        collected for the segment being written)."""
        out: list[dict[str, Any]] = []
        for seg in self.segments(stream, from_ms, to_ms, kind="telemetry"):
            try:
                lines = (self.root / seg.file).read_text(encoding="utf-8").splitlines()
            except OSError:
                continue
            out.extend(json.loads(x) for x in lines if x)
        self.collect_telemetry()
        out.extend(json.loads(doc) for _, doc in self._tele.get(stream, []))
        lo, hi = from_ms / 1000, to_ms / 1000
        return sorted((d for d in out if lo <= d.get("t", 0) <= hi), key=lambda d: d["t"])

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._check_space()
        for entry in self.registry.entries.values():
            self.attach(entry)
        self._task = loop.create_task(self._housekeeping())

    def attach(self, entry: Entry) -> None:
        if not self.config.records(entry.name) or entry.name in self.recorders:
            return
        rc = self.config.record
        loop = asyncio.get_running_loop()
        writer = SegmentWriter(self.root, entry.name, segment_s=rc.segment_s, fragment_s=rc.fragment_s,
                               queue_frames=rc.queue_frames, on_sealed=self._on_sealed(entry.name, loop))
        rec = StreamRecorder(self, entry, writer)
        entry.listeners.append(lambda _e: rec.changed.set())
        rec.task = loop.create_task(rec.run())
        self.recorders[entry.name] = rec
        self.index.setdefault(entry.name, [])

    async def detach(self, entry: Entry) -> None:
        rec = self.recorders.pop(entry.name, None)
        if rec is None:
            return
        await self._stop_recorder(rec)

    async def _stop_recorder(self, rec: StreamRecorder) -> None:
        if rec.task is not None:
            rec.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await rec.task
        await asyncio.get_running_loop().run_in_executor(None, rec.writer.close)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for rec in tuple(self.recorders.values()):
            await self._stop_recorder(rec)
        self.recorders.clear()

    # ------------------------------------------------------------------ disk

    def _free_mb(self) -> float:
        return shutil.disk_usage(self.root).free / 1e6

    def _check_space(self) -> None:
        floor = self.config.record.min_free_mb
        free = self.last_free_mb = self._free_mb()
        if not self.paused and free < floor:
            self.paused = f"free space {free:.0f} MB below record.min_free_mb ({floor:.0f} MB)"
            log.error("recording stopped: disk nearly full (live video goes on)",
                      extra={"free_mb": round(free, 1), "min_free_mb": floor})
        elif self.paused and free >= floor * 1.1 + 1:
            log.warning("recording resumed", extra={"free_mb": round(free, 1)})
            self.paused = ""
            for rec in self.recorders.values():
                rec.changed.set()

    async def _housekeeping(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await within(5.0, self._wake.wait())
            self._wake.clear()
            self.collect_telemetry()
            try:
                await self.enforce_retention()
            except OSError as exc:
                log.error("retention failed", extra={"error": str(exc)})

    async def enforce_retention(self) -> int:
        """Delete the oldest files beyond the age and size budgets or under the free-space
        floor; each deletion is written to the stream's manifest. Returns files deleted."""
        async with self._lock:
            rc = self.config.record
            held = [Held(stream, s.file, s.start_ms, s.size)
                    for stream, segs in self.index.items() for s in segs]
            victims = plan_deletions(
                held, now_ms=int(time.time() * 1000), max_age_days=rc.max_age_days,
                max_stream_mb=rc.max_stream_mb, max_total_mb=rc.max_total_mb)
            for v in victims:
                path = self.root / v.file
                path.unlink(missing_ok=True)
                self.chain(v.stream).append({"kind": "deleted", "file": v.file, "reason": v.reason,
                                             "time": iso(time.time() * 1000)})
                self.index[v.stream] = [s for s in self.index[v.stream] if s.file != v.file]
                self.deleted += 1
                log.info("record file deleted",
                         extra={"stream": v.stream, "file": v.file, "reason": v.reason})
            self._check_space()
            return len(victims)

    # ------------------------------------------------------------------ queries

    def segments(self, stream: str, from_ms: int | None = None, to_ms: int | None = None,
                 kind: str = "segment") -> list[Segment]:
        out = [s for s in self.index.get(stream, []) if s.kind == kind]
        mirror = self.replays.mirror_for(stream)
        mirrored = [s for s in mirror.segments(stream) if s.kind == kind] if mirror is not None else []
        if mirrored:  # a vehicle's full-quality record wins over this relay's copy of its uplink
            out = [s for s in out if not any(m.start_ms < s.end_ms and s.start_ms < m.end_ms
                                             for m in mirrored)] + mirrored
            out.sort(key=lambda s: s.start_ms)
        rec = self.recorders.get(stream)
        if kind == "segment" and rec is not None and rec.writer.stats.open_path:
            st = rec.writer.stats
            out.append(Segment(str(Path(st.open_path).relative_to(self.root)), st.open_start_ms,
                               st.open_end_ms, 0, open=True))
        return [s for s in out if (from_ms is None or s.end_ms >= from_ms)
                and (to_ms is None or s.start_ms <= to_ms)]

    def spans(self, stream: str, from_ms: int | None, to_ms: int | None) -> list[dict[str, Any]]:
        spans: list[dict[str, Any]] = []
        for s in self.segments(stream, from_ms, to_ms):
            if spans and s.start_ms - spans[-1]["end_ms"] <= SPAN_GAP_MS:
                last = spans[-1]
                last["end_ms"] = max(last["end_ms"], s.end_ms)
                last["segments"] += 1
                last["bytes"] += s.size
                last["open"] = s.open
            else:
                spans.append({"start_ms": s.start_ms, "end_ms": s.end_ms, "segments": 1,
                              "bytes": s.size, "open": s.open})
        for sp in spans:
            sp["start"], sp["end"] = iso(sp["start_ms"]), iso(sp["end_ms"])
        return spans

    def streams(self) -> list[str]:
        """Every stream with a record here: its own, and those the vehicles' mirrors hold."""
        mirrored = {s for m in self.mirrors.values() for s in m.index if self.replays.mirror_for(s) is m}
        return sorted(set(self.index) | set(self.recorders) | mirrored)

    def status(self, stream: str) -> dict[str, Any]:
        rec = self.recorders.get(stream)
        if rec is None:
            return {"enabled": False}
        st = rec.writer.stats
        return {"enabled": True, "recording": bool(st.open_path), "from": rec.recording_from,
                "paused": self.paused or None, "dropped": st.dropped, "errors": st.errors,
                "segments": len(self.index.get(stream, [])), "bytes_written": st.bytes}

    # ------------------------------------------------------------------ snapshots & audit

    async def save_snapshot(self, stream: str, jpeg: bytes, who: str) -> Segment:
        if self.paused:
            raise OSError(self.paused)
        wall = int(time.time() * 1000)
        path = snapshot_path(self.root, stream, wall)

        def write() -> Segment:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(jpeg)
            return self._seal_file(stream, path, "snapshot", wall, wall, {"by": who})

        seg = await asyncio.get_running_loop().run_in_executor(None, write)
        self._add(stream, seg)
        return seg

    def marker_log(self) -> tuple[Chain, list[dict[str, Any]]]:
        """The markers' chained log and its lines that verify (a line that does not is left
        out of the markers, said once; ``verify`` names it)."""
        path = self.root / MARKERS
        findings, good = verify_chain(path, self.signer.public, MARKERS)
        if findings:
            log.error("marker log does not verify: lines left out of the markers",
                      extra={"path": str(path), "findings": len(findings), "first": str(findings[0])})
        return Chain(path, self.signer), [line.doc for line in good if line.doc is not None]

    def log_access(self, **fields: Any) -> None:
        self.audit.append({"time": iso(time.time() * 1000), **fields})

    def counters(self) -> dict[str, float]:
        stats = [r.writer.stats for r in self.recorders.values()]
        return {
            "record_frames_written": sum(s.written for s in stats),
            "record_frames_dropped": sum(s.dropped for s in stats),
            "record_bytes_written": sum(s.bytes for s in stats),
            "record_segments_sealed": sum(s.segments for s in stats),
            "record_errors": sum(s.errors for s in stats),
            "record_files_deleted": self.deleted,
        }


def probe(path: Path) -> tuple[int, int]:
    """(frames, duration in ms) of a possibly truncated MP4: the frames that can be read."""
    frames, first, last, tb = 0, None, 0, 1 / 90000
    with contextlib.suppress(av.FFmpegError, IndexError), av.open(str(path)) as c:
        st = c.streams.video[0]
        tb = float(st.time_base or 1 / 90000)
        for pkt in c.demux(st):
            if pkt.pts is None:
                continue
            frames += 1
            first = pkt.pts if first is None else first
            last = pkt.pts
    if first is None:
        return 0, 0
    return frames, int((last - first) * tb * 1000) + 33

"""Composition root: builds every part from the config. Nothing imports this module."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from .aio import PeerGone, within
from .auth import ice_servers_for
from .cascade import Forwards, WhepPull
from .cluster import Cluster
from .config import PASSTHROUGH, Config
from .dji import DjiPlatform, publish_url_for
from .egress import WhepEgress
from .egress.shed import RungShed
from .http import Services, build_routes, end_expired_shares
from .limits import Limiter
from .logs import quiet_malformed_requests
from .markers import MarkerBook, RateBook
from .metrics import metrics_renderer
from .overload import Governor, watch_loop
from .pipeline import Pipeline
from .record import RecordService
from .registry import Entry, Registry, State
from .share import ShareBook
from .sources import AvPullSource, MavlinkSource, RtmpIngest, SrtCaller, SrtIngest, WhipIngest
from .sources.feed import Feed
from .webrtc import SessionTable, install_dtls, self_check

__all__ = ["create_app"]

log = logging.getLogger("relay.app")


def create_app(config: Config) -> web.Application:
    missing = self_check()
    if missing:  # an aiortc/aioice upgrade removed a hook we rely on: say so, loudly
        raise RuntimeError(f"aiortc/aioice hooks missing: {', '.join(missing)} (see relay/webrtc/compat.py)")
    install_dtls()
    quiet_malformed_requests()
    services = _services(config)
    sources = ConfiguredSources(config, services.registry, services.pulls)
    if config.cluster.enabled:
        services.cluster = _cluster(services)
    node = services.cluster.me if services.cluster is not None else config.name
    services.metrics = metrics_renderer(services.registry, lambda: _counters(services, sources),
                                        services.whep.viewers_of, node)
    _wire_streams(services)
    app = web.Application(client_max_size=256 * 1024)
    build_routes(app, services)
    _lifecycle(app, services, sources)
    return app


def _services(config: Config) -> Services:
    """Every service, wired: a stream's keyframe requests reach its pipeline, every peer
    session (WHIP and WHEP) is in one table, the record only where something records."""
    pipelines: dict[str, Pipeline] = {}

    def keyframe_request(stream: str, rendition: str, reason: str) -> None:
        entry = registry.get(stream)
        ask = entry.slot.keyframe_upstream if entry is not None else None
        if rendition == PASSTHROUGH and ask is not None and entry is not None and entry.slot.forwards_packets:
            ask()  # the publisher's own packets: only it can make a keyframe of them
            return
        pipeline = pipelines.get(stream)
        if pipeline is not None:
            pipeline.want_key(rendition, reason)

    def ice() -> list[dict[str, Any]]:
        return ice_servers_for(config, "relay")

    registry = Registry(config, keyframes=keyframe_request)
    limiter = Limiter(config.limits)
    table = SessionTable(limiter)
    recording = config.record.enabled or any(s.record for s in config.streams)
    record = RecordService(config, registry) if recording else None
    whep = WhepEgress(registry, config, limiter=limiter, ice=ice, sessions=table)
    return Services(
        governor=Governor(config.overload.shed if config.overload.enabled else ()),
        config=config, registry=registry, limiter=limiter, pipelines=pipelines,
        whip=WhipIngest(registry, config, ice=ice, sessions=table, limiter=limiter),
        whep=whep, markers=_markers(config, record, whep), marker_rate=RateBook(config.markers.rate_per_min),
        rtmp=RtmpIngest(registry, config, limiter) if config.rtmp.enabled else None,
        shares=ShareBook(config.auth.shares_file),
        record=record,
        forwards=Forwards(registry, config, ice, record) if any(s.forward for s in config.streams) else None,
        dji=DjiPlatform(config, registry, lambda stream: publish_url_for(config, stream))
        if config.dji.enabled else None)


def _cluster(services: Services) -> Cluster:
    """This relay as a node of a cluster (its directory in Redis)."""
    whep, config = services.whep, services.config

    def share_sessions() -> dict[str, int]:
        counts: dict[str, int] = {}
        for sess in whep.sessions.values():
            p = sess.principal
            if p is not None and p.share and p.jti:
                counts[p.jti] = counts.get(p.jti, 0) + 1
        return counts

    async def end_share(share_id: str) -> int:
        return await whep.end_where(lambda s: s.principal is not None and s.principal.jti == share_id,
                                    "share link revoked")

    cluster = Cluster(config, services.registry, services.shares, services.pulls, whep.count,
                      lambda: len(whep.sessions), share_sessions, lambda: ice_servers_for(config, "relay"))
    cluster.book.end_share = end_share
    if services.markers is not None:
        cluster.book.share_markers(services.markers)
    return cluster


def _markers(config: Config, record: RecordService | None, whep: WhepEgress) -> MarkerBook | None:
    """The incident's markers, rebuilt from the signed log when the record is on; every
    viewer's channel gets them all when it opens and each change as it happens."""
    if not config.markers.enabled:
        return None
    chain, lines = record.marker_log() if record is not None else (None, [])
    book = MarkerBook(chain, config.markers.max, lines)
    whep.greetings.append(book.snapshot_message)
    book.listeners.append(whep.broadcast)
    return book


def _wire_streams(services: Services) -> None:
    """A stream that comes into being gets its pipeline (and recorder); one that goes, loses them."""
    record = services.record

    governor = services.governor

    rungs = RungShed(governor, services.config, services.whep.viewers)
    services.rung_shed = rungs

    def applies(step: str) -> bool:
        if step == "tiles_fps":  # (a wall tile must watch a transcoded rendition alone)
            return any(s.tiles_only for e in services.registry.entries.values()
                       for s in e.renditions.values())
        if step == "rungs":  # (people must watch two rungs of one stream)
            return rungs.applies()
        return True

    governor.applies = applies
    governor.on_change.append(lambda _: rungs.tick())

    def on_created(entry: Entry) -> None:
        for stream in entry.all_streams():  # every skip for age is lateness the governor hears
            stream.on_stale = governor.skipped
        entry.keyframes_only = governor.keyframes_only
        pipeline = Pipeline(entry, services.config, governor)
        services.pipelines[entry.name] = pipeline
        pipeline.start()
        if record is not None:
            record.attach(entry)

    def on_removed(entry: Entry) -> None:
        if record is not None:
            asyncio.get_running_loop().create_task(record.detach(entry))
        pipeline = services.pipelines.pop(entry.name, None)
        if pipeline is not None:
            asyncio.get_running_loop().create_task(pipeline.stop())

    services.registry.on_created.append(on_created)
    services.registry.on_removed.append(on_removed)


class ConfiguredSources:
    """The pulled video sources and MAVLink listeners the config names."""

    def __init__(self, config: Config, registry: Registry, whep: dict[str, WhepPull]) -> None:
        self.config = config
        self.registry = registry
        self.pulls: list[AvPullSource] = []
        self.whep = whep  # whep+http(s):// sources (shown in /api/streams)
        self.mavlinks: list[MavlinkSource] = []
        self.srt: SrtIngest | None = None
        self.srt_callers: list[SrtCaller] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        srt_feeds: dict[str, Feed] = {}
        for sc in self.config.streams:
            entry = self.registry.get(sc.name)
            if entry is None:
                continue
            feed = None
            if sc.srt or (sc.source or "").startswith("srt://"):
                feed = Feed(sc.name)  # SRT's datagrams, publisher by publisher, to the demuxer
                if sc.srt:  # callers publish to our listener
                    srt_feeds[sc.name] = feed
                else:  # we call
                    caller = SrtCaller(sc.source or "", feed)
                    caller.start()
                    self.srt_callers.append(caller)
            if sc.source and sc.source.startswith("whep+"):
                self.whep[sc.name] = WhepPull(entry, sc, self.config,
                                              lambda: ice_servers_for(self.config, "relay"))
                await self.whep[sc.name].start()
            elif sc.source or feed is not None:
                pull = AvPullSource(entry, sc, loop, feed)
                await pull.start()
                self.pulls.append(pull)
            if sc.telemetry:
                mav = MavlinkSource(entry, sc.telemetry, sc.allow_senders,
                                    self.config.media.signal_lost_after_s)
                await mav.start()
                self.mavlinks.append(mav)
        if self.config.srt.enabled and srt_feeds:
            self.srt = SrtIngest(self.config, srt_feeds)
            self.srt.start()

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        stops: list[Callable[[], None]] = [c.stop for c in self.srt_callers]
        if self.srt is not None:
            stops.append(self.srt.stop)
        for stop in stops:
            await loop.run_in_executor(None, stop)
        for mav in self.mavlinks:
            mav.close()
        for whep in self.whep.values():
            await _bounded(f"source {whep.sc.name}", whep.stop())
        for pull in self.pulls:
            await _bounded(f"source {pull.sc.name}", pull.stop())

    def gates(self) -> list[Any]:
        out: list[Any] = [g for p in self.pulls for g in (p.gate, p.tcp_gate) if g is not None]
        return out + list(self.mavlinks)


def _counters(services: Services, sources: ConfiguredSources) -> dict[str, float]:
    """The relay's counters for /metrics."""
    registry, whep, whip, record = services.registry, services.whep, services.whip, services.record
    out: dict[str, float] = {
        "latency_creep_resets": whep.creep_resets,
        "whip_sessions": len(whip.sessions),
        "whep_sessions": len(whep.sessions),
        "publisher_takeovers": sum(e.takeovers for e in registry.entries.values()),
        "refused_unconfigured_streams": registry.refused,
        "overload_level": float(services.governor.level),
        "overloaded": 1.0 if services.governor.level else 0.0,
        "overload_changes": float(services.governor.changes),
        "skipped_for_age": float(services.governor.skipped_total),
    }
    assert services.limiter is not None
    for what in ("offers_per_client", "sessions_per_client", "viewers_per_stream",
                 "viewers_total", "rtmp_connections", "rtmp_no_publish", "rtmp_preauth_bytes"):
        out[f"refused_{what}"] = services.limiter.refused[what]
    if services.rtmp is not None:
        out["rtmp_unsupported_codec"] = services.rtmp.unsupported_codec
        out["rtmp_not_rtmp"] = services.rtmp.bad_input
    gates = sources.gates()
    out["refused_sender_not_allowed"] = sum(g.refused_not_allowed for g in gates)
    out["refused_second_sender"] = sum(g.refused_second_sender for g in gates)
    out["telemetry_malformed"] = sum(sum(e.telemetry.malformed.values()) for e in registry.entries.values())
    if services.cluster is not None:
        out.update(services.cluster.counters())
    if record is not None:
        out.update(record.counters())
        out["record_paused"] = 1.0 if record.paused else 0.0
    return out


def _lifecycle(app: web.Application, services: Services, sources: ConfiguredSources) -> None:
    """One cleanup context per service, started in this order and stopped in the reverse
    (aiohttp runs every exit and collects the errors): a stop step that fails or hangs
    cannot keep a later one — sealing the record above all — from running."""
    registry, record, config = services.registry, services.record, services.config

    async def start_registry() -> None:
        PeerGone(asyncio.get_running_loop()).install()  # (a closed tab's library noise, counted)
        registry.start()

    async def stop_pipelines() -> None:
        for pipeline in tuple(services.pipelines.values()):
            await _bounded("pipeline", pipeline.stop())
        services.pipelines.clear()

    _service(app, "pipelines", start_registry, stop_pipelines)
    if record is not None:
        async def start_record() -> None:
            record.start()
        _service(app, "record", start_record, record.stop, timeout=30.0)
    _service(app, "whep sessions", None, lambda: services.whep.close_all())
    _service(app, "whip sessions", None, lambda: services.whip.close_all())
    _task_service(app, "liveness watchdog", registry.watch)
    _task_service(app, "overload governor", lambda: watch_loop(services.governor))
    _task_service(app, "rung shed", lambda: _every(1.0, services.rung_shed.tick))
    _task_service(app, "stream janitor", lambda: _expire_streams(registry, config, services.whep.count))
    _task_service(app, "session janitor", lambda: _end_expired(app))
    _service(app, "sources", sources.start, sources.stop)
    if services.rtmp is not None:
        _service(app, "rtmp", services.rtmp.start, services.rtmp.stop)
    if services.forwards is not None:
        _service(app, "forwards", services.forwards.start, services.forwards.stop)
    if services.cluster is not None:
        _service(app, "cluster", services.cluster.start, services.cluster.stop)
    if services.dji is not None:
        dji = services.dji

        async def start_dji() -> None:
            dji.start()
        _service(app, "dji", start_dji, dji.stop)


def _service(app: web.Application, name: str, start: Callable[[], Awaitable[None]] | None,
             stop: Callable[[], Awaitable[None]], timeout: float = 10.0) -> None:
    """A service's own cleanup context: ``start`` on start-up, ``stop`` (bounded) on shutdown."""
    async def ctx(_: web.Application) -> AsyncIterator[None]:
        if start is not None:
            await start()
        yield
        try:
            await _bounded(name, stop(), timeout)
        except Exception:
            log.exception("shutdown step failed", extra={"step": name})
            raise  # aiohttp collects it and runs the remaining steps

    app.cleanup_ctx.append(ctx)


def _task_service(app: web.Application, name: str, work: Callable[[], Awaitable[None]]) -> None:
    """A background loop that lives as long as the app."""
    task: asyncio.Task[None] | None = None

    async def start() -> None:
        nonlocal task
        task = asyncio.ensure_future(work())

    async def stop() -> None:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    _service(app, name, start, stop)


async def _bounded(step: str, work: Awaitable[Any], timeout: float = 10.0) -> None:
    """One shutdown step, given ``timeout`` seconds; a step that hangs is named in the log."""
    try:
        await within(timeout, work)
    except TimeoutError:
        log.error("shutdown step timed out", extra={"step": step, "timeout_s": timeout})


async def _every(seconds: float, step: Callable[[], None]) -> None:
    """``step()`` every ``seconds``; one that fails is logged and the loop goes on."""
    while True:
        await asyncio.sleep(seconds)
        try:
            step()
        except Exception:
            log.exception("periodic step failed", extra={"step": getattr(step, "__qualname__", "?")})


async def _end_expired(app: web.Application) -> None:
    """Every 2 s: sessions whose token expired or whose share link was revoked end."""
    while True:
        await asyncio.sleep(2.0)
        n = await end_expired_shares(app)
        if n:
            log.info("sessions ended: token or share link expired", extra={"sessions": n})


async def _expire_streams(registry: Registry, config: Config, viewers: Callable[[str], int]) -> None:
    """Forget unconfigured streams nobody uses: lost for long, or never live (a bare offer)."""
    while True:
        await asyncio.sleep(min(5.0, config.limits.waiting_expire_s / 2))
        now = time.time()
        for entry in tuple(registry.entries.values()):
            idle = now - entry.state_since
            if (
                not entry.configured
                and entry.publisher is None
                and not viewers(entry.name)
                and (
                    (entry.state is State.LOST and idle > config.media.stream_expire_s)
                    or (entry.state is State.WAITING and idle > config.limits.waiting_expire_s)
                )
            ):
                log.info("stream expired", extra={"stream": entry.name})
                registry.remove(entry.name)

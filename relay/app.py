"""Composition root: builds every part from the config. Nothing imports this module."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web

from .config import Config
from .egress import WhepEgress
from .http import Services, build_routes
from .metrics import metrics_renderer
from .pipeline import Pipeline
from .registry import Entry, Registry, State
from .sources import AvPullSource, RtmpIngest, WhipIngest
from .webrtc import use_host_addresses

__all__ = ["create_app"]

log = logging.getLogger("relay.app")


def create_app(config: Config) -> web.Application:
    use_host_addresses(config.webrtc.ice_addresses)
    registry = Registry(config)
    whip = WhipIngest(registry, config)
    whep = WhepEgress(registry, config)
    rtmp = RtmpIngest(registry, config) if config.rtmp.enabled else None
    services = Services(config=config, registry=registry, whip=whip, whep=whep, rtmp=rtmp)
    pulls: list[AvPullSource] = []
    services.metrics = metrics_renderer(registry, lambda: {
        "latency_creep_resets": whep.creep_resets,
        "whip_sessions": len(whip.sessions),
        "whep_sessions": len(whep.sessions),
    })

    def on_created(entry: Entry) -> None:
        pipeline = Pipeline(entry, config)
        services.pipelines[entry.name] = pipeline
        pipeline.start()

    def on_removed(entry: Entry) -> None:
        pipeline = services.pipelines.pop(entry.name, None)
        if pipeline is not None:
            asyncio.get_running_loop().create_task(pipeline.stop())

    registry.on_created.append(on_created)
    registry.on_removed.append(on_removed)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        registry.start()
        loop = asyncio.get_running_loop()
        janitor = loop.create_task(_expire_streams(registry, config))
        for sc in config.streams:
            entry = registry.get(sc.name)
            if sc.source and entry is not None:
                pull = AvPullSource(entry, sc, loop)
                pull.start()
                pulls.append(pull)
        if rtmp is not None:
            await rtmp.start()
        yield
        if rtmp is not None:
            await rtmp.stop()
        for pull in pulls:
            await pull.stop()
        janitor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await janitor
        await whip.close_all()
        await whep.close_all()
        for pipeline in tuple(services.pipelines.values()):
            await pipeline.stop()
        services.pipelines.clear()

    app = web.Application(client_max_size=256 * 1024)
    build_routes(app, services)
    app.cleanup_ctx.append(lifecycle)
    return app


async def _expire_streams(registry: Registry, config: Config) -> None:
    """Forget unconfigured streams that stayed lost, with nobody watching, for a long time."""
    while True:
        await asyncio.sleep(5.0)
        now = time.time()
        for entry in tuple(registry.entries.values()):
            if (
                not entry.configured
                and entry.state is State.LOST
                and entry.publisher is None
                and not entry.viewers
                and now - entry.state_since > config.media.stream_expire_s
            ):
                log.info("stream expired", extra={"stream": entry.name})
                registry.remove(entry.name)

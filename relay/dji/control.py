"""Live control of a DJI aircraft (the control role): start and stop its stream to this relay,
switch lens and quality. Each service waits for its reply; DJI's first starts often fail and
are tried again with back-off; the answer is said in words."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..config import Config
from .aircraft import PERMANENT, QUALITY, DjiError, error_words

if TYPE_CHECKING:
    from .platform import DjiPlatform

__all__ = ["live", "publish_url_for"]

log = logging.getLogger("relay.dji")


async def live(platform: DjiPlatform, stream: str, action: str, lens: str | None = None,
               quality: int | None = None) -> dict[str, Any]:
    a = platform.of_stream(stream)
    if a is None or not a.online:
        raise DjiError(409, f"no DJI aircraft online for {stream!r}")
    vid = platform.video_id(a)
    if action == "start":
        url_type, url = platform.publish_url(stream)
        q = 0 if quality is None else quality
        tries = 0
        while True:
            tries += 1
            code, _ = await platform.service(a, "live_start_push", {"url_type": url_type, "url": url,
                                                                "video_id": vid, "video_quality": q})
            if code == 0 or code % 100000 == 13003 or code % 100000 in PERMANENT or tries >= 4:
                break
            await asyncio.sleep(min(8.0, 1.0 * 2 ** (tries - 1)))  # DJI's first starts often fail
        a.live = {"video_id": vid, "state": "live" if code == 0 or code % 100000 == 13003 else "failed",
                  "quality": QUALITY.get(q, str(q)), "error": None if code == 0 else error_words(code),
                  "tries": tries}
    elif action == "stop":
        code, _ = await platform.service(a, "live_stop_push", {"video_id": vid})
        if code == 0:
            a.live = {**a.live, "state": "stopped"}
    elif action == "lens":
        if lens not in ("normal", "wide", "zoom", "ir"):
            raise DjiError(422, "lens must be normal, wide, zoom or ir")
        code, _ = await platform.service(a, "live_lens_change", {"video_id": vid, "video_type": lens})
        if code == 0:
            a.lens = lens
            log.info("DJI lens switched", extra={"serial": a.sn, "stream": stream, "lens": lens})
    elif action == "quality":
        if quality not in QUALITY:
            raise DjiError(422, "quality must be 0 (adaptive) .. 4 (UHD)")
        code, _ = await platform.service(a, "live_set_quality", {"video_id": vid, "video_quality": quality})
    else:
        raise DjiError(422, "action must be start, stop, lens or quality")
    log.info("DJI live service", extra={"serial": a.sn, "stream": stream, "action": action,
                                        "result": code})
    return {"result": code, "message": error_words(code), "aircraft": a.doc()}


def publish_url_for(config: Config, stream: str, ttl_s: float = 12 * 3600) -> tuple[int, str]:
    """(url_type, url) an aircraft pushes ``stream`` to: this relay's RTMP (1) with a publish
    token for that stream in the URL, or its WHIP endpoint (4, auth off)."""
    from ..auth import mint_token

    dji = config.dji
    host = dji.push_host or urlsplit(dji.pilot_broker or dji.broker).hostname or "127.0.0.1"
    if dji.push == "whip":
        return 4, f"{config.scheme}://{host}:{config.port}/whip/{stream}"
    token = None
    if config.auth.enabled:
        sc = config.stream(stream)
        if config.auth.jwt_secret:
            token = mint_token(config, "publisher", [stream], ttl_s, label=f"dji-{stream}")[0]
        elif sc is not None and sc.publish_token:
            token = sc.publish_token
        elif config.auth.publish_token:
            token = config.auth.publish_token
        else:
            raise DjiError(409, f"no publish token can be given to the aircraft for {stream!r} "
                                "(auth.jwt_secret, or the stream's publish_token)")
    query = f"?token={token}" if token else ""
    return 1, f"rtmp://{host}:{config.rtmp.port}/{config.rtmp.app}/{stream}{query}"

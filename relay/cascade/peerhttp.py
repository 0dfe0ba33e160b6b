"""HTTP with another relay (WHIP/WHEP offers, the record's backfill): refusals, backoff,
and answers read bounded and strictly — a peer relay may be broken, or not ours."""

from __future__ import annotations

import logging
import ssl
from typing import Any
from urllib.parse import urljoin

import aiohttp

from ..config import StreamConfig
from ..wire import json_doc, origin

__all__ = ["MAX_ANSWER", "POST_TIMEOUT", "Backoff", "Refused", "SaidOnce", "post_offer", "read_json",
           "read_text", "same_origin", "ssl_for"]

POST_TIMEOUT = aiohttp.ClientTimeout(total=8.0, connect=4.0)
MAX_ANSWER = 64 * 1024  # an SDP answer is a few KB


class Refused(Exception):
    """The other relay answered the offer with an error status."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}" if status else reason)  # 0: refused by TLS
        self.status = status
        self.reason = reason


class SaidOnce:
    """A refusal said once per reason: one retried for hours is one log line, not one a minute."""

    def __init__(self, logger: logging.Logger, message: str) -> None:
        self.logger, self.message = logger, message
        self._said: set[str] = set()

    def refused(self, exc: Refused, **extra: Any) -> None:
        key = f"{exc.status} {exc.reason}"
        if key not in self._said:
            self._said.add(key)
            self.logger.warning(self.message, extra={**extra, "status": exc.status, "reason": exc.reason})


class Backoff:
    """Growing delays: short while the link is down (it comes back; the centre's viewers
    wait), long when the other relay refuses (a wrong token does not fix itself)."""

    def __init__(self, first: float, cap: float) -> None:
        self.first, self.cap = first, cap
        self.next = first

    def take(self) -> float:
        delay = self.next
        self.next = min(self.cap, self.next * 2)
        return delay

    def reset(self) -> None:
        self.next = self.first


async def read_text(resp: aiohttp.ClientResponse, limit: int = MAX_ANSWER) -> str:
    """The other relay's answer body: at most ``limit`` bytes (a larger one is refused as it
    arrives, never buffered whole) and valid UTF-8."""
    length = resp.content_length
    if length is not None and length > limit:
        raise Refused(502, f"the other relay's answer is over {limit} bytes")
    body = bytearray()
    while True:
        chunk = await resp.content.read(min(65536, limit + 1 - len(body)))
        if not chunk:
            break
        body += chunk
        if len(body) > limit:
            raise Refused(502, f"the other relay's answer is over {limit} bytes")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(502, "the other relay's answer is not UTF-8") from None


async def read_json(resp: aiohttp.ClientResponse, limit: int = MAX_ANSWER) -> Any:
    try:
        return json_doc(await read_text(resp, limit), "answer")
    except ValueError:
        raise Refused(502, "the other relay's answer is not JSON") from None


def same_origin(a: str, b: str) -> bool:
    """Whether two URLs have one origin: a token goes only to the host it was given for."""
    oa = origin(a)
    return oa is not None and oa == origin(b)


async def post_offer(http: aiohttp.ClientSession, url: str, offer: str, auth: str | None, sc: StreamConfig,
                     redirects: bool = False) -> tuple[str, str]:
    """POST an SDP offer (WHIP or WHEP, RFC 9725): the answer and the session's URL, or
    :class:`Refused` with the status and the first line of the other side's reason. The
    answer is read bounded (an SDP is a few KB) and strictly (UTF-8)."""
    headers = {"Content-Type": "application/sdp", **({"Authorization": auth} if auth else {})}
    async with http.post(url, data=offer, headers=headers, ssl=ssl_for(sc), timeout=POST_TIMEOUT,
                         allow_redirects=redirects) as resp:
        if resp.status != 201:
            body = await read_text(resp, 4096)
            first = body.strip().splitlines()[0][:200] if body.strip() else resp.reason or ""
            raise Refused(resp.status, first)
        body = await read_text(resp)
        return body, urljoin(str(resp.url), resp.headers.get("Location", ""))


def ssl_for(sc: StreamConfig) -> ssl.SSLContext | aiohttp.Fingerprint | bool:
    """How the other relay's certificate is trusted: pinned, a brigade CA, or the system's."""
    if sc.peer_pin:
        return aiohttp.Fingerprint(bytes.fromhex(sc.peer_pin))
    if sc.peer_ca:
        return ssl.create_default_context(cafile=sc.peer_ca)
    return True

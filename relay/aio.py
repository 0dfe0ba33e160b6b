"""asyncio helpers every part uses."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

__all__ = ["PeerGone", "stop_if_cancelled", "within"]

T = TypeVar("T")
log = logging.getLogger("relay.aio")


async def within(seconds: float, aw: Awaitable[T]) -> T:
    """``aw``'s result, or TimeoutError after ``seconds`` (``aw`` cancelled).

    Not ``asyncio.wait_for``: on Python 3.11, when the awaited thing completes in the same
    loop step as the caller is cancelled, ``wait_for`` returns the result and the cancellation
    is lost (CPython gh-86296) — a task told to stop runs on and whoever awaits it waits for
    ever (seen: the cluster directory's loop, cancelled just after a kick). ``asyncio.timeout``
    keeps the cancellation.
    """
    async with asyncio.timeout(seconds):
        return await aw


def stop_if_cancelled() -> None:
    """In a loop that catches a library's errors and goes on: end here if the task was told
    to stop. Some libraries turn a cancellation that lands inside their own timeout into
    their timeout error (seen: redis-py's pub/sub read, cancelled under load, raised
    TimeoutError): a loop that catches it and retries would never end, and whoever awaits
    the task (a shutdown) would wait for ever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class PeerGone:
    """The loop's exception handler, quiet about one library noise only: aiortc's SCTP
    transport sends from tasks nobody awaits, and when a viewer's tab closes mid-send they end
    in ``ConnectionError("Cannot send ... not connected")`` — "Task exception was never
    retrieved" with a traceback, several per closed tab (aiortc issue #1040). The session's
    own close is logged where it happens; these are counted (``gone``) and logged at debug.
    Anything else goes to the handler that was there before (asyncio's own)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.before = loop.get_exception_handler()
        self.gone = 0

    def install(self) -> None:
        if not isinstance(self.before, PeerGone):  # (one per loop: several relays in one process)
            self.loop.set_exception_handler(self)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc, task = context.get("exception"), context.get("future")
        coro = task.get_coro() if isinstance(task, asyncio.Task) else None
        name = getattr(coro, "__qualname__", "")
        if (isinstance(exc, ConnectionError) and "not connected" in str(exc)
                and name.split(".")[-2:-1] == ["RTCSctpTransport"]):
            self.gone += 1
            log.debug("a closed peer's data channel send ended", extra={"task": name, "error": str(exc)})
            return
        if self.before is not None:
            self.before(loop, context)
        else:
            loop.default_exception_handler(context)

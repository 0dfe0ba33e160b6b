"""asyncio helpers every part uses."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["stop_if_cancelled", "within"]

T = TypeVar("T")


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

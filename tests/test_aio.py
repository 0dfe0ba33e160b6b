"""relay.aio.within: a timeout that never loses its caller's cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from relay.aio import within


async def _loop(kick: asyncio.Event, wait: object) -> None:
    while True:  # the shape of every long-running loop: wait for a kick or a period
        with contextlib.suppress(TimeoutError):
            await wait(kick)  # type: ignore[operator]
        kick.clear()


async def _stop_right_after_a_kick(wait: object) -> bool:
    """True if the loop ended when it was cancelled the moment its kick came."""
    kick = asyncio.Event()
    task = asyncio.ensure_future(_loop(kick, wait))
    await asyncio.sleep(0.01)
    kick.set()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=1.0)
    if not done:
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
    return bool(done)


async def test_a_loop_cancelled_the_moment_its_kick_comes_ends() -> None:
    assert await _stop_right_after_a_kick(lambda kick: within(5.0, kick.wait()))


async def test_within_times_out_and_returns() -> None:
    assert await within(1.0, asyncio.sleep(0, "x")) == "x"
    with pytest.raises(TimeoutError):
        await within(0.01, asyncio.Event().wait())


def test_worker_threads_carry_their_names_into_the_kernel() -> None:
    """``top -H`` and /proc show a relay thread's own name ("pipe-drone1_0"), cut to 15
    bytes, not "python" for all: the CPU of each stream's worker is told apart."""
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    from relay.osthread import name_os_thread, named_initializer

    def comm() -> str:
        return Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip()

    with ThreadPoolExecutor(1, thread_name_prefix="pipe-drone1", initializer=named_initializer) as pool:
        assert pool.submit(comm).result() == "pipe-drone1_0"
    got: list[str] = []

    def run() -> None:
        name_os_thread()
        got.append(comm())
    t = threading.Thread(target=run, name="record-a-very-long-stream-name")
    t.start()
    t.join()
    assert got == ["record-a-very-l"]


async def test_a_loop_that_catches_a_cancel_turned_into_an_error_still_stops() -> None:
    """A library that turns a cancellation inside its own timeout into its timeout error
    (redis-py's pub/sub read did, under load): the retrying loop ends when told to stop."""
    import asyncio

    from relay.aio import stop_if_cancelled, within

    rounds = 0

    async def loop() -> None:
        nonlocal rounds
        while True:
            rounds += 1
            try:
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    raise TimeoutError from None  # as the library does
            except TimeoutError:
                stop_if_cancelled()
                await asyncio.sleep(0)

    task = asyncio.ensure_future(loop())
    await asyncio.sleep(0.05)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await within(2, task)
    assert task.cancelled() and rounds == 1


async def test_a_closed_peers_data_channel_sends_are_counted_not_logged_as_errors(
        caplog: pytest.LogCaptureFixture) -> None:
    """aiortc's SCTP transport sends from tasks nobody awaits: a closed tab ends them in
    ConnectionError, "Task exception was never retrieved" with a traceback each. Those are
    counted and logged at debug; any other unretrieved exception still reaches asyncio's
    handler as an error."""
    import gc

    from relay.aio import PeerGone

    class RTCSctpTransport:  # (the library's class name is what the handler goes by)
        async def _send_chunk(self) -> None:
            raise ConnectionError("Cannot send encrypted data, not connected")

    async def unrelated() -> None:
        raise ConnectionError("Cannot send encrypted data, not connected")

    loop = asyncio.get_running_loop()
    quiet = PeerGone(loop)
    quiet.install()
    caplog.set_level(logging.DEBUG)
    try:
        for coro in (RTCSctpTransport()._send_chunk(), unrelated()):
            task = loop.create_task(coro)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert task.done()
            del task
            gc.collect()
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert quiet.gone == 1
        assert len(errors) == 1 and "never retrieved" in errors[0].getMessage(), errors
        assert "unrelated" in str(errors[0].__dict__.get("future", "")) or "unrelated" in errors[0].getMessage()
    finally:
        loop.set_exception_handler(quiet.before)

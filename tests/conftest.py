from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.helpers import Drone, RelayHandle, start_relay, wait_for


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Whole-system tests (tests/e2e) run in the slow lane unless marked quick; the fast
    lane (unit tests and the quick ones, scripts/test.sh) fails a broken build in seconds."""
    for item in items:
        if "/e2e/" in str(item.path) and item.get_closest_marker("quick") is None:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def client_peers_on_loopback() -> None:
    """Peers this process makes that are not a relay's (test viewers, the simulator) offer
    127.0.0.1: aioice skips loopback, and the tests run where loopback is all there is. A
    relay's own peers follow its [webrtc] settings (relay.webrtc.IcePolicy)."""
    from relay.webrtc import use_host_addresses

    use_host_addresses(["127.0.0.1"])


@pytest.fixture
async def relay_factory() -> AsyncIterator[Callable[..., Awaitable[RelayHandle]]]:
    handles: list[RelayHandle] = []

    async def make(data: dict[str, Any] | None = None, host: str = "127.0.0.1",
                   env: dict[str, str] | None = None) -> RelayHandle:
        h = await start_relay(data, host, env)
        handles.append(h)
        return h

    yield make
    for h in handles:
        await h.runner.cleanup()


@pytest.fixture
async def relay(relay_factory: Callable[..., Awaitable[RelayHandle]]) -> RelayHandle:
    return await relay_factory()


async def _live(relay: RelayHandle, size: tuple[int, int]) -> AsyncIterator[RelayHandle]:
    drone = Drone(f"{relay.url}/whip/drone1", size=size)
    await wait_for(lambda: relay.entry("drone1") is not None
                   and relay.entry("drone1").frames_in > 5, 15, "drone1 to go live")
    relay.drone = drone  # type: ignore[attr-defined]
    yield relay
    await drone.stop()


@pytest.fixture
async def live(relay: RelayHandle) -> AsyncIterator[RelayHandle]:
    """A relay with the simulated drone publishing 'drone1' at 640x360@30."""
    async for r in _live(relay, (640, 360)):
        yield r


@pytest.fixture
async def live720(relay: RelayHandle) -> AsyncIterator[RelayHandle]:
    """The same at 1280x720, for tests about the picture's size."""
    async for r in _live(relay, (1280, 720)):
        yield r


# A test that needs a tool the setup installs fails when the tool is missing: never a
# silent skip in CI (scripts/setup.sh --dev installs every one of these).
@pytest.fixture
def ffmpeg_required() -> None:
    assert shutil.which("ffmpeg"), "Debian's ffmpeg is missing: run scripts/setup.sh --dev"


@pytest.fixture
def chromium_required() -> None:
    from tests.browser import have_chromium

    assert have_chromium(), "Debian's chromium is missing: run scripts/setup.sh --dev"


@pytest.fixture
def gst_rtsp_required() -> None:
    from tests.e2e.test_ingest import have_gst_rtsp

    assert have_gst_rtsp(), "GStreamer's RTSP server (python3-gi) is missing: run scripts/setup.sh --dev"


@pytest.fixture
def gst_launch_required() -> None:
    assert shutil.which("gst-launch-1.0"), "GStreamer's gst-launch-1.0 is missing: run scripts/setup.sh --dev"

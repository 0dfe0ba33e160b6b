"""Headless Debian Chromium driven by Playwright (never a downloaded browser)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
]


def have_chromium() -> bool:
    return shutil.which(CHROMIUM) is not None


@asynccontextmanager
async def chromium(extra_args: list[str] | None = None, bypass_csp: bool = True,
                   executable: str = CHROMIUM, viewport: tuple[int, int] = (1280, 720)) -> AsyncIterator[Any]:
    """A fresh Chromium profile. ``bypass_csp``: Playwright's wait_for_function evaluates
    strings, which the relay's CSP forbids; the CSP tests turn the bypass off."""
    from playwright.async_api import async_playwright

    profile = tempfile.mkdtemp(prefix="relay-chromium-")
    try:
        async with async_playwright() as p:
            ctx = await p.chromium.launch_persistent_context(
                profile, executable_path=executable, headless=True, args=FLAGS + (extra_args or []),
                viewport={"width": viewport[0], "height": viewport[1]}, bypass_csp=bypass_csp,
            )
            try:
                yield ctx
            finally:
                await ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)

"""``[overload]``: what the relay sheds, in which order, when it is short of CPU."""

from __future__ import annotations

from dataclasses import dataclass

from .fields import ConfigError, flag, strings

__all__ = ["SHED_NAMES", "OverloadConfig"]

# relay/overload.py says what each does
SHED_NAMES = ("tiles_fps", "fps_half", "rungs", "overlay", "fps_third", "fps_sixth", "keyframes")


def _step(key: str, value: str) -> None:
    if value not in SHED_NAMES:
        raise ConfigError(key, f"must be one of {', '.join(SHED_NAMES)}, got {value!r}")


@dataclass(frozen=True)
class OverloadConfig:
    # Off: pictures are still never played late (each queue's max age), but nothing is shed.
    enabled: bool = flag(True)
    shed: tuple[str, ...] = strings(SHED_NAMES, item=_step)  # the order, first shed first

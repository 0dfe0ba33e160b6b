"""The overload governor's ``rungs`` step: a stream's extra transcoded rungs closed, their
viewers moved down to a rung that stays — one encoder (and its scaling) per stream instead of
one per rung watched. Given back, each viewer returns to the rung it was on (a viewer on
"auto" has its cap lifted and climbs by its own rules).

Which rungs stay, per stream and codec: every rung another relay reads (a forward to the
centre, a cluster edge: they serve viewers of their own, and are cut last), and the lowest rung
a person watches. A person on a rung that goes moves to the best staying rung at or below it
(else the lowest that stays). The source's own packets cost no encoder and are never moved.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..config import Config
from ..overload import Governor
from .adapt import change_rendition
from .viewer import Viewer

__all__ = ["RungShed", "Watching", "rung_plan"]

REASON = "relay short of CPU: the stream's extra rungs closed"


@dataclass(frozen=True)
class Watching:
    session: str
    rendition: str
    relay: bool  # another relay reads it: its rung stays


def rung_plan(ladder: dict[str, tuple[int, str]], watching: Iterable[Watching]) -> dict[str, str]:
    """``ladder``: transcoded rung -> (kbps, codec); ``watching``: a stream's viewers. Returns
    session -> the rung it moves to (the people on rungs that close)."""
    on = [w for w in watching if w.rendition in ladder]
    moves: dict[str, str] = {}
    for codec in {ladder[w.rendition][1] for w in on}:
        group = [w for w in on if ladder[w.rendition][1] == codec]
        people = [w for w in group if not w.relay]
        if not people:
            continue
        kbps = {w.rendition: ladder[w.rendition][0] for w in group}
        stay = {w.rendition for w in group if w.relay}
        stay.add(min((w.rendition for w in people), key=kbps.__getitem__))
        for w in people:
            if w.rendition in stay:
                continue
            below = [r for r in stay if kbps[r] <= kbps[w.rendition]]
            moves[w.session] = max(below, key=kbps.__getitem__) if below else min(stay, key=kbps.__getitem__)
    return moves


class RungShed:
    """Applies the plan while the governor sheds ``rungs``, and undoes it when it stops:
    called once a second and on each of the governor's changes (a viewer that joins a
    closed rung meanwhile is moved within the second)."""

    def __init__(self, governor: Governor, config: Config, viewers: dict[str, Viewer]) -> None:
        self.governor = governor
        self.viewers = viewers  # the egress's own (session -> Viewer)
        self.ladder = {r.name: (r.bitrate_kbps, r.codec) for r in config.renditions}

    def applies(self) -> bool:
        """Whether the step would close anything now (a stream whose people watch two rungs)."""
        return any(self._plan(vs) for vs in self._streams().values())

    def tick(self) -> None:
        on = self.governor.one_rung()
        for viewers in self._streams().values():
            if on:
                self._shed(viewers)
            else:
                self._give_back(viewers)

    def _streams(self) -> dict[str, list[Viewer]]:
        out: dict[str, list[Viewer]] = {}
        for v in self.viewers.values():
            if v.entry.mode != "passthrough":
                out.setdefault(v.entry.name, []).append(v)
        return out

    def _plan(self, viewers: list[Viewer]) -> dict[str, str]:
        return rung_plan(self.ladder, (Watching(v.info.session, v.info.rendition, v.info.relay)
                                       for v in viewers))

    def _shed(self, viewers: list[Viewer]) -> None:
        by_id = {v.info.session: v for v in viewers}
        for session, to in self._plan(viewers).items():
            v = by_id[session]
            if v.track.switching:  # (asked already: it moves at the rung's next keyframe)
                continue
            if v.shed_from is None:
                v.shed_from = v.info.rendition
            if v.adapter is not None:
                v.adapter.cap(to)
            else:
                change_rendition(v, to, f"down: {REASON}")
        for v in viewers:  # (an auto viewer that stays keeps its rung: capped there)
            if v.adapter is not None and v.shed_from is None and v.adapter.ctl.ceiling is None \
                    and not v.info.relay and v.info.rendition in self.ladder:
                v.shed_from = v.info.rendition
                v.adapter.cap(v.info.rendition)

    def _give_back(self, viewers: list[Viewer]) -> None:
        for v in viewers:
            if v.shed_from is None:
                continue
            back, v.shed_from = v.shed_from, None
            if v.adapter is not None:
                v.adapter.cap(None)  # (it climbs by its own rules)
            elif v.info.rendition != back or v.track.switching:  # (a move down still pending)
                change_rendition(v, back, "back: the relay has the CPU again")

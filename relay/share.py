"""Share links: a view of one stream for someone without an account, by QR code.

A control-centre user creates a link for one stream with an expiry, an optional viewer cap
and a label ("Einsatzleiter Nord"). The link carries a signed viewer token (JWT, ``share``
claim, its ``jti`` the link's id). A share token is honoured only while its id is in this
book: the book is an allow-list, so revoking a link (or losing the book) ends it — fail
closed. With ``auth.shares_file`` the book survives a restart (written atomically).

Pure data and a file; the HTTP handlers (``http.py``) apply it, the WHEP egress ends the
sessions of a revoked or expired link.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["Share", "ShareBook"]

log = logging.getLogger("relay.share")
MAX_SHARES = 1000


@dataclass
class Share:
    id: str  # the token's jti
    stream: str
    label: str
    created: float
    expires: float
    max_viewers: int  # 0: no cap
    created_by: str
    revoked: float | None = None
    mark: bool = False  # its viewers may place markers

    def active(self, now: float | None = None) -> bool:
        return self.revoked is None and (time.time() if now is None else now) < self.expires

    def doc(self) -> dict[str, Any]:
        return {**asdict(self), "active": self.active()}


class ShareBook:
    def __init__(self, path: str = "") -> None:
        self.path = Path(path) if path else None
        self.shares: dict[str, Share] = {}
        self.listeners: list[Callable[[Share], None]] = []  # told of each link made or revoked here
        if self.path is not None and self.path.exists():
            try:
                for d in json.loads(self.path.read_text(encoding="utf-8")):
                    s = Share(**d)
                    self.shares[s.id] = s
            except (OSError, ValueError, TypeError) as exc:
                # A damaged book: every share link stops working (fail closed), said loudly.
                log.error("share links file unreadable: every share link is refused",
                          extra={"path": str(self.path), "error": str(exc)})
                self.shares = {}

    def add(self, share: Share) -> None:
        self._forget_old()
        if len(self.shares) >= MAX_SHARES:
            raise ValueError(f"{MAX_SHARES} share links exist: revoke some first")
        self.shares[share.id] = share
        self._save()
        self._tell(share)

    def get(self, share_id: str | None) -> Share | None:
        return self.shares.get(share_id) if share_id else None

    def active(self, share_id: str | None) -> Share | None:
        s = self.get(share_id)
        return s if s is not None and s.active() else None

    def revoke(self, share_id: str) -> Share | None:
        s = self.shares.get(share_id)
        if s is None:
            return None
        if s.revoked is None:
            s.revoked = time.time()
            self._save()
            self._tell(s)
        return s

    def merge(self, doc: dict[str, Any]) -> Share | None:
        """A link as another node knows it (a cluster's shared book): added if new, revoked
        if revoked there (a revocation is never undone). Returns the link, None if malformed."""
        try:
            theirs = Share(**{k: v for k, v in doc.items() if k != "active"})
        except TypeError:
            return None
        ours = self.shares.get(theirs.id)
        if ours is None:
            self.shares[theirs.id] = ours = theirs
        elif theirs.revoked is not None and ours.revoked is None:
            ours.revoked = theirs.revoked
        else:
            return ours
        self._save()
        return ours

    def _tell(self, share: Share) -> None:
        for cb in tuple(self.listeners):
            cb(share)

    def listing(self) -> list[dict[str, Any]]:
        return [s.doc() for s in sorted(self.shares.values(), key=lambda s: -s.created)]

    def _forget_old(self) -> None:
        """Links expired or revoked a day ago leave the book (their tokens stay refused)."""
        cutoff = time.time() - 86400
        for sid in [k for k, s in self.shares.items() if (s.revoked or s.expires) < cutoff]:
            del self.shares[sid]

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".shares-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump([asdict(s) for s in self.shares.values()], f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

"""Unit guards for the parts the refactor moved (no network): the viewer report's schema,
the loss windows, the sender gates' allow-lists, the limiter, the share book and the
who-may-what decisions around it, the session table."""

from __future__ import annotations

import json
import time
from collections import deque
from pathlib import Path

import pytest

from relay.abr import LinkEstimate, loss_over
from relay.auth import Principal, authorize, may_mint, mint_token, share_has_room
from relay.config import LimitsConfig, parse
from relay.egress.channel import clean_report
from relay.errors import RelayError
from relay.limits import Limiter
from relay.share import Share, ShareBook
from relay.sources.gate import UdpGate


def test_report_schema_keeps_known_fields_in_range_only() -> None:
    rep = clean_report({"latency_ms": 120.5, "fps": 29.9, "width": 1280, "height": 720.0,
                        "loss_pct": 101, "freezes": True, "frames_decoded": -1, "latency_kind": "glass-to-glass",
                        "clock_offset_ms": float("nan"), "evil": "<script>", "user_agent": "Moz\u00e9\x00illa/5.0" + "x" * 300})
    assert rep["latency_ms"] == 120.5 and rep["fps"] == 29.9
    assert rep["height"] == 720 and isinstance(rep["height"], int)
    for dropped in ("loss_pct", "freezes", "frames_decoded", "clock_offset_ms", "evil"):
        assert dropped not in rep  # out of range, a bool, negative, NaN, unknown: dropped, not clamped
    assert rep["latency_kind"] == "glass-to-glass"
    assert rep["user_agent"].startswith("Mozilla/5.0") and len(rep["user_agent"]) <= 200
    assert clean_report({"latency_kind": "made-up"}) == {}
    with pytest.raises(ValueError):
        clean_report(["not", "an", "object"])


def test_loss_needs_enough_time_and_packets() -> None:
    hist: deque[tuple[float, int, int]] = deque()
    assert loss_over(hist, 0.0) is None
    hist.extend([(0.0, 0, 100), (0.5, 1, 104)])  # 1 of 4 packets: no verdict yet
    assert loss_over(hist, 0.5) is None
    hist.append((1.2, 5, 200))  # 5 of 100 over 1.2 s
    assert loss_over(hist, 1.2) == pytest.approx(0.05)
    hist.append((2.5, 5, 210))  # since 1.2 s: 10 packets, too few; since 0.5 s: 4 lost of 106
    assert loss_over(hist, 2.5) == pytest.approx(4 / 106)


def test_link_estimate_keeps_only_the_current_rungs_reports() -> None:
    est = LinkEstimate()
    est.new_period()
    est.outbound(1000, 1_000_000, 0.5)
    est.new_period()
    est.outbound(1100, 1_120_000, 0.5)  # 100 packets, 120 kB in 0.5 s
    assert est.sent == 100 and est.sent_kbps == pytest.approx(1920) and est.pkt_bytes == 1200
    est.receiver_report(1.0, "a", 0, 500, changed_at=0.0)
    est.receiver_report(1.0, "a", 0, 500, changed_at=0.0)  # the same report twice counts once
    est.receiver_report(2.1, "b", 10, 590, changed_at=0.0)
    assert est.loss(2.1) == pytest.approx(10 / 100)
    est.forget()  # a switch: what came before describes the old rung
    est.receiver_report(2.6, "c", 12, 640, changed_at=2.5)  # its interval began before the switch
    assert est.loss(2.6) is None
    assert est.media_kbps(100) == pytest.approx(960)


def test_udp_gate_allow_list_and_one_sender_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    gate = UdpGate("cam", ["10.0.0.0/8", "2001:db8::/32"], ("127.0.0.1", 0), takeover_after_s=1.0)
    t = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: t[0])
    assert not gate.admit(("192.168.1.5", 5000)) and gate.refused_not_allowed == 1
    assert not gate.admit(("not-an-ip", 5000))
    assert gate.admit(("::ffff:10.1.2.3", 5000))  # an IPv4-mapped address is its IPv4 one
    assert not gate.admit(("10.9.9.9", 6000)) and gate.refused_second_sender == 1
    t[0] += 1.5  # the first sender fell silent: the next one takes over
    assert gate.admit(("10.9.9.9", 6000)) and gate.sender == ("10.9.9.9", 6000)
    assert gate.admit(("2001:db8::7", 1)) is False  # allowed, but the stream has a live sender
    open_gate = UdpGate("any", [], ("127.0.0.1", 0), takeover_after_s=1.0)
    assert open_gate.admit(("203.0.113.9", 1))


def test_limiter_counts_offers_per_client_per_minute() -> None:
    lim = Limiter(LimitsConfig(offers_per_client_per_min=3))
    for i in range(3):
        lim.offer("a", now=10.0 + i)
    with pytest.raises(RelayError) as err:
        lim.offer("a", now=13.0)
    assert err.value.status == 429 and lim.refused["offers_per_client"] == 1
    lim.offer("b", now=13.0)  # another client is not affected
    lim.offer("a", now=70.5)  # a minute after the first: room again


def _share(sid: str, stream: str = "d1", expires_in: float = 3600, cap: int = 0) -> Share:
    t = time.time()
    return Share(id=sid, stream=stream, label="l", created=t, expires=t + expires_in, max_viewers=cap,
                 created_by="control")


def test_share_book_persists_revokes_and_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "shares.json"
    book = ShareBook(str(path))
    book.add(_share("a"))
    book.add(_share("b", expires_in=-1))
    assert book.active("a") is not None and book.active("b") is None and book.active(None) is None
    assert book.revoke("a") is not None and book.active("a") is None
    assert book.revoke("nope") is None
    again = ShareBook(str(path))  # a restart keeps the book
    assert again.get("a") is not None and again.get("a").revoked and again.active("a") is None
    path.write_text("{broken")
    assert ShareBook(str(path)).shares == {}  # a damaged book: every link refused
    assert json.loads(json.dumps(book.listing()))[0]["id"] in ("a", "b")


def test_share_links_are_honoured_only_while_in_the_book() -> None:
    cfg = parse({"auth": {"enabled": True, "jwt_secret": "s" * 40}, "streams": {"d1": {}}}, env={})
    book = ShareBook()
    token, _, jti = mint_token(cfg, "viewer", ["d1"], 600, "phone", share=True)
    refused = authorize(cfg, book, "view", "d1", token)
    assert not refused.allowed and refused.status == 403 and "expired or is unknown" in refused.reason
    book.add(_share(jti, cap=1))
    ok = authorize(cfg, book, "view", "d1", token)
    assert ok.allowed and ok.principal is not None and ok.principal.share
    assert not authorize(cfg, book, "view", "d2", token).allowed  # its one stream only
    assert share_has_room(ok.principal, book, sessions=0).allowed
    full = share_has_room(ok.principal, book, sessions=1)
    assert not full.allowed and full.status == 429
    book.revoke(jti)
    gone = authorize(cfg, book, "view", "d1", token)
    assert not gone.allowed and "revoked" in gone.reason


@pytest.mark.parametrize(("role", "mints", "ok"), [
    ("control", "viewer", True), ("control", "publisher", False), ("control", "control", False),
    ("admin", "viewer", True), ("admin", "publisher", True), ("admin", "control", True),
    ("admin", "admin", False),
])
def test_who_may_mint_what(role: str, mints: str, ok: bool) -> None:
    d = may_mint(Principal(role, name="x"), mints)
    assert d.allowed is ok and (ok or d.status == 403)


async def test_one_session_table_for_whip_and_whep() -> None:
    from aiortc import RTCPeerConnection

    from relay.webrtc import PeerSession, SessionTable

    lim = Limiter(LimitsConfig(sessions_per_client=2))
    table = SessionTable(lim)
    pub = PeerSession("whip", "d1", RTCPeerConnection(), "10.0.0.1")
    view = PeerSession("whep", "d1", RTCPeerConnection(), "10.0.0.1")
    other = PeerSession("whep", "d1", RTCPeerConnection(), "10.0.0.2")
    for s in (pub, view, other):
        table.add(s)
    assert table.count(remote="10.0.0.1") == 2 and table.count("whep") == 2
    with pytest.raises(RelayError) as err:
        table.admit_client("10.0.0.1")  # a publisher and a viewer: its limit, whatever the kind
    assert err.value.status == 429 and lim.refused["sessions_per_client"] == 1
    table.admit_client("10.0.0.2")
    with pytest.raises(RelayError) as err:
        await table.stop("whep", "d1", pub.id, "x")  # a WHIP session is not ended through WHEP
    assert err.value.status == 404 and not pub.closed
    with pytest.raises(RelayError):
        await table.stop("whep", "d2", view.id, "x")  # nor through another stream
    await table.stop("whep", "d1", view.id, "viewer sent DELETE")
    assert view.closed and table.get("whep", view.id) is None and table.count(remote="10.0.0.1") == 1
    await table.close_all("whep")
    assert other.closed and not pub.closed and set(table.of_kind("whip")) == {pub.id}
    await table.close_all("whip")

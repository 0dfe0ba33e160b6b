"""aiortc glue: peers, SDP checks, tracks between aiortc and the stream hub."""

from .compat import (
    MarkerJitterBuffer,
    ask_keyframe,
    can_pad,
    self_check,
    send_nack,
    send_padding,
    sent_packet_count,
    transceiver_codecs,
    use_marker_jitter_buffer,
)
from .dtls import install as install_dtls
from .ice import IcePolicy, announce_candidates, gathering_with, resolve_addresses, use_host_addresses
from .peer import accept_answer, answer_offer, check_offer, make_offer, new_peer, prefer_codec
from .session import PeerSession, SessionTable, new_session_id
from .tracks import ArrivalTimes, PacketTrack, RtcpTap, listen_for_keyframe_requests, pump_track

__all__ = [
    "ArrivalTimes",
    "IcePolicy",
    "MarkerJitterBuffer",
    "PacketTrack",
    "PeerSession",
    "RtcpTap",
    "SessionTable",
    "accept_answer",
    "announce_candidates",
    "answer_offer",
    "ask_keyframe",
    "can_pad",
    "check_offer",
    "gathering_with",
    "install_dtls",
    "listen_for_keyframe_requests",
    "make_offer",
    "new_peer",
    "new_session_id",
    "prefer_codec",
    "pump_track",
    "resolve_addresses",
    "self_check",
    "send_nack",
    "send_padding",
    "sent_packet_count",
    "transceiver_codecs",
    "use_host_addresses",
    "use_marker_jitter_buffer",
]

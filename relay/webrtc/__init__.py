"""aiortc glue: peers, SDP checks, tracks between aiortc and the stream hub."""

from .ice import use_host_addresses
from .peer import answer_offer, check_offer, new_peer, prefer_codec
from .session import PeerSession, new_session_id
from .tracks import PacketTrack, listen_for_keyframe_requests, pump_track

__all__ = [
    "PacketTrack",
    "PeerSession",
    "answer_offer",
    "check_offer",
    "listen_for_keyframe_requests",
    "new_peer",
    "new_session_id",
    "prefer_codec",
    "pump_track",
    "use_host_addresses",
]

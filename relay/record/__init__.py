"""The incident record: segments, signed hash-chained manifests, retention, clips, verify."""

from .chain import Signer, load_public_key
from .clip import ClipInfo, ClipPart, cut_clip
from .service import RecordService, Segment
from .verify import Report, verify_record

__all__ = ["ClipInfo", "ClipPart", "RecordService", "Report", "Segment", "Signer", "cut_clip",
           "load_public_key", "verify_record"]

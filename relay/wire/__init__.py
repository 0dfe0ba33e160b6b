"""One strict reader per kind of input from outside the process.

What arrives from Redis, a peer relay or a viewer is turned into a typed, bounded value
here, once, at the edge; the rest of the relay never sees raw JSON from outside. Each
reader checks types, ranges (finite numbers only), sizes and text (valid, XML-safe), and
says why it refused (:class:`Refused`), so its caller can log one throttled line per reason.
"""

from .records import MAX_RECORD_BYTES, NodeRecord, parse_node
from .values import Refused, clean_text, finite, json_doc, origin, safe_text, wall_ms

__all__ = ["MAX_RECORD_BYTES", "NodeRecord", "Refused", "clean_text", "finite", "json_doc", "origin",
           "parse_node", "safe_text", "wall_ms"]

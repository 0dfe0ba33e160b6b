"""HTTP: the relay's routes and middleware only (status codes, CORS, JSON, the static viewer).

- :mod:`.common`: the services, authorization (decided in :mod:`relay.auth`), body readers;
- :mod:`.middleware`: refusals, CORS and security headers;
- :mod:`.whip_whep`, :mod:`.streams`, :mod:`.telemetry`, :mod:`.tokens`, :mod:`.record`,
  :mod:`.share`: the handlers, one concern each;
- :mod:`.routes`: every route.
"""

from .common import SERVICES, Services
from .routes import build_routes
from .share import end_expired_shares

__all__ = ["SERVICES", "Services", "build_routes", "end_expired_shares"]

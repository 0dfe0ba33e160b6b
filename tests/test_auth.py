from __future__ import annotations

from relay.auth import authenticate, bearer_token
from relay.config import parse

CFG = parse({"auth": {"enabled": True, "view_token": "global-view"},
             "streams": {"d1": {"publish_token": "d1-publish", "view_token": "d1-viewer"}}}, env={})


def test_bearer_parsing() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer   abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer ") is None
    assert bearer_token(None) is None


def test_decisions() -> None:
    assert authenticate(CFG, "publish", "d1", None).status == 401
    assert authenticate(CFG, "publish", "d1", "d1-viewer").status == 403
    assert authenticate(CFG, "publish", "d1", "d1-publish").allowed
    assert authenticate(CFG, "view", "d1", "d1-viewer").allowed
    assert authenticate(CFG, "view", "d1", "global-view").allowed
    assert authenticate(CFG, "view", "d1", "d1-publish").allowed  # publisher may watch
    assert authenticate(CFG, "publish", "other", "d1-publish").status == 403
    open_cfg = parse({}, env={})
    assert authenticate(open_cfg, "publish", "x", None).allowed

from __future__ import annotations

from relay.auth import Decision, authenticate, bearer_token
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


def test_roles_jwt_and_turn_credentials() -> None:
    import base64
    import hashlib
    import hmac
    import time

    from relay.auth import authenticate as auth
    from relay.auth import mint_token, turn_rest_credentials
    from relay.config import IceServer

    cfg = parse({"auth": {"enabled": True, "jwt_secret": "s" * 32,
                          "tokens": [{"token": "control-token", "role": "control"}]},
                 "streams": {"d1": {"publish_token": "d1-publish"}}}, env={})
    assert auth(cfg, "metrics", None, "control-token").allowed
    assert auth(cfg, "metrics", None, "d1-publish").status == 403
    tok, exp, _ = mint_token(cfg, "viewer", ["d1"], 60)
    assert auth(cfg, "view", "d1", tok).allowed and not auth(cfg, "view", "d2", tok).allowed
    assert auth(cfg, "view", "d1", tok[:-2] + "xx").status == 403  # signature broken
    old, _, _ = mint_token(cfg, "viewer", ["d1"], 60, now=time.time() - 600)
    assert "expired" in auth(cfg, "view", "d1", old).reason
    # coturn's use-auth-secret scheme, with a user part coturn accepts.
    user, password = turn_rest_credentials(IceServer(urls=("turn:x",), secret="k", ttl_s=60),
                                           "Einsatzleiter Nord <x>", now=1000)
    assert user == "1060:Einsatzleiter-Nord-x"
    assert password == base64.b64encode(hmac.new(b"k", user.encode(), hashlib.sha1).digest()).decode()


def test_a_node_claim_is_a_cluster_nodes_viewer_pull_only() -> None:
    """``node`` (a cluster node's pull: keyframes outside a viewer's budget) is honoured on
    a viewer token the cluster's secret signed; on any other role, or a share link, refused."""
    import time

    import jwt

    from relay.auth import identify, mint_token

    cfg = parse({"auth": {"enabled": True, "jwt_secret": "s" * 40}, "streams": {"d1": {}}}, env={})
    tok, _, _ = mint_token(cfg, "viewer", ["d1"], 60, node="b")
    who = identify(cfg, tok)
    assert not isinstance(who, Decision) and who.node == "b" and who.role == "viewer"
    t = int(time.time())
    for extra in ({"role": "control", "node": "b"}, {"role": "viewer", "node": ["b"]},
                  {"role": "viewer", "node": "b", "share": True, "jti": "j"}):
        forged = jwt.encode({"role": "viewer", "streams": ["d1"], "iat": t, "exp": t + 60, **extra},
                            "s" * 40, algorithm="HS256")
        d = authenticate(cfg, "view", "d1", forged)
        assert not d.allowed and d.status == 403, extra


def test_a_signed_token_must_name_its_streams() -> None:
    """A token signed with the right secret but without a ``streams`` claim is refused (it
    was read as "every stream"); the same token with the claim is honoured."""
    import time

    import jwt

    cfg = parse({"auth": {"enabled": True, "jwt_secret": "s" * 40}, "streams": {"d1": {}}}, env={})
    t = int(time.time())
    bare = jwt.encode({"role": "viewer", "iat": t, "exp": t + 600, "sub": "x"}, "s" * 40, algorithm="HS256")
    d = authenticate(cfg, "view", "d1", bare)
    assert not d.allowed and d.status == 403 and "streams" in d.reason
    named = jwt.encode({"role": "viewer", "streams": ["d1"], "iat": t, "exp": t + 600}, "s" * 40,
                       algorithm="HS256")
    assert authenticate(cfg, "view", "d1", named).allowed
    assert not authenticate(cfg, "view", "d2", named).allowed

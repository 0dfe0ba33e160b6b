"""CLI: ``python -m relay [--config FILE] [--host H] [--port P]``."""

from __future__ import annotations

import argparse
import logging
import ssl
import sys
from pathlib import Path

from aiohttp import web

from .app import create_app
from .config import Config, ConfigError, load
from .logs import setup_logging

SHUTDOWN_GRACE_S = 1.0
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "default.toml"


def tls_files(config: Config) -> ssl.SSLContext | None:
    """Every certificate file the config names, loaded as the relay will use it (a file that
    exists but is not what its key says fails here, at --check, not at the first peer): the
    HTTPS context from [server] tls_cert/tls_key (None for plain HTTP), each CA file."""
    cc = config.cluster
    cas = [(f"streams.{s.name}.peer_ca", s.peer_ca) for s in config.streams if s.peer_ca]
    cas += [(f"cluster.{k}", v) for k, v in (("redis_ca", cc.redis_ca), ("peer_ca", cc.peer_ca))
            if cc.enabled and v]
    for key, cafile in cas:
        try:
            ssl.create_default_context(cafile=cafile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(key, f"cannot load {cafile!r} as PEM certificates: {exc}") from None
    if not (config.tls_cert and config.tls_key):
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("server.tls_cert", f"cannot load it with server.tls_key: {exc}") from None
    return context


def verify_main(argv: list[str]) -> int:
    from .record import load_public_key, verify_record

    parser = argparse.ArgumentParser(
        prog="python -m relay verify",
        description="Check a record: every segment and snapshot against its signed, hash-chained "
                    "manifest, and the audit log. Exit 0 if intact, 1 if anything was altered.",
    )
    parser.add_argument("dir", type=Path, help="the recordings directory ([record] dir)")
    parser.add_argument("--public-key", type=Path, default=None,
                        help="the relay's public key (PEM), kept apart from the record "
                             "(default: <dir>/signing-key.pub.pem, which an intruder could replace)")
    args = parser.parse_args(argv)
    if not args.dir.is_dir():
        print(f"verify: no such directory: {args.dir}", file=sys.stderr)
        return 2
    key_path = args.public_key or args.dir / "signing-key.pub.pem"
    try:
        public = load_public_key(key_path)
    except (OSError, ValueError) as exc:
        print(f"verify: cannot read the public key {key_path}: {exc}", file=sys.stderr)
        return 2
    if args.public_key is None:
        print(f"note: trusting the key stored in the record ({key_path}); pass --public-key "
              "with a copy kept elsewhere to rule out a re-signed record")
    report = verify_record(args.dir, public)
    for line in report.summary:
        print(line)
    for finding in report.findings:
        print(finding)
    print("record intact" if report.ok else f"record ALTERED: {len(report.findings)} finding(s)")
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["verify"]:
        return verify_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m relay",
        description="Live-video relay for fire-brigade drones: WHIP in, WebRTC (WHEP) out. "
                    "'python -m relay verify DIR' checks a record.",
    )
    parser.add_argument("--config", type=Path, default=None,
                        help=f"TOML config file (default: {DEFAULT_CONFIG.name} if present)")
    parser.add_argument("--host", default=None, help="address to bind (overrides server.host)")
    parser.add_argument("--port", type=int, default=None, help="port (overrides server.port)")
    parser.add_argument("--log-level", default=None, choices=["debug", "info", "warning", "error"])
    parser.add_argument("--check", action="store_true", help="validate the config and exit")
    args = parser.parse_args(argv)

    try:
        if args.config is not None:
            config = load(args.config)
        elif DEFAULT_CONFIG.exists():
            config = load(DEFAULT_CONFIG)
        else:
            config = Config()
        config = config.with_overrides(host=args.host, port=args.port)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    try:  # the TLS files, read as the relay will use them: --check reads them too
        ssl_context = tls_files(config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print("config ok")
        return 0
    setup_logging(args.log_level or config.log_level, config.log_format)
    log = logging.getLogger("relay")
    shown = "127.0.0.1" if config.host in ("0.0.0.0", "::") else config.host
    log.info("relay listening", extra={"url": f"{config.scheme}://{shown}:{config.port}/",
                                       "renditions": ",".join(r.name for r in config.renditions),
                                       "auth": config.auth.enabled})
    try:
        # shutdown_timeout: aiohttp waits this long for requests in flight (a record upload,
        # a slow client) before the cleanup steps; its default, 60 s, kept a restarting
        # centre deaf for a minute with its port already closed. Uploads resume by seq.
        web.run_app(create_app(config), host=config.host, port=config.port, print=None,
                    access_log=None, handler_cancellation=True, ssl_context=ssl_context,
                    shutdown_timeout=SHUTDOWN_GRACE_S)
    except OSError as exc:  # a port in use: say which, in one line
        log.error("cannot start: %s", exc.strerror or exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Optional HTTP Basic authentication (`--api-auth user:pass[,user2:pass2]`, A1111's flag and format), and what
the server says about the address it listens on.

A1111 puts `--api-auth` on its /sdapi routes only. Here it covers every request, the /controlnet routes, the page
and its websocket too: the page generates through the same service, so leaving it open would bypass the API's
credentials. Browsers ask for the credentials once and send them with every later request of the page.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import secrets

REALM = "ControlNet standalone host"
# A1111's answer to wrong credentials (modules/api/api.py `auth`)
BAD_CREDENTIALS = "Incorrect username or password"


def parse_credentials(text: str | None) -> dict[str, str]:
    """`"user:pass,user2:pass2"` -> {user: password}; ValueError naming the malformed entry."""
    if not text:
        return {}
    credentials = {}
    for entry in text.split(","):
        user, sep, password = entry.strip().partition(":")
        if not sep or not user or not password:
            raise ValueError(f"--api-auth entry {entry.strip()!r} is not user:password")
        credentials[user] = password
    return credentials


def _authorised(header: bytes | None, credentials: dict[str, str]) -> bool:
    if not header or header[:6].lower() != b"basic ":
        return False
    try:
        user, sep, password = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return False
    expected = credentials.get(user)
    # compare_digest on both always: the time taken says nothing about which part was wrong
    user_ok = expected is not None
    password_ok = secrets.compare_digest(password.encode(), (expected or "").encode())
    return bool(sep) and user_ok and password_ok


class BasicAuth:
    """Pure ASGI middleware: every http and websocket request needs one of the credentials."""

    def __init__(self, app, credentials: dict[str, str]):
        self.app = app
        self.credentials = dict(credentials)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        header = dict(scope.get("headers") or []).get(b"authorization")
        if _authorised(header, self.credentials):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps({"detail": BAD_CREDENTIALS, "error": "HTTPException", "field": None, "body": "",
                           "errors": BAD_CREDENTIALS}).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", f'Basic realm="{REALM}"'.encode())]})
        await send({"type": "http.response.body", "body": body})


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def exposure_notice(host: str, port: int, with_auth: bool) -> str | None:
    """What listening on `host` exposes, when it is more than this machine; None for a loopback address."""
    if is_loopback(host):
        return None
    who = "every machine that can reach this one" if host in ("0.0.0.0", "::") else f"whoever can reach {host}"
    guard = ("they need the --api-auth credentials (sent in clear text over plain HTTP: use it on trusted "
             "networks or behind an HTTPS proxy)" if with_auth else
             "there is no authentication: add --api-auth user:password to require credentials")
    return (f"listening on {host}:{port}: {who} can use the page and the whole API - generate images, run "
            f"preprocessors, list the model files and checkpoints in the models folder, read the server's "
            f"options and interrupt other users' jobs; {guard}")

"""Every response of a server running the demo model says so: an `X-Demo-Model` header on each (API, page,
static files), besides the notice the generation responses and the infotext carry."""

from __future__ import annotations

NOTICE_HEADER = "x-demo-model"


class NoticeHeader:
    """Pure ASGI middleware (unlike BaseHTTPMiddleware it leaves streaming and websockets alone)."""

    def __init__(self, app, notice: str | None):
        self.app = app
        self.header = (NOTICE_HEADER.encode(), notice.encode("ascii", "replace")) if notice else None

    async def __call__(self, scope, receive, send):
        if self.header is None or scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_notice(message):
            if message["type"] == "http.response.start":
                message = dict(message, headers=[*message.get("headers", []), self.header])
            await send(message)

        return await self.app(scope, receive, send_with_notice)

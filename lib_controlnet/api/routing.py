"""The router's one error handler: every ControlNetError leaves as JSON with the status `http_status` gives.

It sits on the route class rather than on the app, so it works in whatever app mounts the router (A1111's,
Forge's, a test app) without touching that app's own handlers. Anything else (FastAPI's validation errors,
bugs) goes on to the host's handlers unchanged.
"""

from __future__ import annotations

import logging

from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from lib_controlnet.errors import ControlNetError, http_status

logger = logging.getLogger(__name__)


def error_response(exc: ControlNetError) -> JSONResponse:
    status = http_status(exc)
    (logger.error if status >= 500 else logger.warning)("%s", exc.describe())
    # `detail` carries the bare message so the reference's exact strings ("No image selected", ...) come
    # through for clients that compare them; `field` says which request field it is about.
    return JSONResponse(status_code=status,
                        content={"detail": exc.message, "error": type(exc).__name__, "field": exc.field})


class ControlNetRoute(APIRoute):
    def get_route_handler(self):
        handler = super().get_route_handler()

        async def handle(request):
            try:
                return await handler(request)
            except ControlNetError as exc:
                return error_response(exc)

        return handle

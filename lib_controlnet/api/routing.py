"""The router's one error handler: every ControlNetError leaves as JSON with the status `http_status` gives, and
a request FastAPI cannot even validate (a wrong-typed field, a body that is not JSON) leaves as a 422 in the
same `{"detail", "error", "field"}` shape rather than pydantic's list.

It sits on the route class rather than on the app, so it works in whatever app mounts the router (A1111's,
Forge's, a test app) without touching that app's own handlers. Anything else (bugs) goes on to the host's
handlers unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from lib_controlnet.errors import ControlNetError, http_status

logger = logging.getLogger(__name__)
_LOCATIONS = ("body", "query", "path", "header", "cookie")


def error_response(exc: ControlNetError) -> JSONResponse:
    status = http_status(exc)
    (logger.error if status >= 500 else logger.warning)("%s", exc.describe())
    # `detail` carries the bare message so the reference's exact strings ("No image selected", ...) come
    # through for clients that compare them; `field` says which request field it is about.
    return JSONResponse(status_code=status,
                        content={"detail": exc.message, "error": type(exc).__name__, "field": exc.field})


def field_path(location: Sequence, body_name: str = "body") -> str | None:
    """pydantic's error location -> the field as a client wrote it: ("body", "units", 0, "weight") ->
    "units[0].weight"; a list body's items are named after its parameter ("pose_data[0].people"); None for
    the body as a whole."""
    parts = list(location)
    if parts and parts[0] in _LOCATIONS:
        parts = parts[1:]
    text = body_name if parts and isinstance(parts[0], int) else ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or None


def validation_content(exc: RequestValidationError, body_name: str = "body") -> dict:
    """`{"detail", "error", "field", "errors"}` for a request that failed FastAPI's validation: the first
    problem in words; pydantic's list stays under "errors", without the echoed request text."""
    problems = [{k: v for k, v in p.items() if k in ("loc", "msg", "type")} for p in exc.errors()]
    first = problems[0] if problems else {"loc": (), "msg": "invalid request", "type": ""}
    if first.get("type") == "value_error.jsondecode":
        return {"detail": f"the request body is not valid JSON ({first.get('msg', '')})",
                "error": type(exc).__name__, "field": None, "errors": problems}
    field = field_path(first.get("loc", ()), body_name)
    detail = f"{field}: {first.get('msg', '')}" if field else f"request body: {first.get('msg', '')}"
    if len(problems) > 1:
        detail += f" (and {len(problems) - 1} more)"
    return {"detail": detail, "error": type(exc).__name__, "field": field, "errors": problems}


def validation_response(exc: RequestValidationError, body_name: str = "body") -> JSONResponse:
    content = validation_content(exc, body_name)
    logger.warning("%s", content["detail"])
    return JSONResponse(status_code=422, content=_jsonable(content))


def _jsonable(content: dict) -> dict:
    from fastapi.encoders import jsonable_encoder

    return jsonable_encoder(content)


class ControlNetRoute(APIRoute):
    def get_route_handler(self):
        handler = super().get_route_handler()
        body_name = self.body_field.name if self.body_field is not None else "body"

        async def handle(request):
            try:
                return await handler(request)
            except ControlNetError as exc:
                return error_response(exc)
            except RequestValidationError as exc:
                return validation_response(exc, body_name)

        return handle

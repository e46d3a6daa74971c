"""Errors as A1111's API answers them, `{"error", "detail", "body", "errors"}` with the exception's status, and
every one with a `field` (None when it is about no field), so that a client reads one shape for every 4xx.

ControlNetErrors also carry `unit` and `message`, and their status comes from `lib_controlnet.errors.http_status`
(422 bad input, 404 unknown model, 501 missing dependency, ...); `detail` is the full sentence ("ControlNet unit
1, field 'model': ...", "Generation field 'width': ..."). A request FastAPI cannot validate (a wrong-typed field,
a body that is not JSON) answers 422 with `detail` in words and pydantic's list under `errors` (A1111 answers
pydantic's list as `detail`). The /controlnet/* routes answer their own errors (lib_controlnet.api.routing), in
the same shape. A request interrupted while it waited in the queue answers 409.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from lib_controlnet.api.routing import validation_content
from lib_controlnet.errors import ControlNetError, http_status

from .jobs import JobCancelled

logger = logging.getLogger("standalone.server")


def error_body(exc: BaseException) -> dict:
    if isinstance(exc, ControlNetError):
        return {"error": type(exc).__name__, "detail": exc.describe(), "body": "", "errors": str(exc),
                "unit": exc.unit, "field": exc.field, "message": exc.message}
    detail = getattr(exc, "detail", "") or str(exc)
    return {"error": type(exc).__name__, "detail": detail, "body": "", "errors": str(exc) or str(detail),
            "field": None}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ControlNetError)
    async def controlnet_error(request: Request, exc: ControlNetError):
        status = http_status(exc)
        (logger.error if status >= 500 else logger.warning)("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse(status_code=status, content=error_body(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        content = validation_content(exc)
        logger.warning("%s %s: %s", request.method, request.url.path, content["detail"])
        return JSONResponse(status_code=422, content=jsonable_encoder({**content, "body": ""}))

    @app.exception_handler(JobCancelled)
    async def cancelled(request: Request, exc: JobCancelled):  # 409: the client's own interrupt, not a failure
        logger.info("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse(status_code=409, content={**error_body(exc), "task_id": exc.job.task_id})

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return JSONResponse(status_code=exc.status_code, content=error_body(exc), headers=exc.headers)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception):
        logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse(status_code=500, content=error_body(exc))

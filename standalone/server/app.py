"""The FastAPI app: A1111's /sdapi/v1 generation routes, every /controlnet/* route, and the page at `/`.

    app = create_app(GenerationService(config, load_checkpoint(config.models_dir, config.ckpt)))

The page at `/` is the gradio app of `gradio_page` (with the ControlNet panel) when gradio is installed, else
the plain form of `page`, which is always at `/simple`. Generation routes are plain `def`s: FastAPI runs them in
worker threads, where they wait for their turn in the service's queue; progress and interrupt are `async` and
answer at once, also while a job runs.
"""

from __future__ import annotations

import importlib.util
import logging

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse

from lib_controlnet.api import create_router

from ..samplers import SAMPLERS
from .auth import BasicAuth
from .errors import install_error_handlers
from .notice import NoticeHeader
from .page import page_html
from .schemas import Img2ImgBody, Txt2ImgBody
from .service import GenerationService

logger = logging.getLogger("standalone.server")


def create_app(service: GenerationService, *, with_panel: bool | None = None) -> FastAPI:
    """`with_panel`: mount the gradio page with the ControlNet panel at `/` (default: when gradio is installed);
    otherwise `/` is the plain HTML form, which is always at `/simple` too."""
    app = FastAPI(title="ControlNet standalone host", description="A1111-compatible API without a WebUI")
    app.state.service = service
    install_error_handlers(app)
    if service.notice:
        app.add_middleware(NoticeHeader, notice=service.notice)
    if service.config.api_auth:
        app.add_middleware(BasicAuth, credentials=service.config.api_auth)  # outermost: before anything answers

    @app.post("/sdapi/v1/txt2img")
    def txt2img(body: Txt2ImgBody) -> dict:
        return service.generate(body)

    @app.post("/sdapi/v1/img2img")
    def img2img(body: Img2ImgBody) -> dict:
        return service.generate(body)

    @app.get("/sdapi/v1/progress")
    async def progress(skip_current_image: bool = False) -> dict:
        return service.queue.progress(service.notice)

    @app.post("/sdapi/v1/interrupt")
    async def interrupt(task_id: str | None = None) -> dict:
        """A1111's route (the running job); with `?task_id=` the job with that id, running or waiting."""
        if not service.queue.interrupt(task_id) and task_id is not None:
            raise HTTPException(status_code=404, detail=f"no running or waiting request has task id {task_id!r}")
        return {}

    @app.get("/sdapi/v1/sd-models")
    def sd_models() -> list:
        return service.sd_models()

    @app.get("/sdapi/v1/samplers")
    async def samplers() -> list:
        return [{"name": s.name, "aliases": list(s.aliases), "options": {}} for s in SAMPLERS]

    @app.get("/sdapi/v1/options")
    async def options() -> dict:
        """The options this host has: the checkpoint and the ControlNet settings (read-only here)."""
        from lib_controlnet.settings import SETTINGS

        values = {s.key: service.config.option(s.key) for s in SETTINGS}
        return {"sd_model_checkpoint": service.checkpoint_title(), **values}

    @app.get("/standalone/info")
    async def info() -> dict:
        return {"checkpoint": service.checkpoint_title(), "is_demo_model": service.checkpoint.is_demo,
                "notice": service.notice, "unit_count": service.unit_count(),
                "skipped_checkpoints": service.checkpoint.skipped}

    app.include_router(create_router(service.preprocessors, service.result_cache, models=service.models,
                                     unit_count=service.unit_count))

    @app.get("/simple", response_class=HTMLResponse)
    async def simple_page() -> HTMLResponse:
        return HTMLResponse(page_html(service))

    if with_panel is None:
        with_panel = importlib.util.find_spec("gradio") is not None
    if with_panel:
        import gradio as gr

        from .gradio_page import build_blocks

        # mounted last: every route above matches first, the gradio app gets `/` and its own paths
        gr.mount_gradio_app(app, build_blocks(service), path="/")
    else:
        logger.warning("gradio is not installed: the page at / is the plain form, without the ControlNet panel")
        app.add_api_route("/", simple_page, methods=["GET"], response_class=HTMLResponse)
    return app

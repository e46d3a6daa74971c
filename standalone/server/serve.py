"""Start the server: load the checkpoint (or the demo model), build the app, run uvicorn until stopped."""

from __future__ import annotations

import logging

from .app import create_app
from .auth import exposure_notice
from .checkpoints import load_checkpoint
from .config import ServerConfig
from .service import GenerationService

logger = logging.getLogger("standalone.server")


def build_app(config: ServerConfig):
    checkpoint = load_checkpoint(config.models_dir, config.ckpt, config.controlnet_dirs, demo=config.demo)
    return create_app(GenerationService(config, checkpoint))


def serve(config: ServerConfig, host: str = "127.0.0.1", port: int = 7860) -> None:
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = build_app(config)
    service = app.state.service
    logger.info("Checkpoint: %s", service.checkpoint_title())
    if service.notice:
        logger.warning("%s", service.notice)
    logger.info("Serving on http://%s:%d (page at /, API at /sdapi/v1 and /controlnet, docs at /docs)", host, port)
    exposure = exposure_notice(host, port, with_auth=bool(config.api_auth))
    if exposure:
        logger.warning("%s", exposure)
    uvicorn.run(app, host=host, port=port, log_level="info")

"""The standalone host's HTTP server: A1111's API and a page, over `standalone.Pipeline` and `lib_controlnet`.

    python launch.py                      # installs what is missing, then serve(...) on 127.0.0.1:7860
    app = build_app(ServerConfig(models_dir=Path("models")))   # or create_app(GenerationService(...))

Modules: config (what the server is started with), checkpoints (which SD checkpoint, else the demo model),
schemas (A1111's request bodies), payload (a body -> pipeline fields; what is refused or only noted),
alwayson (alwayson_scripts -> ControlNet units), jobs (the one-at-a-time queue, progress, interrupt),
service (a generation: units prepared by the core, infotext, detected maps, A1111's response), encoding (PNG
base64 with the infotext chunk), errors (A1111's error bodies), notice (the demo-model header), gradio_page
(`/`: the form and the ControlNet panel), page (`/simple`: the same without gradio), app (the routes), serve
(uvicorn).
"""

from .app import create_app
from .checkpoints import LoadedCheckpoint, load_checkpoint
from .config import ServerConfig
from .serve import build_app, serve
from .service import GenerationService

__all__ = ["GenerationService", "LoadedCheckpoint", "ServerConfig", "build_app", "create_app", "load_checkpoint",
           "serve"]

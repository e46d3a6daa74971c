"""One server for the package: the demo model in a temporary models folder, served by uvicorn on 127.0.0.1 from a
thread (a real socket), and an httpx client bound to it."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch
import uvicorn

from annotator.neural import weights
from standalone import ensure_demo_models
from standalone.server import ServerConfig, build_app

START_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="package", autouse=True)
def one_torch_thread():
    """The server thread and the client threads share 2 cores: one intra-op thread each avoids oversubscription
    (which made a 4-step 64x64 step 30x slower under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="package")
def sdxl_demo_files(tmp_path_factory) -> Path:
    """The SDXL demo's files, made once for the package (seconds); `with_sdxl_demo` links them into a module's
    own models folder, where the server finds them current and does not make them again."""
    root = tmp_path_factory.mktemp("sdxl-demo")
    ensure_demo_models(root, "sdxl")
    return root


def with_sdxl_demo(files: Path, models_dir: Path) -> Path:
    shutil.copytree(files / "demo", models_dir / "demo", copy_function=os.link, dirs_exist_ok=True)
    return models_dir


@pytest.fixture(scope="package")
def models_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("server-models")


@pytest.fixture(scope="package")
def app(models_dir, one_torch_thread):
    return build_app(ServerConfig(models_dir=models_dir, demo="sd15"))  # the random demo these tests know


@pytest.fixture(scope="package")
def service(app):
    return app.state.service


@contextlib.contextmanager
def own_app(config: ServerConfig):
    """A module's own server app. Building a service points the annotators at its models folder (process-wide),
    so the package's folder is put back when the module is done."""
    saved = weights._folder
    try:
        yield build_app(config)
    finally:
        weights._folder = saved


@contextlib.contextmanager
def serving(app):
    """`app` served by uvicorn from a thread on a free loopback port; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="package")
def base_url(app):
    with serving(app) as url:
        yield url


@pytest.fixture(scope="package")
def client(base_url):
    with httpx.Client(base_url=base_url, timeout=120) as c:
        yield c

"""The security matrix through the real server: images only as base64 in every image field (a server path or a URL
is never opened or fetched), decompression bombs refused before their pixels are decoded, hostile model and
module names refused, the loopback default and what another address exposes, and `--api-auth`.
Hostile model files and names at the core are tests/test_security_matrix.py."""

from __future__ import annotations

import base64
import http.server
import io
import logging
import threading

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageFile

import launch
from lib_controlnet.units.image_input import MAX_PIXELS
from standalone.server import ServerConfig, create_app
from standalone.server.auth import exposure_notice, parse_credentials
from standalone.server.service import GenerationService
from tests.standalone_server.server_helpers import body, gradient, png_b64, unit

# --- every field an image can arrive in ----------------------------------------------------------------------
IMAGE_FIELDS = {
    "unit image": lambda v: ("/sdapi/v1/txt2img", body(unit(image=v)), "image"),
    "unit mask": lambda v: ("/sdapi/v1/txt2img", body(unit(mask=v)), "mask"),
    "unit image dict": lambda v: ("/sdapi/v1/txt2img", body(unit(image={"image": v})), "image"),
    "unit [image, mask]": lambda v: ("/sdapi/v1/txt2img", body(unit(image=[png_b64(gradient()), v])), "image[1]"),
    "multi-input": lambda v: ("/sdapi/v1/txt2img", body(unit(image=[{"image": v}])), "image[0]"),
    "effective_region_mask": lambda v: ("/sdapi/v1/txt2img", body(unit(effective_region_mask=v)),
                                        "effective_region_mask"),
    "init_images": lambda v: ("/sdapi/v1/img2img", body(init_images=[v]), "init_images[0]"),
    "img2img mask": lambda v: ("/sdapi/v1/img2img", body(init_images=[png_b64(gradient())], mask=v), "mask"),
    "detect image": lambda v: ("/controlnet/detect", {"controlnet_module": "canny", "controlnet_input_images": [v]},
                               "controlnet_input_images[0]"),
    "detect mask": lambda v: ("/controlnet/detect", {"controlnet_module": "inpaint", "controlnet_input_images": [
        png_b64(gradient())], "controlnet_masks": [v]}, "controlnet_masks[0]"),
}


@pytest.fixture(scope="module")
def image_on_disk(tmp_path_factory):
    path = tmp_path_factory.mktemp("server-files") / "secret.png"
    Image.fromarray(gradient()).save(path)
    return path


@pytest.fixture(scope="module")
def loopback_image_server(image_on_disk):
    """A loopback HTTP server that serves a real PNG and counts requests: a fetch would succeed, and be seen."""
    hits = []
    data = image_on_disk.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            hits.append(self.path)
            self.send_response(200)
            self.send_header("content-type", "image/png")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/cat.png", hits
    server.shutdown()
    server.server_close()


@pytest.fixture
def opened(monkeypatch, image_on_disk):
    """Records every attempt to open the server-side image, by any means Python code would use."""
    seen = []
    real_open = open
    real_pil_open = Image.open

    def spy_open(path, *args, **kwargs):
        if str(path).endswith(image_on_disk.name):
            seen.append(str(path))
        return real_open(path, *args, **kwargs)

    def spy_pil(fp, *args, **kwargs):
        if isinstance(fp, (str, bytes)) or hasattr(fp, "__fspath__"):
            seen.append(str(fp))
        return real_pil_open(fp, *args, **kwargs)

    monkeypatch.setattr("builtins.open", spy_open)
    monkeypatch.setattr(Image, "open", spy_pil)
    return seen


@pytest.mark.parametrize("where", IMAGE_FIELDS)
def test_a_server_path_is_never_opened_in_any_image_field(client, where, image_on_disk, opened):
    for text in (str(image_on_disk), f"file://{image_on_disk}", "../" * 8 + str(image_on_disk).lstrip("/")):
        route, payload, field = IMAGE_FIELDS[where](text)
        response = client.post(route, json=payload)
        assert response.status_code == 422, (where, response.text)
        assert response.json()["field"] == field
    assert opened == []


@pytest.mark.parametrize("where", IMAGE_FIELDS)
def test_a_url_is_never_fetched_in_any_image_field(client, where, loopback_image_server):
    url, hits = loopback_image_server
    for text in (url, url.replace("http", "https"), "//" + url.split("//")[1]):
        route, payload, field = IMAGE_FIELDS[where](text)
        response = client.post(route, json=payload)
        assert response.status_code == 422, (where, response.text)
        assert response.json()["field"] == field
    assert hits == []


def _bomb() -> str:
    side = int(MAX_PIXELS**0.5) + 64  # just over the limit: 1-bit, so the file stays small
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, format="PNG", optimize=True)
    assert len(buffer.getvalue()) < 1_500_000
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def bomb():
    return _bomb()


@pytest.fixture
def decoded_sizes(monkeypatch):
    """(width, height) of every image whose pixels Pillow decodes while the test runs."""
    sizes = []
    real_load = ImageFile.ImageFile.load

    def load(self):
        sizes.append(self.size)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return sizes


@pytest.mark.parametrize("where", IMAGE_FIELDS)
def test_a_decompression_bomb_is_refused_before_decoding(client, where, bomb, decoded_sizes):
    route, payload, field = IMAGE_FIELDS[where](bomb)
    response = client.post(route, json=payload)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field and f"larger than {MAX_PIXELS} pixels" in response.json()["detail"]
    assert all(w * h <= MAX_PIXELS for w, h in decoded_sizes), decoded_sizes


# --- names ---------------------------------------------------------------------------------------------------
HOSTILE = ["../demo-random-weights-controlnet-sd15", "/etc/passwd", "..", "http://127.0.0.1:1/x.safetensors",
           "demo-random-weights-controlnet-sd15\0", "C:\\models\\x.safetensors", "ControlNet/../../Stable-diffusion"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_refused_through_the_api(client, name):
    response = client.post("/sdapi/v1/txt2img", json=body(unit(model=name)))
    assert response.status_code == 404 and response.json()["field"] == "model"
    response = client.post("/sdapi/v1/txt2img", json=body(unit(module=name)))
    assert response.status_code == 422 and response.json()["field"] == "module"
    response = client.post("/controlnet/detect", json={"controlnet_module": name,
                                                        "controlnet_input_images": [png_b64(gradient())]})
    assert response.status_code == 422 and response.json()["field"] == "controlnet_module"
    response = client.post("/sdapi/v1/txt2img", json=body(override_settings={"sd_model_checkpoint": name}))
    assert response.status_code == 404 and response.json()["field"] == "override_settings.sd_model_checkpoint"


# --- where it listens ----------------------------------------------------------------------------------------
def test_loopback_by_default_and_another_address_says_what_it_exposes(monkeypatch, app, caplog):
    assert launch.parse_args([]).host == "127.0.0.1"
    for host in ("127.0.0.1", "localhost", "::1"):
        assert exposure_notice(host, 7860, with_auth=False) is None
    notice = exposure_notice("0.0.0.0", 7860, with_auth=False)
    assert "every machine that can reach this one" in notice and "no authentication" in notice
    for words in ("generate images", "list the model files", "interrupt other users' jobs", "--api-auth"):
        assert words in notice
    assert "credentials" in exposure_notice("192.168.1.5", 80, with_auth=True)

    import importlib

    import uvicorn

    serve_module = importlib.import_module("standalone.server.serve")

    started = []
    monkeypatch.setattr(serve_module, "build_app", lambda config: app)
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **kw: started.append((host, port)))
    with caplog.at_level(logging.WARNING, logger="standalone.server"):
        serve_module.serve(ServerConfig(models_dir=app.state.service.config.models_dir), host="0.0.0.0", port=1)
    assert started == [("0.0.0.0", 1)]
    assert any("listening on 0.0.0.0:1" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="standalone.server"):
        serve_module.serve(ServerConfig(models_dir=app.state.service.config.models_dir))
    assert not any("listening on" in r.getMessage() for r in caplog.records)


# --- --api-auth ----------------------------------------------------------------------------------------------
def test_api_auth_is_parsed_like_a1111s_flag():
    assert parse_credentials("alice:s3cret,bob:pa:ss") == {"alice": "s3cret", "bob": "pa:ss"}
    assert parse_credentials(None) == {}
    for bad in ("alice", "alice:", ":pw", "alice:pw,"):
        with pytest.raises(ValueError, match="user:password"):
            parse_credentials(bad)
    assert launch.parse_args(["--api-auth", "a:b"]).api_auth == "a:b"


@pytest.fixture(scope="module")
def auth_client(service):
    config = ServerConfig(models_dir=service.config.models_dir, api_auth={"alice": "s3cret"})
    app = create_app(GenerationService(config, service.checkpoint), with_panel=True)
    with TestClient(app) as c:
        yield c


def _basic(user: str, password: str) -> dict:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


PROTECTED = [("get", "/sdapi/v1/sd-models"), ("get", "/controlnet/model_list"), ("get", "/"), ("get", "/simple"),
             ("get", "/openapi.json"), ("get", "/docs"), ("get", "/config"), ("post", "/sdapi/v1/interrupt")]


def test_api_auth_guards_every_route_and_the_page(auth_client):
    for method, path in PROTECTED:
        for headers in ({}, _basic("alice", "wrong"), _basic("mallory", "s3cret"), {"authorization": "Bearer x"},
                        {"authorization": "Basic !!!"}):
            response = getattr(auth_client, method)(path, headers=headers)
            assert response.status_code == 401, (path, headers)
            assert response.headers["www-authenticate"].startswith("Basic ")
            assert response.json() == {"detail": "Incorrect username or password", "error": "HTTPException",
                                       "field": None, "body": "", "errors": "Incorrect username or password"}
        assert getattr(auth_client, method)(path, headers=_basic("alice", "s3cret")).status_code == 200, path
    generated = auth_client.post("/sdapi/v1/txt2img", json=body(unit(), steps=1), headers=_basic("alice", "s3cret"))
    assert generated.status_code == 200 and generated.json()["images"]


def test_api_auth_guards_the_pages_websocket(auth_client):
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect) as info, auth_client.websocket_connect("/queue/join") as ws:
        ws.receive_text()
    assert info.value.code == 1008
    with auth_client.websocket_connect("/queue/join", headers=_basic("alice", "s3cret")) as ws:
        assert "send_hash" in ws.receive_text()  # gradio's queue greets an authorised page

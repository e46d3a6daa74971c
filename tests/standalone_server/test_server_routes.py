"""The other routes: A1111's model list, samplers, options, the /controlnet/* routes, the page."""

from __future__ import annotations

from standalone import DEMO_NOTICE
from standalone.server.notice import NOTICE_HEADER
from tests.standalone_server.server_helpers import CONTROLNET


def test_sd_models_lists_the_loaded_demo_checkpoint(client, service):
    models = client.get("/sdapi/v1/sd-models").json()
    assert models[0]["model_name"] == "demo-random-weights-sd15"
    assert models[0]["title"] == service.checkpoint_title() and len(models[0]["hash"]) == 10
    assert set(models[0]) == {"title", "model_name", "hash", "sha256", "filename", "config"}


def test_controlnet_routes_come_from_the_core_router(client):
    assert client.get("/controlnet/version").json() == {"version": 3}
    names = client.get("/controlnet/model_list").json()["model_list"]
    assert len(names) == 1 and names[0].startswith(CONTROLNET + " [")
    modules = client.get("/controlnet/module_list").json()
    assert modules["module_list"][0] == "none" and "canny" in modules["module_detail"]
    assert client.get("/controlnet/settings").json() == {"control_net_unit_count": 3}
    assert "Canny" in client.get("/controlnet/control_types").json()["control_types"]
    error = client.post("/controlnet/detect", json={"controlnet_module": "nope", "controlnet_input_images": []})
    assert error.status_code == 422 and error.json()["detail"].startswith("Module not available: 'nope' ")


def test_samplers_and_options(client, service):
    names = [s["name"] for s in client.get("/sdapi/v1/samplers").json()]
    assert names[:3] == ["Euler", "Euler a", "DPM++ 2M"]
    options = client.get("/sdapi/v1/options").json()
    assert options["sd_model_checkpoint"] == service.checkpoint_title()
    assert options["control_net_no_detectmap"] is False


def test_every_response_carries_the_demo_notice(client):
    for path in ("/", "/sdapi/v1/progress", "/controlnet/version", "/no/such/route"):
        assert client.get(path).headers[NOTICE_HEADER] == DEMO_NOTICE, path


def test_the_page_mounts_the_controlnet_panel_for_both_tabs(client, service):
    page = client.get("/")
    assert page.status_code == 200 and "gradio" in page.text
    config = client.get("/config").json()
    ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
    for tab in ("txt2img", "img2img"):
        assert {f"{tab}_controlnet", f"{tab}_prompt", f"{tab}_steps", f"{tab}_width", f"{tab}_seed", f"{tab}_generate",
                f"{tab}_interrupt", f"{tab}_gallery"} <= ids
        assert sum(1 for i in ids if i and i.startswith(f"{tab}_controlnet_ControlNet-") and i.endswith("_tab")) == 3
    assert {"img2img_image", "img2img_denoising_strength", "demo_notice"} <= ids
    assert service.notice in str(config)


def test_the_plain_page_has_the_form_the_units_and_the_notice(client):
    page = client.get("/simple")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = page.text
    for element in ('id="prompt"', 'id="negative_prompt"', 'id="steps"', 'id="width"', 'id="height"', 'id="seed"',
                    'id="sampler_name"', 'id="cfg_scale"', 'id="progress"', 'id="gallery"', 'id="units"',
                    'id="interrupt"', '"unit_count": 3'):
        assert element in text, element
    assert "random-weight DEMO model" in text
    for route in ("/sdapi/v1/progress", "/controlnet/detect", "/controlnet/module_list", "/sdapi/v1/${mode}"):
        assert route in text

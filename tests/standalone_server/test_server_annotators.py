"""The standalone host points the neural annotators at <models dir>/annotators (or the setting's folder), on
the checkpoint's device, with the ControlNet cache size; a missing weight file is a 404 naming it."""

from __future__ import annotations

from annotator.neural import runtime
from annotator.neural.weights import weights_folder
from tests.standalone_server.server_helpers import png_b64, square


def test_annotators_use_the_servers_models_folder(app, models_dir, service):
    assert weights_folder() == models_dir / "annotators"
    models = runtime.default_models()
    assert models.device == service.checkpoint.model.device
    assert models._cache.capacity == max(runtime.MIN_CAPACITY, service.config.option("control_net_model_cache_size"))


def test_missing_annotator_file_names_file_and_folder(client, models_dir):
    response = client.post("/controlnet/detect", json={"controlnet_module": "softedge_hed",
                                                       "controlnet_input_images": [png_b64(square())]})
    assert response.status_code == 404
    text = response.text
    assert "ControlNetHED.pth" in text and str(models_dir / "annotators") in text

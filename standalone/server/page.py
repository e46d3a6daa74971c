"""The plain page at `/simple` (and at `/` when gradio is not installed): a txt2img/img2img form with simple
ControlNet unit fields, a progress bar and the result gallery.

Plain HTML and a little JavaScript over the same HTTP API an external client uses (/sdapi/v1/*, /controlnet/*),
so the page exercises exactly what API users get. The full ControlNet panel is on the gradio page (gradio_page).
"""

from __future__ import annotations

import html
import json

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ControlNet standalone</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;margin:1rem auto;max-width:1100px;padding:0 1rem;color:#222}
.notice{background:#fff3cd;border:1px solid #e0b400;padding:.6rem .8rem;border-radius:6px;margin-bottom:1rem}
.error{color:#a00;white-space:pre-wrap}
fieldset{border:1px solid #ccc;border-radius:6px;margin:.5rem 0}
label{display:inline-block;margin:.2rem .8rem .2rem 0}
textarea{width:100%;box-sizing:border-box}
input[type=number]{width:6rem}
#gallery img{max-width:256px;margin:.3rem;border:1px solid #ccc;image-rendering:pixelated}
progress{width:100%;height:1.2rem}
.unit img{max-height:128px;vertical-align:top;margin-left:.5rem}
pre{white-space:pre-wrap;background:#f6f6f6;padding:.5rem;border-radius:6px}
</style></head><body>
<h1>ControlNet standalone</h1>
__NOTICE__
<p>Checkpoint: <b id="checkpoint">__CHECKPOINT__</b> &middot; API: <a href="/docs">/docs</a></p>
<form id="form">
<label>Mode <select id="mode"><option value="txt2img">txt2img</option>
<option value="img2img">img2img</option></select></label>
<label>Prompt<br><textarea id="prompt" rows="2">a photo of a cat</textarea></label>
<label>Negative prompt<br><textarea id="negative_prompt" rows="1"></textarea></label>
<div>
<label>Steps <input type="number" id="steps" value="20" min="1" max="150"></label>
<label>Width <input type="number" id="width" value="__SIZE__" min="64" max="2048" step="8"></label>
<label>Height <input type="number" id="height" value="__SIZE__" min="64" max="2048" step="8"></label>
<label>Seed <input type="number" id="seed" value="-1"></label>
<label>Sampler <select id="sampler_name"><option>Euler</option></select></label>
<label>CFG scale <input type="number" id="cfg_scale" value="7" min="0" max="30" step="0.5"></label>
<label>Batch size <input type="number" id="batch_size" value="1" min="1" max="8"></label>
</div>
<fieldset id="img2img" hidden><legend>img2img</legend>
<label>Init image <input type="file" id="init_image" accept="image/*"></label>
<label>Mask (white = repaint, optional) <input type="file" id="mask" accept="image/*"></label>
<label>Denoising strength <input type="number" id="denoising_strength" value="0.75" min="0" max="1" step="0.05"></label>
</fieldset>
<h2>ControlNet</h2>
<div id="units"></div>
<p><button type="submit" id="generate">Generate</button> <button type="button" id="interrupt">Interrupt</button></p>
</form>
<progress id="progress" value="0" max="1"></progress> <span id="progress_text"></span>
<div id="error" class="error"></div>
<div id="gallery"></div>
<pre id="info"></pre>
<script>
const CONFIG = __CONFIG__;
const $ = (id) => document.getElementById(id);
const CONTROL_MODES = ["Balanced", "My prompt is more important", "ControlNet is more important"];
const RESIZE_MODES = ["Crop and Resize", "Just Resize", "Resize and Fill"];
function options(values, selected) {
  return values.map(v => `<option${v === selected ? " selected" : ""}>${escapeHtml(v)}</option>`).join("");
}
function escapeHtml(text) {
  const entities = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"};
  return String(text).replace(/[&<>"']/g, c => entities[c]);
}
function readFile(input) {
  const file = input.files && input.files[0];
  if (!file) return Promise.resolve(null);
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}
async function api(path, body) {
  const response = await fetch(path, body === undefined ? {} :
    {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  const data = await response.json();
  if (!response.ok) {
    const detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail || data);
    throw new Error(`${response.status}: ${detail}`);
  }
  return data;
}
function unitHtml(i, modules, models) {
  return `<fieldset class="unit" id="unit${i}"><legend>Unit ${i}</legend>
  <label><input type="checkbox" class="enabled"> Enable</label>
  <label>Image <input type="file" class="image" accept="image/*"></label>
  <label>Preprocessor <select class="module">${options(modules, "none")}</select></label>
  <label>Model <select class="model">${options(["None", ...models], "None")}</select></label>
  <label>Weight <input type="number" class="weight" value="1" min="0" max="2" step="0.05"></label>
  <label>Start <input type="number" class="guidance_start" value="0" min="0" max="1" step="0.05"></label>
  <label>End <input type="number" class="guidance_end" value="1" min="0" max="1" step="0.05"></label>
  <label>Control mode <select class="control_mode">${options(CONTROL_MODES, "Balanced")}</select></label>
  <label>Resize mode <select class="resize_mode">${options(RESIZE_MODES, "Crop and Resize")}</select></label>
  <label><input type="checkbox" class="pixel_perfect"> Pixel perfect</label>
  <button type="button" class="preview">Preview preprocessor</button><img class="preview_image" alt="">
  </fieldset>`;
}
async function unitPayload(el) {
  const get = (cls) => el.querySelector("." + cls);
  return {
    enabled: get("enabled").checked, module: get("module").value, model: get("model").value,
    image: await readFile(get("image")), weight: parseFloat(get("weight").value),
    guidance_start: parseFloat(get("guidance_start").value), guidance_end: parseFloat(get("guidance_end").value),
    control_mode: get("control_mode").value, resize_mode: get("resize_mode").value,
    pixel_perfect: get("pixel_perfect").checked,
  };
}
async function setup() {
  // the ControlNet models of the checkpoint's family only (the server filters: an SDXL checkpoint lists SDXL ones)
  const [modules, models, samplers] = await Promise.all([
    api("/controlnet/module_list"), Promise.resolve({model_list: CONFIG.models}), api("/sdapi/v1/samplers")]);
  $("sampler_name").innerHTML = options(samplers.map(s => s.name), "Euler");
  $("units").innerHTML = Array.from({length: CONFIG.unit_count},
    (_, i) => unitHtml(i, modules.module_list, models.model_list)).join("");
  document.querySelectorAll(".unit").forEach((el) => {
    el.querySelector(".preview").addEventListener("click", async () => {
      $("error").textContent = "";
      try {
        const unit = await unitPayload(el);
        if (!unit.image) throw new Error("choose an image for this unit first");
        const result = await api("/controlnet/detect",
          {controlnet_module: unit.module, controlnet_input_images: [unit.image]});
        el.querySelector(".preview_image").src = "data:image/png;base64," + (result.images || [""])[0];
      } catch (e) { $("error").textContent = e.message; }
    });
  });
}
$("mode").addEventListener("change", () => { $("img2img").hidden = $("mode").value !== "img2img"; });
// this page's request has its own task id, so Interrupt stops it even while it still waits in the queue
let currentTask = null;
$("interrupt").addEventListener("click", () => {
  const query = currentTask ? "?task_id=" + encodeURIComponent(currentTask) : "";
  api("/sdapi/v1/interrupt" + query, {}).catch(() => {});
});
async function poll(running) {
  while (running.value) {
    try {
      const p = await api("/sdapi/v1/progress?skip_current_image=true");
      $("progress").value = p.progress;
      const s = p.state;
      $("progress_text").textContent = s.sampling_steps ? `step ${s.sampling_step}/${s.sampling_steps}` : "";
    } catch (e) { /* the next poll tries again */ }
    await new Promise(r => setTimeout(r, 500));
  }
}
$("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("error").textContent = ""; $("gallery").innerHTML = ""; $("info").textContent = "";
  const mode = $("mode").value;
  const num = (id) => parseFloat($(id).value);
  const body = {
    prompt: $("prompt").value, negative_prompt: $("negative_prompt").value, steps: num("steps"),
    width: num("width"), height: num("height"), seed: num("seed"), sampler_name: $("sampler_name").value,
    cfg_scale: num("cfg_scale"), batch_size: num("batch_size"),
    alwayson_scripts: {controlnet: {args: await Promise.all([...document.querySelectorAll(".unit")].map(unitPayload))}},
    force_task_id: `task(page-${Date.now()}-${Math.random().toString(36).slice(2, 10)})`,
  };
  currentTask = body.force_task_id;
  if (mode === "img2img") {
    const init = await readFile($("init_image"));
    if (init) body.init_images = [init];
    const mask = await readFile($("mask"));
    if (mask) body.mask = mask;
    body.denoising_strength = num("denoising_strength");
  }
  const running = {value: true};
  poll(running);
  $("generate").disabled = true;
  try {
    const result = await api(`/sdapi/v1/${mode}`, body);
    const info = JSON.parse(result.info);
    $("gallery").innerHTML = result.images.map(b64 => `<img src="data:image/png;base64,${b64}" alt="result">`).join("");
    $("info").textContent = [...(result.warnings || []), ...info.infotexts].join("\\n\\n");
    $("progress").value = 1;
  } catch (e) {
    $("error").textContent = e.message;
  } finally {
    running.value = false;
    currentTask = null;
    $("generate").disabled = false;
  }
});
setup().catch(e => { $("error").textContent = "could not load the ControlNet lists: " + e.message; });
</script>
</body></html>
"""


def page_html(service) -> str:
    from lib_controlnet.ui.control_type_filter import models_for_family

    model = service.checkpoint.model
    config = {"unit_count": service.unit_count(), "notice": service.notice, "family": model.family,
              "models": models_for_family(service.models, model.family, refresh=True)}
    notice = f'<div class="notice" id="notice">{html.escape(service.notice)}</div>' if service.notice else ""
    # "</" must not appear inside the <script> block, whatever a setting holds
    config_js = json.dumps(config).replace("</", "<\\/")
    return (_PAGE.replace("__NOTICE__", notice)
            .replace("__CHECKPOINT__", html.escape(service.checkpoint_title()))
            .replace("__SIZE__", str(model.default_size))
            .replace("__CONFIG__", config_js))

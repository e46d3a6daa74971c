"""The standalone host's generation pipeline: SD1.x checkpoints + the ControlNet core, without a WebUI.

    from standalone import GenerationRequest, Pipeline, ensure_demo_models, load_sd_model

    model = load_sd_model(ensure_demo_models(models_dir).checkpoint)   # or a real SD1.x .safetensors
    result = Pipeline(model).generate(GenerationRequest(prompt="a cat", width=512, height=512),
                                      on_step=progress.update, interrupt=job.interrupt_event)

Modules: checkpoint (read + recognise SD1/SD2/SDXL files), unet / vae / text_encoder (the three networks),
clip_vocab (the tokenizer's files from the installed BPE file), prompt_parser / prompt_encoder (A1111 prompt
syntax and 75-token chunks), samplers (names -> diffusers schedulers), sampling (the loop), guidance (CFG
batch and the cond rows the ControlNet hook needs), odd_sizes, images, infotext, demo (the random-weight
default model), sd_model (the loaded bundle), pipeline (generate), request (its inputs and outputs).
"""

from .checkpoint import UnsupportedCheckpointError, detect_family, read_checkpoint
from .demo import DEMO_NOTICE, DemoModels, demo_paths, ensure_demo_models
from .pipeline import Pipeline
from .request import GenerationRequest, GenerationResult, StepProgress
from .samplers import resolve_sampler, sampler_names
from .sd_model import StableDiffusionModel, load_sd_model

__all__ = [
    "DEMO_NOTICE",
    "DemoModels",
    "GenerationRequest",
    "GenerationResult",
    "Pipeline",
    "StableDiffusionModel",
    "StepProgress",
    "UnsupportedCheckpointError",
    "demo_paths",
    "detect_family",
    "ensure_demo_models",
    "load_sd_model",
    "read_checkpoint",
    "resolve_sampler",
    "sampler_names",
]

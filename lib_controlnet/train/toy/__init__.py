"""The toy models the standalone host embeds, made from nothing on a CPU: synthetic scenes (`scenes`, and the
seeded set trained on, `dataset`), a small SD1.x-layout base model trained on them (`base_model`: its layout
and file; `vae_training`, `unet_training`: its two stages), a canny ControlNet trained on it with the
package's trainer, and how well it follows its control (`evaluate`, `convergence`, `figures`). `recipe` runs
it all; `python -m lib_controlnet.train.toy` is its command line."""

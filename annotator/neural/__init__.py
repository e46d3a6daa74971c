"""The neural annotators: networks written here in plain torch that load the published weight files
(mostly lllyasviel/Annotators) key for key, and the pre/post-processing the reference extension wraps
around them.

Weights are read from a local folder (`weights.weights_folder()`), never downloaded. Networks are loaded
lazily into an LRU cache like control models and visit the compute device only while they run
(`runtime.default_models()`).
"""

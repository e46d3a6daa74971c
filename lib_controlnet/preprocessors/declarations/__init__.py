"""Built-in preprocessor declarations: every module here exports a PREPROCESSORS tuple (see registry.py)."""

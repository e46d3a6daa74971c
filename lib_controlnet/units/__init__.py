"""User-level units: the `Unit` type, its images and masks, hint sizes, infotext, script overrides."""

"""The one family of errors the extension raises, and the one place that maps them to HTTP status codes.

Every error carries, where it applies, the unit index and the field it is about, so that the API, the UI
and the log all say the same thing: "unit 2, field 'model': ...".
"""

from __future__ import annotations

# What an error is about, the first word of its message. A host's own generation fields (width, steps,
# sampler_name, init_images) are not ControlNet's: their errors say "Generation field 'width': ...".
CONTROLNET = "ControlNet"
GENERATION = "Generation"


class ControlNetError(Exception):
    """Base of every error this extension raises on purpose."""

    status_code = 500

    def __init__(self, message: str, *, unit: int | None = None, field: str | None = None,
                 subject: str = CONTROLNET):
        self.message = message
        self.unit = unit
        self.field = field
        self.subject = subject
        # Instance attributes too: A1111's API error handler reads `vars(exc)` for the status and detail.
        self.status_code = type(self).status_code
        super().__init__(self.describe())
        self.detail = self.describe()

    def describe(self) -> str:
        where = []
        if self.unit is not None:
            where.append(f"unit {self.unit}")
        if self.field is not None:
            where.append(f"field '{self.field}'")
        prefix = ", ".join(where)
        return f"{self.subject} {prefix}: {self.message}" if prefix else f"{self.subject}: {self.message}"

    def refresh(self) -> ControlNetError:
        """Re-render the message after `message`, `unit` or `field` changed."""
        self.args = (self.describe(),)
        self.detail = self.describe()
        return self

    def about(self, subject: str) -> ControlNetError:
        """Say what the error is about (`GENERATION` for a host's own request fields)."""
        self.subject = subject
        return self.refresh()

    def at(self, *, unit: int | None = None, field: str | None = None) -> ControlNetError:
        """Fill in the unit/field context on the way up, keeping what is already known."""
        if self.unit is None and unit is not None:
            self.unit = unit
        if self.field is None and field is not None:
            self.field = field
        return self.refresh()


class InputError(ControlNetError):
    """The caller sent something invalid (a field out of range, bad base64, a wrong list length...)."""

    status_code = 422


class NotFoundError(ControlNetError):
    """A named model, module or file does not exist where we are allowed to look."""

    status_code = 404


class ModelFileError(ControlNetError):
    """A model file exists but cannot be used: unreadable, unsafe, or not a format we recognise."""

    status_code = 422


class NotAControlModelError(ModelFileError):
    """A readable weight file whose keys are no control model's (an SD checkpoint, a VAE, a LoRA...)."""


class UnsafeFileError(ModelFileError):
    """A file would need arbitrary code execution (a pickle with globals) to load. Never loaded."""


class IncompatibleModelError(ControlNetError):
    """The control model does not fit the host checkpoint (SD1 ControlNet on an SDXL UNet...)."""

    status_code = 422


class MissingDependencyError(ControlNetError):
    """An optional package the requested feature needs is not installed on the server."""

    status_code = 501


def http_status(exc: BaseException) -> int:
    """HTTP status for any exception: ours carry their own, everything else is a server error."""
    return exc.status_code if isinstance(exc, ControlNetError) else 500

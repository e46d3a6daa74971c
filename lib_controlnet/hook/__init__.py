"""The UNet hook: what bound units do to each call of the host UNet, through module hooks only."""

from .control_hook import CallInfo, ControlHook

__all__ = ["CallInfo", "ControlHook"]

"""The panel's HTML element ids: the reference extension's, so ui-config.json entries, browser automation and
other extensions that look our widgets up keep working.

    <tab>_controlnet                                     the panel's group (tab: txt2img / img2img)
    <tab>_controlnet_tabs                                the unit tabs
    <tab>_controlnet_ControlNet-<i>_controlnet_<widget>  a unit's controls (i from 0; "ControlNet" alone
                                                         when the panel has a single unit)
    <tab>_controlnet_ControlNet-<i>_input_image          its images (input_image, generated_image)
"""

from __future__ import annotations

TABS = ("txt2img", "img2img")


def panel_id(tab: str) -> str:
    if tab not in TABS:
        raise ValueError(f"tab must be one of {TABS}, got {tab!r}")
    return f"{tab}_controlnet"


def tabs_id(tab: str) -> str:
    return f"{panel_id(tab)}_tabs"


def unit_name(index: int, unit_count: int) -> str:
    """The reference's per-unit name inside ids: 'ControlNet-<i>', or 'ControlNet' for a one-unit panel."""
    return "ControlNet" if unit_count == 1 else f"ControlNet-{index}"


class UnitIds:
    """Element ids of one unit's widgets."""

    def __init__(self, tab: str, index: int, unit_count: int):
        self.prefix = f"{panel_id(tab)}_{unit_name(index, unit_count)}"

    def control(self, widget: str) -> str:
        """e.g. control('enable_checkbox') -> 'txt2img_controlnet_ControlNet-0_controlnet_enable_checkbox'."""
        return f"{self.prefix}_controlnet_{widget}"

    def image(self, which: str) -> str:
        """e.g. image('input_image') -> 'txt2img_controlnet_ControlNet-0_input_image'."""
        return f"{self.prefix}_{which}"

"""Marking enabled units in the tab bar ("ControlNet Unit 1 ✓").

gradio 3.41 cannot relabel a tab after it is built, and it re-creates the tab buttons whenever the selected
tab changes, so anything written into a button is lost. Instead the Enable checkbox's change event runs a
line of JavaScript that keeps a list of enabled units in a `data-cn-enabled` attribute of the tabs element
(which gradio leaves alone), and a style sheet shipped inside the panel appends the mark to the matching
buttons. Works the same inside A1111 and in the standalone demo; needs no file in A1111's javascript/ folder.
"""

from __future__ import annotations

from .elem_ids import tabs_id

ATTRIBUTE = "data-cn-enabled"
MARK = " ✓"


def style_sheet(tab: str, unit_count: int) -> str:
    """CSS appending the mark to the button of every unit listed in the attribute."""
    selector = f"#{tabs_id(tab)}"
    rules = [
        f'{selector}[{ATTRIBUTE}~="u{i}"] > .tab-nav > button:nth-child({i + 1})::after '
        f'{{ content: "{MARK}"; color: var(--color-accent, #f97316); font-weight: bold; }}'
        for i in range(unit_count)
    ]
    return "<style>\n" + "\n".join(rules) + "\n</style>"


def enabled_js(tab: str, index: int) -> str:
    """The JavaScript run on the unit's Enable change: add or remove `u<index>` in the attribute."""
    return (
        "(enabled) => {"
        " const root = (typeof gradioApp === 'function') ? gradioApp() : document;"
        f" const tabs = root.querySelector('#{tabs_id(tab)}');"
        " if (tabs) {"
        f"  const on = new Set((tabs.getAttribute('{ATTRIBUTE}') || '').split(' ').filter(Boolean));"
        f"  if (enabled) on.add('u{index}'); else on.delete('u{index}');"
        f"  tabs.setAttribute('{ATTRIBUTE}', Array.from(on).sort().join(' '));"
        " }"
        " return [];"
        " }"
    )

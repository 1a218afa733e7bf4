"""Gradio apps of som. `som.app.toolbox`: the SoM toolbox (launch with `som app` or `python demo_som.py`).

Importing this package does not import Gradio; the toolbox module does.
"""

from __future__ import annotations


def launch(**kwargs):
    """Build and serve the toolbox (see `som.app.toolbox.launch` for the options)."""
    from som.app.toolbox import launch as _launch

    return _launch(**kwargs)


__all__ = ["launch"]

"""matplotlib, imported on first use only (``import beyondmse`` never loads it).

No backend is forced: matplotlib itself picks a non-interactive one on a machine without a
display, and a user's choice (``MPLBACKEND``, ``matplotlib.use``) is respected.
"""

from __future__ import annotations


def pyplot():
    """``matplotlib.pyplot``, imported lazily."""
    import matplotlib.pyplot as plt

    return plt


__all__ = ["pyplot"]

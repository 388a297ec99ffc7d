"""Saving figures as self-contained files: HTML with plotly.js inlined (works offline), PNG when possible."""

from __future__ import annotations

from pathlib import Path

from mi_massive.results.io import atomic_write_bytes, atomic_write_text


def figure_html(fig, *, full_html: bool = True) -> str:
    """The figure as HTML with the whole plotly.js bundle inlined (no CDN, no network)."""
    return fig.to_html(include_plotlyjs=True if full_html else False, full_html=full_html,
                       config={"displaylogo": False, "responsive": True})


def save_figure(fig, path: str | Path, *, png: bool = True) -> list[Path]:
    """Write ``path`` (.html, standalone) and, if a static renderer works offline, a .png beside it.

    PNG export needs kaleido with a local Chromium; when that is not available the PNG is skipped
    (the HTML is always written). Returns the files written.
    """
    path = Path(path)
    written = [atomic_write_text(path.with_suffix(".html"), figure_html(fig))]
    if png:
        try:
            data = fig.to_image(format="png", width=1000, height=650, scale=1)
        except Exception:  # no kaleido/Chromium: HTML only
            return written
        written.append(atomic_write_bytes(path.with_suffix(".png"), data))
    return written

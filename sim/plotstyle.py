"""matplotlib set-up shared by every planner figure: the Agg backend (no display needed) and
a CJK font, so Chinese SKU, phase and segment names render as text, not as empty boxes.

The font comes from the `noto-cjk-sans-otc` package (Noto Sans CJK, SIL OFL, a dependency of
the project); where it is missing, a system Noto Sans CJK (Debian `fonts-noto-cjk`) or WenQuanYi
(`fonts-wqy-microhei`) is used. Latin text stays in DejaVu Sans; matplotlib falls back to the
CJK font glyph by glyph.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib import font_manager  # the backend is chosen first

SYSTEM_FONTS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
)


def packaged_font() -> Path | None:
    """The CJK font file the `noto-cjk-sans-otc` package ships, if installed."""
    try:
        from noto_cjk_sans_otc import FONT_PATH
    except ImportError:
        return None
    path = Path(str(FONT_PATH))
    return path if path.exists() else None


@functools.cache
def cjk_font() -> str | None:
    """Register a CJK font with matplotlib once and put it after DejaVu Sans in the sans-serif
    fallback list; its family name, or None when no CJK font is installed."""
    candidates = [packaged_font(), *(Path(p) for p in SYSTEM_FONTS)]
    for path in candidates:
        if path is None or not path.exists():
            continue
        font_manager.fontManager.addfont(str(path))
        family = font_manager.FontProperties(fname=str(path)).get_name()
        # Named families, not the generic "sans-serif": matplotlib falls back glyph by glyph
        # only along an explicit list.
        matplotlib.rcParams["font.family"] = ["DejaVu Sans", family]
        return family
    logging.getLogger(__name__).warning(
        "no CJK font found: Chinese labels in plots will show as boxes; install the "
        "noto-cjk-sans-otc package or Debian's fonts-noto-cjk")
    return None

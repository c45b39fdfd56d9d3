"""DOCX output shared by the demo documents and plan exports."""

from __future__ import annotations

from typing import Any

STYLES = ("Normal", "Title", "Heading 1", "Heading 2", "Heading 3")


def use_east_asian_font(document: Any, font: str = "宋体", styles: tuple[str, ...] = STYLES) -> None:
    """Give the styles an East-Asian font, so Word shows Chinese text in a Chinese face rather
    than a fallback chosen per machine."""
    from docx.oxml.ns import qn

    for style_name in styles:
        rpr = document.styles[style_name].element.get_or_add_rPr()
        rfonts = rpr.find(qn("w:rFonts"))
        if rfonts is None:
            rfonts = rpr.makeelement(qn("w:rFonts"), {})
            rpr.append(rfonts)
        rfonts.set(qn("w:eastAsia"), font)

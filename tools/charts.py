"""Small PNG line charts for messages that cannot carry an SVG (WeCom image messages).

Labels are ASCII only: Pillow's built-in font has no CJK glyphs, and requiring a CJK font on every
server is not worth it for a chart whose Chinese context (product, rule) is in the card beside it.
Non-ASCII characters in labels are dropped. The image is a small palette PNG (a few KB).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 640, 360
_LEFT, _RIGHT, _TOP, _BOTTOM, _PAD = 72, 24, 44, 48, 28
_BG, _AXIS, _GRID, _TEXT = (255, 255, 255), (90, 90, 90), (225, 228, 232), (40, 40, 40)
_LINE, _THRESHOLD = (31, 78, 121), (192, 80, 77)


def ascii_label(text: object, limit: int = 80) -> str:
    """`text` as printable ASCII (other characters dropped, spaces squeezed), at most `limit` long."""
    kept = "".join(ch for ch in str(text) if 32 <= ord(ch) < 127)
    return " ".join(kept.split())[:limit]


def _number(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round axis ticks covering [lo, hi] (the same steps as the web chat's SVG charts)."""
    if lo == hi:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / count
    step = 10 ** math.floor(math.log10(raw))
    err = raw / step
    step *= 10 if err >= 7.5 else 5 if err >= 3.5 else 2 if err >= 1.5 else 1
    first, last = math.floor(lo / step), math.ceil(hi / step)
    return [float(f"{i * step:.12g}") for i in range(first, last + 1)]


def tick_labels(ticks: Sequence[float]) -> list[str]:
    """Tick texts with one scale for the axis (K, M, B for large amounts) and just enough decimals."""
    top = max(abs(t) for t in ticks)
    scale, suffix = next(((s, x) for s, x in ((1e9, "B"), (1e6, "M"), (1e4, "K")) if top >= s), (1.0, ""))
    step = (ticks[1] - ticks[0]) / scale if len(ticks) > 1 else 1.0
    decimals = min(4, max(0, -math.floor(math.log10(step)))) if step > 0 else 0
    return [f"{t / scale:,.{decimals}f}{suffix}" for t in ticks]


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except Exception:  # Pillow built without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _dashed(draw: ImageDraw.ImageDraw, x0: float, x1: float, y: float, dash: int = 8, gap: int = 5) -> None:
    x = x0
    while x < x1:
        draw.line([(x, y), (min(x + dash, x1), y)], fill=_THRESHOLD, width=2)
        x += dash + gap


def line_chart_png(
    x: Sequence[str],
    values: Sequence[float | int | None],
    *,
    threshold: float | None = None,
    title: str = "",
    series_name: str = "value",
    threshold_name: str = "threshold",
    unit: str = "",
) -> bytes:
    """One series as a line over the labels `x` (a missing value breaks the line; a lone value is a
    dot), and `threshold`, if given, as a dashed horizontal line. Returns PNG bytes."""
    labels = [ascii_label(s, 12) for s in x]
    points = [_number(v) for v in values][: len(labels)]
    points += [None] * (len(labels) - len(points))
    limit = _number(threshold)
    known = [v for v in points if v is not None]
    image = Image.new("RGB", (WIDTH, HEIGHT), _BG)
    draw = ImageDraw.Draw(image)
    small, big = _font(12), _font(15)
    heading = ascii_label(title) + (f" ({ascii_label(unit, 12)})" if ascii_label(unit, 12) else "")
    draw.text((_LEFT, 10), heading, fill=_TEXT, font=big)
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    bottom = _TOP + plot_h
    if not labels or not known:
        draw.rectangle([_LEFT, _TOP, _LEFT + plot_w, bottom], outline=_GRID)
        draw.text((_LEFT + plot_w / 2, _TOP + plot_h / 2), "no data", fill=_AXIS, font=big, anchor="mm")
        return _png(image)

    lo, hi = min(known + ([limit] if limit is not None else [])), max(known + ([limit] if limit is not None else []))
    # A little room so that neither the line nor the threshold sits on the frame (not below 0 for
    # figures that cannot be negative).
    pad = (hi - lo) * 0.08
    ticks = nice_ticks(max(lo - pad, 0.0) if lo >= 0 else lo - pad, hi + pad)
    y_min, y_max = ticks[0], ticks[-1]

    inner = plot_w - 2 * _PAD  # points keep clear of the axes, labels of the image's edges

    def px(i: int) -> float:
        return _LEFT + _PAD + (inner / 2 if len(labels) == 1 else i * inner / (len(labels) - 1))

    def py(v: float) -> float:
        return _TOP + plot_h - (v - y_min) / (y_max - y_min) * plot_h

    for t, text in zip(ticks, tick_labels(ticks), strict=True):
        y = py(t)
        draw.line([(_LEFT, y), (_LEFT + plot_w, y)], fill=_GRID, width=1)
        draw.text((_LEFT - 8, y), text, fill=_TEXT, font=small, anchor="rm")
    draw.line([(_LEFT, _TOP), (_LEFT, bottom)], fill=_AXIS, width=1)
    draw.line([(_LEFT, bottom), (_LEFT + plot_w, bottom)], fill=_AXIS, width=1)
    every = max(1, math.ceil(len(labels) / 8))
    for i, label in enumerate(labels):
        if i % every and i != len(labels) - 1:
            continue
        draw.line([(px(i), bottom), (px(i), bottom + 4)], fill=_AXIS, width=1)
        draw.text((px(i), bottom + 8), label, fill=_TEXT, font=small, anchor="ma")

    if limit is not None:
        _dashed(draw, _LEFT, _LEFT + plot_w, py(limit))
    run: list[tuple[float, float]] = []
    for i, v in enumerate([*points, None]):
        if v is not None:
            run.append((px(i), py(v)))
            continue
        if len(run) > 1:
            draw.line(run, fill=_LINE, width=3, joint="curve")
        run = []
    for i, v in enumerate(points):
        if v is not None:
            cx, cy = px(i), py(v)
            draw.ellipse([cx - 4, cy - 4, cx + 4, cy + 4], fill=_BG, outline=_LINE, width=2)

    # Legend, top right.
    lx: float = WIDTH - _RIGHT
    entries = [(ascii_label(series_name, 24) or "value", False)]
    if limit is not None:
        entries.append((ascii_label(threshold_name, 24) or "threshold", True))
    for name, dashed in reversed(entries):
        width = draw.textlength(name, font=small)
        lx -= width
        draw.text((lx, 14), name, fill=_TEXT, font=small)
        lx -= 26
        if dashed:
            _dashed(draw, lx, lx + 20, 21, dash=6, gap=3)
        else:
            draw.line([(lx, 21), (lx + 20, 21)], fill=_LINE, width=3)
        lx -= 14
    return _png(image)


def _blend(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> tuple[int, int, int]:
    return (round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t), round(a[2] + (b[2] - a[2]) * t))


def _palette() -> Image.Image:
    # The chart's colours exactly, plus tints toward white for anti-aliased text and line edges.
    colours = [_BG, _AXIS, _GRID, _TEXT, _LINE, _THRESHOLD]
    for c in (_TEXT, _LINE, _THRESHOLD):
        colours += [_blend(c, _BG, t) for t in (0.2, 0.4, 0.6, 0.8)]
    flat = [v for c in colours for v in c]
    pal = Image.new("P", (1, 1))
    pal.putpalette(flat + flat[:3] * (256 - len(colours)))
    return pal


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    # A small fixed palette keeps a chart to a few KB (WeCom caps images, phones download them).
    image.quantize(palette=_palette(), dither=Image.Dither.NONE).save(buf, format="PNG", optimize=True)
    return buf.getvalue()

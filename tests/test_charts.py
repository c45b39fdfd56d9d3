"""The PNG line chart of alert pushes: a valid, small PNG whatever the data."""

from __future__ import annotations

import io
import math

import pytest
from PIL import Image

from tools.charts import HEIGHT, WIDTH, ascii_label, line_chart_png, nice_ticks, tick_labels

MONTHS = ["2026-05", "2026-06", "2026-07", "2026-08", "2026-09", "2026-10"]
LINE = (31, 78, 121)
THRESHOLD = (192, 80, 77)


def decode(png: bytes) -> Image.Image:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(png))
    image.verify()  # a truncated or corrupt file raises
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (WIDTH, HEIGHT)
    return image.convert("RGB")


def count(image: Image.Image, colour: tuple[int, int, int]) -> int:
    pixels: list[tuple[int, int, int]] = list(image.getdata())  # type: ignore[arg-type]
    return pixels.count(colour)


def test_a_trend_with_its_threshold():
    png = line_chart_png(MONTHS, [1.1, 1.4, 1.8, 2.4, 3.2, 3.6], threshold=3.0, title="SL001 npl_rate", unit="%")
    assert len(png) < 100_000
    image = decode(png)
    assert count(image, LINE) > 500  # the line and its points
    assert count(image, THRESHOLD) > 300  # the dashed threshold
    # The threshold is dashed: along its row, red and white alternate.
    rows = [y for y in range(HEIGHT) if sum(image.getpixel((x, y)) == THRESHOLD for x in range(100, 600)) > 150]
    assert rows
    row = [image.getpixel((x, rows[0])) == THRESHOLD for x in range(100, 600)]
    assert sum(a != b for a, b in zip(row, row[1:], strict=False)) > 40


def test_missing_values_one_point_and_no_data():
    gaps = decode(line_chart_png(MONTHS, [1.0, None, float("nan"), 2.0, None, 3.0], threshold=2.5))
    full = decode(line_chart_png(MONTHS, [1.0, 1.5, 1.7, 2.0, 2.6, 3.0], threshold=2.5))
    assert 0 < count(gaps, LINE) < count(full, LINE)  # broken lines, points kept
    lone = decode(line_chart_png(["2026-10"], [123_456_789.0]))
    assert count(lone, LINE) > 20  # a dot, in the middle
    empty = decode(line_chart_png(MONTHS, [None] * 6, threshold=3.0))
    assert count(empty, LINE) == 0
    decode(line_chart_png([], []))
    # More labels than values, or the other way round: padded / cut, never an error.
    decode(line_chart_png(MONTHS, [1.0, 2.0]))
    decode(line_chart_png(MONTHS[:2], [1.0, 2.0, 3.0, 4.0]))
    # Equal values, negatives and a threshold far from the data.
    decode(line_chart_png(MONTHS, [-5.0] * 6, threshold=0.0))
    decode(line_chart_png(MONTHS, [0.001, 0.002, 0.0015, None, 0.003, 0.004], threshold=-1e9))


def test_labels_are_ascii_only():
    assert ascii_label("SL001 尊享贷 npl_rate") == "SL001 npl_rate"
    assert ascii_label("不良率") == ""
    assert ascii_label("x" * 200, 10) == "x" * 10
    # A title in Chinese still draws (the characters are left out, nothing fails for want of a font).
    decode(line_chart_png(MONTHS, [1, 2, 3, 4, 5, 6], title="尊享贷不良率", unit="‱", series_name="不良率"))


@pytest.mark.parametrize(("lo", "hi"), [(0.0, 1.0), (1.1, 3.6), (-2.5e8, 1.3e9), (5.0, 5.0), (0.0012, 0.0035)])
def test_ticks_cover_the_range_with_round_steps(lo: float, hi: float):
    ticks = nice_ticks(lo, hi)
    assert ticks[0] <= lo and ticks[-1] >= hi and len(ticks) >= 2
    steps = {round(b - a, 12) for a, b in zip(ticks, ticks[1:], strict=False)}
    assert len(steps) == 1
    step = steps.pop()
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert round(mantissa, 6) in (1, 2, 5)
    labels = tick_labels(ticks)
    assert len(set(labels)) == len(labels)  # enough decimals to tell ticks apart
    assert all(label.isascii() for label in labels)

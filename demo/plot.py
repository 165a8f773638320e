"""The PNG of live reward against adapter version with 95% interval bars, drawn with Pillow (no matplotlib)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["write_plot"]

_W, _H = 720, 440
_LEFT, _RIGHT, _TOP, _BOTTOM = 70, 30, 50, 60


def write_plot(
    path: Path,
    versions: Sequence[int],
    rewards: Sequence[float],
    errors: Sequence[float | None] | None = None,
    *,
    counts: Sequence[int] | None = None,
    title: str = "live reward by adapter version (95% CI, unit: prompt)",
) -> Path:
    """Draw ``rewards`` (in [0, 1]) against ``versions``, with +-``errors`` bars (the interval's half
    width; None: no bar) and each point's sample count under it; returns ``path``."""
    from PIL import Image, ImageDraw, ImageFont

    for extra in (errors, counts):
        if len(versions) != len(rewards) or (extra is not None and len(extra) != len(rewards)):
            raise ValueError("versions, rewards, errors and counts differ in length")
    img = Image.new("RGB", (_W, _H), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    x0, x1, y0, y1 = _LEFT, _W - _RIGHT, _H - _BOTTOM, _TOP
    hi = max(max(versions, default=1), 1)

    def px(v: float) -> float:
        return x0 + (x1 - x0) * (v / hi)

    def py(r: float) -> float:
        return y0 - (y0 - y1) * min(max(r, 0.0), 1.0)

    for i in range(6):  # horizontal grid and y ticks at 0, 0.2, ..., 1
        r = i / 5
        draw.line([(x0, py(r)), (x1, py(r))], fill=(225, 225, 225))
        draw.text((x0 - 36, py(r) - 6), f"{r:.1f}", fill="black", font=font)
    step = max(1, (hi + 11) // 12)
    for v in range(0, hi + 1, step):
        draw.line([(px(v), y0), (px(v), y0 + 5)], fill="black")
        draw.text((px(v) - 4, y0 + 8), str(v), fill="black", font=font)
    draw.line([(x0, y0), (x1, y0)], fill="black", width=2)
    draw.line([(x0, y0), (x0, y1)], fill="black", width=2)
    draw.text((x0, 16), title, fill="black", font=font)
    draw.text(((x0 + x1) / 2 - 40, _H - 28), "adapter version", fill="black", font=font)
    draw.text((8, y1 - 30), "reward", fill="black", font=font)

    points = [(px(v), py(r)) for v, r in zip(versions, rewards, strict=True)]
    if errors is not None:
        for (x, _), r, e in zip(points, rewards, errors, strict=True):
            if e is not None:
                draw.line([(x, py(r - e)), (x, py(r + e))], fill=(120, 150, 220), width=2)
                for y in (py(r - e), py(r + e)):
                    draw.line([(x - 4, y), (x + 4, y)], fill=(120, 150, 220), width=2)
    if len(points) > 1:
        draw.line(points, fill=(30, 80, 200), width=3)
    for x, y in points:
        draw.ellipse([(x - 4, y - 4), (x + 4, y + 4)], fill=(30, 80, 200))
    if counts is not None:  # how many prompts each point rests on, in a row above the plot
        for (x, _), n in zip(points, counts, strict=True):
            draw.text((x - 6, y1 - 16), str(n), fill=(90, 90, 90), font=font)
        draw.text((x1 - 150, y1 - 30), "prompts per version:", fill=(90, 90, 90), font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG")
    return path

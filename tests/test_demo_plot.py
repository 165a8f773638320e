"""The plot writer makes a valid PNG (Pillow reads it back) of the expected size."""

from __future__ import annotations

import pytest
from PIL import Image

from demo.plot import write_plot


def test_writes_a_png_with_interval_bars(tmp_path):
    path = write_plot(
        tmp_path / "sub" / "reward.png",
        [0, 1, 2, 3],
        [0.2, 0.25, 0.4, 0.5],
        [0.1, None, 0.12, 0.2],
        counts=[32, 1, 16, 18],
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (720, 440)
        colours = img.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is not None
        found = {c for _, c in colours}
        assert (30, 80, 200) in found  # the line and its points
        assert (120, 150, 220) in found  # the interval bars


def test_one_point_and_out_of_range_values_still_draw(tmp_path):
    path = write_plot(tmp_path / "one.png", [0], [1.3])
    with Image.open(path) as img:
        img.verify()


def test_mismatched_lengths_are_refused(tmp_path):
    with pytest.raises(ValueError):
        write_plot(tmp_path / "bad.png", [0, 1], [0.1])
    with pytest.raises(ValueError):
        write_plot(tmp_path / "bad.png", [0, 1], [0.1, 0.2], counts=[3])

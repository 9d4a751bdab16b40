"""The explain page in headless Chromium against a live server: it renders the sample request's ranking.

Chromium is the Debian package (installed with apt-get when missing, like promtool). Two checks of
the same page: the DOM after the page's scripts ran (bars per term, filter rules, arm and versions,
rollout), and the screenshot's pixels (the term colours of the bars and the rule badges are drawn).
"""

from __future__ import annotations

import re
import struct
import subprocess
import zlib
from collections import Counter
from pathlib import Path

import pytest

from tests.deploy.conftest import debian_tool
from tests.reliability.live import live_server

pytestmark = pytest.mark.slow

# Colours the page draws with (app/api/static/explain.html): the first term colours and the badges.
CLICK, HIDE = (0x4C, 0x78, 0xA8), (0x54, 0xA2, 0x4B)
GUARDRAIL, SLATE = (0xD6, 0x45, 0x45), (0xF0, 0xB4, 0x29)


def _chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
        "--window-size=1200,1600", "--virtual-time-budget=5000", *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def png_pixels(path: Path) -> Counter[tuple[int, int, int]]:
    """RGB pixel counts of an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    offset, idat, header = 8, b"", b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        kind, chunk = data[offset + 4:offset + 8], data[offset + 8:offset + 8 + length]
        if kind == b"IHDR":
            header = chunk
        elif kind == b"IDAT":
            idat += chunk
        offset += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    channels = 3 if colour == 2 else 4
    stride = width * channels
    raw = zlib.decompress(idat)
    counts: Counter[tuple[int, int, int]] = Counter()
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        counts.update(zip(line[0::channels], line[1::channels], line[2::channels], strict=True))
        previous = line
    return counts


def test_the_explain_page_renders_the_sample_ranking(tmp_path: Path) -> None:
    chromium = debian_tool("chromium", "chromium")
    with live_server(tmp_path, FUSIONRANK_EXPLAIN_PAGE="true") as server:
        url = f"{server.base}/explain"
        dom = _chromium(chromium, tmp_path / "profile-dom", "--dump-dom", url).stdout
        screenshot = tmp_path / "explain.png"
        _chromium(chromium, tmp_path / "profile-png", f"--screenshot={screenshot}", url)
    assert 'data-rendered="true"' in dom, dom[-3000:]
    assert len(re.findall(r'class="ranked-row"', dom)) == 20  # the policy's top_k
    for term in ("click", "purchase_margin", "hide_penalty", "report_penalty"):
        assert f'data-term="{term}"' in dom
    assert len(re.findall(r'class="seg"', dom)) >= 60  # every answered candidate has its stacked bar
    rules = re.findall(r'data-rule="([a-z_]+)"', dom)
    assert set(rules) == {"not_eligible", "creator_diversity", "sponsored_cap"}, rules
    assert "guardrail: not_eligible" in dom and "slate: sponsored_cap" in dom
    assert 'id="arm"' in dom and "demo_ranker/1" in dom
    assert 'data-surface="home"' in dom and "stable 100%" in dom  # the rollout state from /v1/surfaces
    pixels = png_pixels(screenshot)
    for name, colour, least in (("click bars", CLICK, 2000), ("hide bars", HIDE, 100),
                                ("guardrail badges", GUARDRAIL, 500), ("slate badges", SLATE, 500)):
        assert pixels[colour] >= least, f"{name}: {pixels[colour]} pixels of {colour}"

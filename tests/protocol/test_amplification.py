"""PARSE_AMPLIFICATION covers every body the service accepts (its names are pinned in
tests/test_exported_members.py)."""

from __future__ import annotations

import app.protocol


def test_parse_amplification_is_keyed_by_the_accepted_media_types() -> None:
    assert set(app.protocol.PARSE_AMPLIFICATION) == set(app.protocol.SCORE_MEDIA_TYPES)
    assert all(factor > 1 for factor in app.protocol.PARSE_AMPLIFICATION.values())

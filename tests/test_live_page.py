"""What the demo page shows comes from the model and the server, not from the page (quick: a real DemoServer
with a tiny model on 127.0.0.1). The page itself, in chromium, is tests/test_live_web.py."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest

from conftest import tiny_model
from paindiffusion.biovid import BASELINE_C, FPS


@pytest.fixture(scope="module")
def served():
    from paindiffusion.live.server import DemoServer

    model = tiny_model()
    server = DemoServer(model, port=0, size=128)
    url = server.start()
    try:
        yield model, url
    finally:
        server.stop()


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read()


def test_api_info_gives_the_model_trained_range_and_its_defaults(served):
    model, url = served
    info = json.loads(get(url + "api/info"))
    assert info["expressiveness_range"] == pytest.approx(list(model.spec.expressiveness_range))
    assert info["presets"] == pytest.approx(model.spec.presets)
    assert info["pain_range"] == pytest.approx(list(model.spec.calibration))
    assert info["baseline"] == BASELINE_C and info["fps"] == FPS
    assert set(info) == {"emotions", "presets", "expressiveness_range", "heat_range", "baseline", "fps", "size",
                         "channels", "reads_pain_range", "pain_range"}  # each read by app.js or edit.js


def test_the_page_holds_no_range_or_default_of_its_own(served):
    _, url = served
    page = get(url).decode()
    for control in ("expressiveness", "heat", "threshold", "tolerance"):
        tag = re.search(rf'<input id="{control}"[^>]*>', page).group(0)
        assert not re.search(r"\b(min|max|value)=", tag), tag  # filled from /api/info by app.js

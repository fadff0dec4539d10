"""The demo's edit routes (live/editing.py) over real sockets on 127.0.0.1, with a tiny model (quick): upload, edit,
preview, download, the page's live frames, and every refusal as one line of JSON. The page itself, in chromium,
is tests/test_edit_web.py."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pytest

from conftest import tiny_model
from paindiffusion.facespace import FACS
from paindiffusion.generate import generate_sequence
from paindiffusion.sequence import FaceSequence
from paindiffusion.stimulus import protocol_trace

SIZE = 64


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    """An aiohttp app serving only the edit routes behind the demo's guard, on a free port of 127.0.0.1."""
    from aiohttp import web

    from paindiffusion.live.editing import EditPanel
    from paindiffusion.live.guard import LocalOrigin
    from paindiffusion.live.web import LoopThread, start_site

    model = tiny_model()
    app = web.Application(middlewares=[LocalOrigin().middleware()])
    EditPanel(model, SIZE).register(app)
    loop = LoopThread("test-edit-panel")
    runner = loop.run(start_site(app, "127.0.0.1", 0, "test"))
    seq = generate_sequence(protocol_trace(8.0, seed=1), "high", model=model, seed=1)
    path = seq.save(tmp_path_factory.mktemp("panel") / "in.npz")
    yield f"http://127.0.0.1:{runner.addresses[0][1]}", path, tmp_path_factory.mktemp("downloads")
    loop.run(runner.cleanup())
    loop.stop()


def call(base: str, path: str, body=None, kind: str | None = None, headers: dict | None = None):
    """(status, parsed JSON or raw bytes) of one request."""
    h = {**({"Content-Type": kind} if kind else {}), **(headers or {})}
    req = urllib.request.Request(base + path, data=body, headers=h, method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            status, data, ctype = r.status, r.read(), r.headers.get_content_type()
    except urllib.error.HTTPError as e:
        status, data, ctype = e.code, e.read(), e.headers.get_content_type()
    return status, json.loads(data) if ctype == "application/json" else data


def upload(base: str, path) -> dict:
    status, answer = call(base, f"/api/edit/load?name={path.name}", path.read_bytes(), "application/octet-stream")
    assert status == 200, answer
    return answer


def test_upload_edit_preview_download(panel):
    base, path, out = panel
    src = upload(base, path)
    assert src["frames"] == 200 and src["seconds"] == 8.0 and len(src["pspi"]) == 200
    status, r = call(base, "/api/edit/run", json.dumps({"source": src["id"], "strength": 1, "expressiveness": "low",
                                                        "keep": "0-2", "extend": 2}).encode(), "application/json")
    assert status == 200, r
    assert r["frames"] == 250 and r["keep_s"] == [[0.0, 2.0]] and r["levels_rerun"] == 2 and len(r["original"]) == 200
    status, jpeg = call(base, f"/api/edit/{r['id']}/face/100.jpg")
    assert status == 200 and jpeg[:2] == b"\xff\xd8"
    from PIL import Image
    import io

    assert Image.open(io.BytesIO(jpeg)).size == (2 * SIZE, SIZE)  # the original beside the edit
    status, data = call(base, f"/api/edit/{r['id']}/download.npz")
    (out / "e.npz").write_bytes(data)
    edited, original = FaceSequence.load(out / "e.npz"), FaceSequence.load(path)
    assert len(edited) == 250 and np.array_equal(edited.frames[:50], original.frames[:50])
    status, data = call(base, f"/api/edit/{r['id']}/download.facs.json")
    assert status == 200 and len(json.loads(data)["frames"]) == 250


def test_the_live_face_the_page_sends(panel):
    base, _, _ = panel
    frames = np.tile(np.linspace(0, 2, FACS.dim, dtype=np.float32), (75, 1)).tolist()
    body = {"frames": frames, "stimulus": [40.0] * 75, "expressiveness": 1.0, "emotion": "Sadness"}
    status, src = call(base, "/api/edit/live", json.dumps(body).encode(), "application/json")
    assert status == 200 and src["frames"] == 75 and src["emotion"] == "Sadness"
    status, r = call(base, "/api/edit/run", json.dumps({"source": src["id"], "strength": 0}).encode(), "application/json")
    assert status == 200 and np.allclose(r["pspi"], src["pspi"])  # strength 0: the input itself


@pytest.mark.parametrize("how, want", [
    (dict(path="/api/edit/info", headers={"Host": "attacker.example"}), (403, "is not this server")),
    (dict(path="/api/edit/info", headers={"Origin": "http://attacker.example"}), (403, "other web pages")),
    (dict(path="/api/edit/run", body=b'{"source": "1"}', kind="text/plain"), (415, "application/json")),
    (dict(path="/api/edit/run", body=b"[1, 2", kind="application/json"), (400, "JSON object")),
    (dict(path="/api/edit/run", body=b"[" * 100_000, kind="application/json"), (400, "JSON object")),
    (dict(path="/api/edit/run", body=b'{"source": "999"}', kind="application/json"), (400, "no longer held")),
    (dict(path="/api/edit/load?name=x.txt", body=b"hello", kind="application/octet-stream"), (400, ".npz or .csv")),
    (dict(path="/api/edit/load?name=x.csv", body=b"a,b\n1,2\n", kind="application/octet-stream"), (400, "the uploaded file:")),
    (dict(path="/api/edit/load?name=x.npz", body=bytes(9 << 20), kind="application/octet-stream"), (400, "larger than 8 MiB")),
    (dict(path="/api/edit/live", body=json.dumps({"frames": [[0.0] * 20] * 15001}).encode(), kind="application/json"),
     (400, "1-15000 rows")),
    (dict(path="/api/edit/live", body=json.dumps({"frames": [[9.0] * 20] * 30}).encode(), kind="application/json"),
     (400, "AU")),
])
def test_refusals_are_one_line_of_json(panel, how, want):
    base, _, _ = panel
    status, answer = call(base, how["path"], how.get("body"), how.get("kind"), how.get("headers"))
    assert status == want[0] and want[1] in answer["error"] and "\n" not in answer["error"], (status, answer)


def test_bad_edit_requests(panel):
    base, path, _ = panel
    src = upload(base, path)
    for extra, words in (({"strength": 2}, "strength 2"), ({"keep": "0-99"}, "reaches past the end"),
                         ({"extend": 600}, "0-60 seconds"), ({"emotion": "Joyful"}, "Joyful")):
        status, r = call(base, "/api/edit/run", json.dumps({"source": src["id"], **extra}).encode(), "application/json")
        assert status == 400 and words in r["error"], (extra, r)
    status, r = call(base, f"/api/edit/{src['id']}/face/999.jpg")
    assert status == 400 and "outside the sequence" in r["error"]
    status, r = call(base, f"/api/edit/{src['id']}/download.exe")
    assert status == 400 and "unknown download type" in r["error"]

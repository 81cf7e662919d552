"""The add-on's network module (addons/blender/tessera_farm/client.py) outside Blender,
against a stand-in coordinator on a loopback port: it imports no bpy, uploads only what
the coordinator lacks, names what failed, and never shows the token.

Run: `python3 tests/blender/test_client.py` (any Python 3.9+; no bpy needed)."""

import hashlib
import http.server
import json
import os
import sys
import tempfile
import threading
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "addons", "blender", "tessera_farm"))

import client  # noqa: E402  (the module alone: the package's __init__ needs bpy)

TOKEN = "secret-token-never-shown"


class Coordinator(http.server.BaseHTTPRequestHandler):
    """Blobs by a stand-in hash (SHA-256 here; the real one is BLAKE3), one client."""

    blobs = {}
    posts = []

    def log_message(self, *args):
        pass

    def _answer(self, status, value=None):
        body = b"" if value is None else json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _authorized(self):
        if self.headers.get("Authorization") != "Bearer " + TOKEN:
            self._answer(401, {"error": "missing or unknown token"})
            return False
        return True

    def do_HEAD(self):
        if self._authorized():
            self._answer(200 if self.path.rsplit("/", 1)[-1] in self.blobs else 404)

    def do_POST(self):
        if not self._authorized():
            return
        data = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/v1/blobs":
            h = hashlib.sha256(data).hexdigest()
            fresh = h not in self.blobs
            self.blobs[h] = data
            self.posts.append(h)
            self._answer(201 if fresh else 200, {"hash": h, "size": len(data), "fresh": fresh})
        elif self.path == "/v1/jobs/estimate":
            sub = json.loads(data)
            if sub["tier"] == "economy":
                self._answer(422, {"error": "scene file scene.glb: blob 00 was not uploaded"})
            else:
                self._answer(200, {"price_micro": 42, "tier": sub["tier"], "tile_size": 64, "tiles": 1, "frames": 1, "scene_hash": "ab"})
        else:
            self._answer(404, {"error": "no such route"})


class ClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Coordinator)
        threading.Thread(target=cls.server.serve_forever, daemon=True).start()
        cls.url = f"http://127.0.0.1:{cls.server.server_address[1]}"

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()

    def test_the_module_imports_no_bpy(self):
        self.assertNotIn("bpy", sys.modules)
        with open(client.__file__, encoding="utf-8") as f:
            self.assertNotIn("import bpy", f.read())

    def test_only_files_the_coordinator_lacks_are_uploaded(self):
        Coordinator.blobs.clear()
        Coordinator.posts.clear()
        api = client.Client(self.url, TOKEN)
        with tempfile.TemporaryDirectory() as d:
            for name, data in (("scene.glb", b"glb"), ("sky.hdr", b"hdr")):
                with open(os.path.join(d, name), "wb") as f:
                    f.write(data)
            cache = client.HashCache(os.path.join(d, "cache", "uploads.json"))
            files, n = client.upload_scene(api, d, ["scene.glb", "sky.hdr"], cache)
            self.assertEqual(n, 2)
            self.assertEqual(files["scene.glb"], hashlib.sha256(b"glb").hexdigest())
            # Again, with the cache read back from its file: nothing is uploaded.
            cache = client.HashCache(os.path.join(d, "cache", "uploads.json"))
            again, n = client.upload_scene(api, d, ["scene.glb", "sky.hdr"], cache)
            self.assertEqual((again, n), (files, 0))
            self.assertEqual(len(Coordinator.posts), 2)
            # The coordinator lost one (garbage collection): it is uploaded again.
            del Coordinator.blobs[files["sky.hdr"]]
            _, n = client.upload_scene(api, d, ["scene.glb", "sky.hdr"], cache)
            self.assertEqual(n, 1)

    def test_a_refusal_names_the_request_and_the_coordinators_reason(self):
        api = client.Client(self.url, TOKEN)
        body = client.submission("scene.glb", {"scene.glb": "00"}, settings(), 0, 0, "economy")
        with self.assertRaises(client.TesseraError) as e:
            api.estimate(body)
        self.assertEqual(e.exception.status, 422)
        self.assertEqual(str(e.exception), "price estimate: HTTP 422: scene file scene.glb: blob 00 was not uploaded")
        body["tier"] = "priority"
        self.assertEqual(api.estimate(body)["price_micro"], 42)

    def test_the_token_is_never_shown(self):
        api = client.Client(self.url, "wrong-" + TOKEN)
        with self.assertRaises(client.TesseraError) as e:
            api.estimate(client.submission("scene.glb", {}, settings(), 0, 0, "priority"))
        self.assertEqual(e.exception.status, 401)
        self.assertNotIn(TOKEN, str(e.exception))
        self.assertNotIn(TOKEN, repr(api))
        dead = client.Client("http://127.0.0.1:9", TOKEN, timeout=2)
        with self.assertRaises(client.TesseraError) as e:
            dead.job("0" * 32)
        self.assertEqual(e.exception.status, 0)
        self.assertIn("cannot be reached", str(e.exception))
        self.assertNotIn(TOKEN, str(e.exception))

    def test_bad_input_is_named(self):
        for url in ("ftp://x", "", "http://user:pw@host"):
            with self.assertRaises(client.TesseraError) as e:
                client.Client(url, TOKEN)
            self.assertEqual(e.exception.what, "coordinator URL")
        with self.assertRaises(client.TesseraError) as e:
            client.Client(self.url, " ")
        self.assertEqual(e.exception.what, "client token")
        with self.assertRaises(client.TesseraError) as e:
            client.submission("scene.glb", {}, settings(), 3, 2, "priority")
        self.assertEqual(e.exception.what, "frames")
        with self.assertRaises(client.TesseraError) as e:
            client.submission("scene.glb", {}, settings(), 0, 2, "gold")
        self.assertEqual(e.exception.what, "tier")
        self.assertEqual(client.frame_rate(30, 1.001), (30000, 1001))
        self.assertEqual(client.frame_rate(24, 1.0), (24, 1))
        with self.assertRaises(client.TesseraError):
            client.frame_rate(24, 0.0)


def settings():
    return {"width": 4, "height": 2, "spp": 1, "max_bounces": 0, "seed": 1, "camera": None, "fps_num": 24, "fps_den": 1}


if __name__ == "__main__":
    unittest.main(verbosity=2)

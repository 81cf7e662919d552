"""Tessera's HTTP API for the add-on: urllib only, no bpy, so it is testable outside Blender.

The coordinator hashes uploads itself (`POST /v1/blobs`): Python has no BLAKE3. To upload
only what the coordinator lacks, the add-on remembers, per coordinator, the BLAKE3 hash
the coordinator gave each file's SHA-256 (`HashCache`), and asks `HEAD /v1/blobs/{hash}`
before uploading a file it has seen: 200 means this client has it stored already.

Errors are `TesseraError`s whose message names the request and what the coordinator said;
the client token is sent in the Authorization header only and never appears in a message.
"""

import hashlib
import json
import os
import threading
import urllib.error
import urllib.parse
import urllib.request

#: Seconds a request may take (an upload of a large file gets longer: see `upload`).
TIMEOUT = 60
#: Tiers the coordinator knows by default (`tessera_protocol` default tiers).
TIERS = ("economy", "priority", "trusted")
#: Bytes read at a time when streaming a file.
CHUNK = 1 << 20


class TesseraError(Exception):
    """A request that failed: `what` names it, `status` is the HTTP status (0 when no
    answer came), `message` what the coordinator (or the network) said."""

    def __init__(self, what, status, message):
        super().__init__(f"{what}: {message}" if not status else f"{what}: HTTP {status}: {message}")
        self.what = what
        self.status = status
        self.message = message


def check_url(url):
    """The coordinator URL without a trailing slash, or a TesseraError naming what is wrong."""
    url = (url or "").strip().rstrip("/")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise TesseraError("coordinator URL", 0, f"{url!r} is not an http:// or https:// URL")
    if parts.username or parts.password:
        raise TesseraError("coordinator URL", 0, "put the token in the token field, not in the URL")
    return url


class Client:
    """One coordinator, as one client (its API token)."""

    def __init__(self, url, token, timeout=TIMEOUT):
        self.url = check_url(url)
        if not token or not token.strip():
            raise TesseraError("client token", 0, "empty: set it in the add-on's preferences")
        self._token = token.strip()
        self.timeout = timeout

    def __repr__(self):
        # Never the token.
        return f"Client({self.url!r})"

    def _request(self, what, method, path, body=None, content_type=None, length=None, timeout=None):
        req = urllib.request.Request(self.url + path, data=body, method=method)
        req.add_header("Authorization", "Bearer " + self._token)
        req.add_header("User-Agent", "tessera-blender")
        if content_type:
            req.add_header("Content-Type", content_type)
        if length is not None:
            req.add_header("Content-Length", str(length))
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                message = json.loads(raw)["error"]
            except (ValueError, KeyError, TypeError):
                message = raw.decode("utf-8", "replace")[:300] or e.reason
            raise TesseraError(what, e.code, message) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise TesseraError(what, 0, f"{self.url} cannot be reached: {reason}") from None

    def _json(self, what, method, path, value=None):
        body = None if value is None else json.dumps(value).encode()
        _, raw = self._request(what, method, path, body, "application/json" if body else None)
        try:
            return json.loads(raw)
        except ValueError:
            raise TesseraError(what, 0, "the answer is not JSON") from None

    # --- blobs ---------------------------------------------------------------------------

    def has_blob(self, blob_hash):
        """Whether this client has blob `blob_hash` stored (`HEAD /v1/blobs/{hash}`)."""
        try:
            self._request(f"checking blob {blob_hash[:12]}", "HEAD", "/v1/blobs/" + blob_hash)
            return True
        except TesseraError as e:
            if e.status == 404:
                return False
            raise

    def upload(self, path):
        """Upload the file at `path`, streamed (`POST /v1/blobs`); the coordinator's answer
        (`hash`, `size`, `fresh`)."""
        size = os.path.getsize(path)
        name = os.path.basename(path)
        with open(path, "rb") as f:
            status, raw = self._request(
                f"uploading {name}",
                "POST",
                "/v1/blobs",
                f,
                "application/octet-stream",
                size,
                # At least 1 MB/s.
                self.timeout + size // (1 << 20),
            )
        answer = json.loads(raw)
        if answer.get("size") != size:
            raise TesseraError(f"uploading {name}", status, f"the coordinator stored {answer.get('size')} of {size} bytes")
        return answer

    # --- jobs ----------------------------------------------------------------------------

    def estimate(self, submission):
        """What `submit(submission)` would take into escrow (`POST /v1/jobs/estimate`)."""
        return self._json("price estimate", "POST", "/v1/jobs/estimate", submission)

    def submit(self, submission):
        """Submit a job (`POST /v1/jobs`): `{"job_id", "scene_hash"}`."""
        return self._json("submission", "POST", "/v1/jobs", submission)

    def job(self, job_id):
        """The job's status (`GET /v1/jobs/{id}`)."""
        return self._json(f"job {job_id[:12]}", "GET", "/v1/jobs/" + job_id)

    def frame(self, job_id, frame):
        """Frame `frame` of a done job: linear RGBA half floats, little-endian, rows top to
        bottom (`GET /v1/jobs/{id}/frames/{frame}`)."""
        return self._request(f"job {job_id[:12]} frame {frame}", "GET", f"/v1/jobs/{job_id}/frames/{frame}")[1]

    def dashboard_url(self, job_id):
        """The job's page in the coordinator's dashboard."""
        return f"{self.url}/ui/jobs/{job_id}"


def sha256_file(path):
    """SHA-256 of a file, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


class HashCache:
    """SHA-256 → BLAKE3 of files this add-on uploaded, per coordinator URL, in a JSON file
    (`path`, or memory only when None). Safe to use from the upload thread."""

    def __init__(self, path=None):
        self.path = path
        self._lock = threading.Lock()
        self._map = {}
        if path and os.path.exists(path):
            try:
                with open(path, encoding="utf-8") as f:
                    loaded = json.load(f)
                if isinstance(loaded, dict):
                    self._map = {k: v for k, v in loaded.items() if isinstance(v, dict)}
            except (OSError, ValueError):
                self._map = {}

    def get(self, url, sha):
        with self._lock:
            return self._map.get(url, {}).get(sha)

    def put(self, url, sha, blob_hash):
        with self._lock:
            self._map.setdefault(url, {})[sha] = blob_hash
            if self.path:
                os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
                tmp = self.path + ".tmp"
                with open(tmp, "w", encoding="utf-8") as f:
                    json.dump(self._map, f)
                os.replace(tmp, self.path)


def upload_scene(client, folder, files, cache, progress=None):
    """Upload the scene `files` (paths relative to `folder`, forward slashes) that the
    coordinator lacks; the listing's `files` (relative path → BLAKE3 hash) and how many
    were uploaded. `progress(text)` is told each step."""
    listing = {}
    uploaded = 0
    for rel in files:
        path = os.path.join(folder, *rel.split("/"))
        sha = sha256_file(path)
        known = cache.get(client.url, sha)
        if known and client.has_blob(known):
            listing[rel] = known
            if progress:
                progress(f"{rel}: already on the coordinator")
            continue
        if progress:
            progress(f"uploading {rel} ({os.path.getsize(path)} bytes)")
        answer = client.upload(path)
        cache.put(client.url, sha, answer["hash"])
        listing[rel] = answer["hash"]
        uploaded += 1
    return listing, uploaded


def submission(entry, files, settings, frame_start, frame_end, tier):
    """The body of `POST /v1/jobs` (and of the estimate): `settings` is a dict with
    `width`, `height`, `spp`, `max_bounces`, `seed`, `camera` (or None), `fps_num`,
    `fps_den`."""
    if tier not in TIERS:
        raise TesseraError("tier", 0, f"{tier!r} is not one of {', '.join(TIERS)}")
    if frame_end < frame_start:
        raise TesseraError("frames", 0, f"the last frame {frame_end} is before the first {frame_start}")
    if frame_start < 0:
        raise TesseraError("frames", 0, f"the first frame {frame_start} is negative (Tessera frames start at 0)")
    return {
        "scene": {"entry": entry, "files": dict(files)},
        "settings": {
            "width": int(settings["width"]),
            "height": int(settings["height"]),
            "spp": int(settings["spp"]),
            "max_bounces": int(settings["max_bounces"]),
            "seed": int(settings.get("seed", 1)),
            "camera": settings.get("camera"),
            "frame_rate": {"num": int(settings["fps_num"]), "den": int(settings["fps_den"])},
        },
        "frame_start": int(frame_start),
        "frame_end": int(frame_end),
        "tier": tier,
    }


def frame_rate(fps, fps_base):
    """Blender's `fps / fps_base` as an exact fraction (num, den): 30 / 1.001 → 30000/1001."""
    import math

    num = int(fps) * 1000
    den = int(round(float(fps_base) * 1000))
    if den <= 0 or num <= 0:
        raise TesseraError("frame rate", 0, f"{fps}/{fps_base} is not a positive rate")
    g = math.gcd(num, den)
    return num // g, den // g


def write_exr(path, data, width, height):
    """Write canonical frame bytes (RGBA half floats, little-endian, rows top to bottom) as
    an uncompressed scanline OpenEXR file of HALF channels: the committed values exactly,
    with no colour conversion (Blender reads an EXR as scene-linear)."""
    import struct

    expected = width * height * 8
    if len(data) != expected:
        raise TesseraError("frame", 0, f"{len(data)} bytes, expected {expected} ({width}x{height} RGBA half floats)")

    def attr(name, kind, value):
        return name.encode() + b"\0" + kind.encode() + b"\0" + struct.pack("<i", len(value)) + value

    channels = b"".join(c.encode() + b"\0" + struct.pack("<iB3xii", 1, 0, 1, 1) for c in "ABGR") + b"\0"
    window = struct.pack("<iiii", 0, 0, width - 1, height - 1)
    header = b"".join(
        [
            struct.pack("<ii", 20000630, 2),
            attr("channels", "chlist", channels),
            attr("compression", "compression", b"\0"),
            attr("dataWindow", "box2i", window),
            attr("displayWindow", "box2i", window),
            attr("lineOrder", "lineOrder", b"\0"),
            attr("pixelAspectRatio", "float", struct.pack("<f", 1.0)),
            attr("screenWindowCenter", "v2f", struct.pack("<ff", 0.0, 0.0)),
            attr("screenWindowWidth", "float", struct.pack("<f", 1.0)),
            b"\0",
        ]
    )
    row = width * 8
    block = 8 + row
    first = len(header) + 8 * height
    offsets = struct.pack(f"<{height}Q", *(first + y * block for y in range(height)))
    with open(path, "wb") as f:
        f.write(header)
        f.write(offsets)
        for y in range(height):
            line = data[y * row : (y + 1) * row]
            f.write(struct.pack("<ii", y, row))
            # Channel by channel in the header's (alphabetical) order: A, B, G, R.
            for c in (3, 2, 1, 0):
                f.write(b"".join(line[x * 8 + c * 2 : x * 8 + c * 2 + 2] for x in range(width)))

"""The add-on's background work: uploads, the estimate, the submission, following the job
and downloading frames run on threads (network only, no bpy); `poll`, a `bpy.app.timers`
function on Blender's main thread, moves what they report into the scene's properties and
makes the image datablocks. A scene is named by its name; one piece of work per scene runs
at a time (the operators refuse while `busy`)."""

import os
import queue
import tempfile
import threading

import bpy

from . import client

#: Seconds between two status reads of a running job.
FOLLOW_EVERY = 2.0
#: States after which a job changes no more (unless its client acts on it).
ENDED = ("done", "failed", "cancelled")

_events = queue.Queue()
_prepared = {}
_exported = {}
_stop = threading.Event()


def prepared(scene_name):
    """The estimated submission body waiting for its Submit, or None."""
    return _prepared.get(scene_name)


def exported(scene_name):
    """The folder the last estimate exported the scene into, or None."""
    return _exported.get(scene_name)


def _run(scene_name, what, fn):
    def body():
        try:
            fn()
        except client.TesseraError as e:
            _events.put((scene_name, "error", str(e)))
        except Exception as e:  # noqa: BLE001: reported in the panel, never lost
            _events.put((scene_name, "error", f"{what}: {type(e).__name__}: {e}"))

    t = threading.Thread(target=body, name=f"tessera-{what}", daemon=True)
    t.start()
    return t


def start_estimate(scene_name, api, cache, folder, files, settings, first, last, tier):
    _prepared.pop(scene_name, None)
    _exported[scene_name] = folder

    def work():
        def progress(text):
            _events.put((scene_name, "status", text))

        listing, uploaded = client.upload_scene(api, folder, files, cache, progress)
        body = client.submission(files[0], listing, settings, first, last, tier)
        estimate = api.estimate(body)
        _events.put((scene_name, "estimate", (body, estimate, uploaded, len(files))))

    return _run(scene_name, "estimate", work)


def start_submit(scene_name, api):
    body = _prepared.get(scene_name)

    def work():
        accepted = api.submit(body)
        _events.put((scene_name, "submitted", (accepted, body)))
        follow(scene_name, api, accepted["job_id"])

    return _run(scene_name, "submit", work)


def follow(scene_name, api, job_id):
    """Report the job's status every FOLLOW_EVERY seconds until it ends, or until the
    add-on is turned off (the stop event of the registration it started under)."""
    stop = _stop
    while not stop.is_set():
        status = api.job(job_id)
        _events.put((scene_name, "job", status))
        if status["state"] in ENDED:
            return
        stop.wait(FOLLOW_EVERY)


def start_follow(scene_name, api, job_id):
    return _run(scene_name, "follow", lambda: follow(scene_name, api, job_id))


def start_fetch(scene_name, api, job_id):
    def work():
        status = api.job(job_id)
        frames = []
        for f in range(status["frame_start"], status["frame_end"] + 1):
            _events.put((scene_name, "status", f"Fetching frame {f}…"))
            frames.append((f, api.frame(job_id, f)))
        _events.put((scene_name, "frames", (job_id, frames)))

    return _run(scene_name, "fetch", work)


def start_all():
    """At registration: threads started from now on run until the next `stop_all`."""
    global _stop
    _stop = threading.Event()


def stop_all():
    """At unregistration: following threads stop after their current request."""
    _stop.set()


def frames_folder(job_id):
    """Where fetched frames go: the preferences' folder, else beside the .blend, else the
    temporary folder; one subfolder per job."""
    base = ""
    addon = bpy.context.preferences.addons.get(__package__)
    if addon is not None:
        base = bpy.path.abspath(addon.preferences.frames_dir)
    if not base:
        base = bpy.path.abspath("//tessera") if bpy.data.filepath else os.path.join(tempfile.gettempdir(), "tessera")
    return os.path.join(base, job_id)


def load_frames(scene, job_id, frames):
    """Image datablocks `tessera <job12> <frame>` from canonical frame bytes, saved as EXR."""
    folder = frames_folder(job_id)
    os.makedirs(folder, exist_ok=True)
    images = []
    for f, data in frames:
        width, height = _size(scene, data)
        path = os.path.join(folder, f"frame-{f:04d}.exr")
        # Written by the add-on itself: Blender's own EXR save of a new float image
        # changes the values (a colour space round trip); its EXR reader does not.
        client.write_exr(path, data, width, height)
        name = f"tessera {job_id[:12]} {f:04d}"
        old = bpy.data.images.get(name)
        if old is not None:
            bpy.data.images.remove(old)
        img = bpy.data.images.load(path, check_existing=False)
        img.name = name
        images.append(img)
    return images


def _size(scene, data):
    """The job's frame size: from the submitted settings kept on the scene."""
    s = scene.tessera
    width, height = s.get("job_width", 0), s.get("job_height", 0)
    if width * height * 8 != len(data):
        raise client.TesseraError("frame", 0, f"{len(data)} bytes do not make a {width}x{height} frame")
    return width, height


def poll():
    """Timer: apply what the threads reported; runs again in 0.5 s."""
    while True:
        try:
            scene_name, kind, payload = _events.get_nowait()
        except queue.Empty:
            break
        scene = bpy.data.scenes.get(scene_name)
        if scene is None:
            continue
        s = scene.tessera
        if kind == "status":
            s.status = payload
        elif kind == "error":
            s.error = payload
            s.status = ""
            s.busy = False
        elif kind == "estimate":
            body, estimate, uploaded, n = payload
            _prepared[scene_name] = body
            s.estimate_micro = int(estimate["price_micro"])
            s.estimate_text = (
                f"Price: {estimate['price_micro'] / 1e6:.6f} credits ({estimate['price_micro']} µcr), "
                f"{estimate['tier']} tier, {estimate['tiles']} tiles over {estimate['frames']} frames"
            )
            s.status = f"Uploaded {uploaded} of {n} files (the rest were on the coordinator)"
            s.busy = False
        elif kind == "submitted":
            accepted, body = payload
            _prepared.pop(scene_name, None)
            s.job_id = accepted["job_id"]
            s["job_width"] = body["settings"]["width"]
            s["job_height"] = body["settings"]["height"]
            s.job_state = "queued"
            s.progress = 0.0
            s.status = "Submitted"
            s.busy = False
        elif kind == "job":
            if payload["job_id"] == s.job_id:
                s.job_state = payload["state"]
                total = max(1, payload["tiles_total"])
                s.progress = payload["tiles_verified"] / total
                if payload.get("error"):
                    s.error = payload["error"]
        elif kind == "frames":
            job_id, frames = payload
            try:
                images = load_frames(scene, job_id, frames)
                s.status = f"Fetched {len(images)} frames into images"
            except (client.TesseraError, RuntimeError, OSError) as e:
                s.error = str(e)
            s.busy = False
        for window in getattr(bpy.context.window_manager, "windows", []):
            for area in window.screen.areas:
                if area.type == "PROPERTIES":
                    area.tag_redraw()
    return 0.5

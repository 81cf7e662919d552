"""The Blender add-on inside Blender's Python module (`bpy` 4.5 from PyPI), run with
`python tests/blender/test_addon.py` from the venv `tests/blender.rs` makes.

- The add-on is packaged (`scripts/blender-addon.sh`) and installed as an extension into a
  throw-away Blender user folder.
- Pre-flight: a scene with each unsupported feature has each named; a scene that renders
  is refused nothing and told of nothing.
- With online access off, nothing touches the network.
- Against a farm (`tessera coordinator`, `node` and `verifier` over the local RabbitMQ,
  as tests/farm.rs starts them; skipped without a broker unless TESSERA_REQUIRE_BROKER=1):
  a scene with a texture, a light and 3 animated frames goes through pre-flight, export,
  upload, the estimate, Submit, progress and Fetch frames, and the frames equal, value
  for value, `tessera render` of the same exported file on this machine's adapter.

Environment: TESSERA_BIN (the `tessera` binary; default target/release/tessera),
TESSERA_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/%2f).
"""

import atexit
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix="tessera-blender-user-")
atexit.register(shutil.rmtree, os.environ["BLENDER_USER_RESOURCES"], True)

import bpy  # noqa: E402
import numpy as np  # noqa: E402

TESSERA = os.environ.get("TESSERA_BIN") or os.path.join(ROOT, "target", "release", "tessera")
TOKEN = "blender-studio-token-0123456789"
ADMIN = "blender-admin-token-0123456789"
VERIFIER = "blender-verifier-token-0123456789"


def install_addon():
    out = tempfile.mkdtemp(prefix="tessera-addon-")
    atexit.register(shutil.rmtree, out, True)
    zip_path = subprocess.run(
        ["bash", os.path.join(ROOT, "scripts", "blender-addon.sh"), out],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip().splitlines()[-1]
    result = bpy.ops.extensions.package_install_files(
        filepath=os.path.abspath(zip_path), repo="user_default", enable_on_install=True
    )
    assert result == {"FINISHED"}, result
    assert hasattr(bpy.types.Scene, "tessera"), "the add-on registered its settings"


def addon():
    """The installed add-on's package (its modules: client, preflight, worker...)."""
    return sys.modules["bl_ext.user_default.tessera_farm"]


def prefs():
    return bpy.context.preferences.addons["bl_ext.user_default.tessera_farm"].preferences


# --- scenes ---------------------------------------------------------------------------


def empty_scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    # read_factory_settings turns the add-on off and the preferences back to defaults.
    import addon_utils

    addon_utils.enable("bl_ext.user_default.tessera_farm", default_set=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    return scene


def checker_image(path):
    """A small PNG texture written to `path`."""
    img = bpy.data.images.new("checker", 16, 16, alpha=False)
    px = np.zeros((16, 16, 4), dtype=np.float32)
    px[..., 3] = 1.0
    ij = np.add.outer(np.arange(16) // 4, np.arange(16) // 4) % 2
    px[..., 0] = 0.1 + 0.8 * ij
    px[..., 1] = 0.3
    px[..., 2] = 0.9 - 0.8 * ij
    img.pixels.foreach_set(px.reshape(-1))
    img.filepath_raw = path
    img.file_format = "PNG"
    img.save()
    img.source = "FILE"
    return img


def textured_material(image):
    mat = bpy.data.materials.new("textured")
    mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = nodes["Principled BSDF"]
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = image
    links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = 0.6
    return mat


def renderable_scene(folder):
    """A floor and an animated cube with a PNG texture, a point light, a camera, a plain
    background: frames 0 to 2, the cube moving."""
    scene = empty_scene()
    scene.name = "studio"
    image = checker_image(os.path.join(folder, "checker.png"))
    mat = textured_material(image)
    bpy.ops.mesh.primitive_plane_add(size=6.0)
    bpy.context.object.data.materials.append(mat)
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=(0.0, 0.0, 0.5))
    cube = bpy.context.object
    cube.name = "cube"
    cube.data.materials.append(mat)
    for frame, x in ((0, -1.0), (2, 1.0)):
        cube.location.x = x
        cube.keyframe_insert("location", index=0, frame=frame)
    light = bpy.data.lights.new("lamp", type="POINT")
    light.energy = 500.0
    lamp = bpy.data.objects.new("lamp", light)
    lamp.location = (1.5, -2.0, 3.0)
    scene.collection.objects.link(lamp)
    cam_data = bpy.data.cameras.new("cam")
    cam = bpy.data.objects.new("cam", cam_data)
    cam.location = (0.0, -5.0, 2.0)
    cam.rotation_euler = (1.2, 0.0, 0.0)
    scene.collection.objects.link(cam)
    scene.camera = cam
    world = bpy.data.worlds.new("sky")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.05, 0.07, 0.1, 1.0)
    scene.world = world
    scene.frame_start, scene.frame_end = 0, 2
    scene.render.resolution_x, scene.render.resolution_y = 48, 32
    scene.render.resolution_percentage = 100
    scene.render.fps, scene.render.fps_base = 24, 1.0
    scene.cycles.samples = 4
    scene.cycles.max_bounces = 2
    return scene


def unsupported_scene(folder):
    """The renderable scene plus one of each thing Tessera drops or changes."""
    scene = renderable_scene(folder)
    area = bpy.data.lights.new("softbox", type="AREA")
    obj = bpy.data.objects.new("softbox", area)
    scene.collection.objects.link(obj)
    glass = bpy.data.materials.new("glass")
    glass.use_nodes = True
    glass.node_tree.nodes["Principled BSDF"].inputs["Transmission Weight"].default_value = 1.0
    noisy = bpy.data.materials.new("noisy")
    noisy.use_nodes = True
    noise = noisy.node_tree.nodes.new("ShaderNodeTexNoise")
    noise.name = "Noise Texture"
    noisy.node_tree.links.new(noise.outputs["Color"], noisy.node_tree.nodes["Principled BSDF"].inputs["Base Color"])
    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.3, location=(1.5, 0.0, 0.3))
    sphere = bpy.context.object
    sphere.name = "sphere"
    sphere.data.materials.append(glass)
    sphere.shape_key_add(name="Basis")
    sphere.shape_key_add(name="squash")
    bpy.ops.mesh.primitive_cube_add(size=0.3, location=(-1.5, 0.0, 0.3))
    bpy.context.object.name = "noisy_cube"
    bpy.context.object.data.materials.append(noisy)
    sky = scene.world.node_tree.nodes.new("ShaderNodeTexSky")
    scene.world.node_tree.links.new(sky.outputs["Color"], scene.world.node_tree.nodes["Background"].inputs["Color"])
    scene["glTF2ExportSettings"] = {"export_draco_mesh_compression_enable": True}
    return scene


# --- the farm --------------------------------------------------------------------------


def amqp_url():
    return os.environ.get("TESSERA_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")


def role_url(role):
    rest = amqp_url().split("://", 1)[1]
    host = rest.rsplit("@", 1)[-1]
    return f"amqp://tessera-test-{role}:tessera-test-{role}@{host}"


def broker_up():
    host = urllib.parse.urlsplit(amqp_url()).hostname or "127.0.0.1"
    port = urllib.parse.urlsplit(amqp_url()).port or 5672
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Farm:
    """`tessera coordinator`, one node and one verifier on the local broker, in a
    namespace of their own (`t` and 16 hex digits, as `.ci/broker-users` grants)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="tessera-blender-farm-")
        self.ns = "t" + secrets.token_hex(8)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs = []
        if shutil.which("rabbitmqctl"):
            subprocess.run(["bash", os.path.join(ROOT, ".ci", "broker-users")], check=True, capture_output=True)
        self.spawn(
            "coordinator",
            ["coordinator", "--amqp", role_url("coordinator"), "--listen", f"127.0.0.1:{self.port}",
             "--data", os.path.join(self.dir, "coordinator"), "--api-token", f"studio={TOKEN}",
             "--namespace", self.ns, "--challenge-window", "0",
             "--verifier-token", VERIFIER, "--admin-token", ADMIN],
        )
        self.wait(lambda: self.ping(), "the coordinator listens", 30)
        for role in ("node", "verifier"):
            key = os.path.join(self.dir, f"{role}.key")
            public = subprocess.run([TESSERA, "keygen", "-o", key], check=True, capture_output=True, text=True).stdout.strip()
            args = [role, "--amqp", role_url(role), "--coordinator", self.url, "--key", key,
                    "--name", role, "--cache", os.path.join(self.dir, f"{role}-cache")]
            if role == "verifier":
                args += ["--token", VERIFIER]
            self.spawn(role, args)
            if role == "node":
                self.wait(lambda: any(n.get("key") == public for n in self.admin("GET", "/v1/nodes")), "the node registers", 60)
                self.admin("POST", "/v1/credits", {"account": f"stake:{public}", "amount": 1_000_000, "reference": "stake"})
        self.admin("POST", "/v1/credits", {"account": "client:studio", "amount": 10**12, "reference": "studio"})

    def spawn(self, name, args):
        with open(os.path.join(self.dir, f"{name}.log"), "wb") as log:
            self.procs.append((name, subprocess.Popen([TESSERA, *args], stdout=log, stderr=subprocess.STDOUT)))

    def log(self, name):
        with open(os.path.join(self.dir, f"{name}.log"), "rb") as f:
            return f.read().decode("utf-8", "replace")[-3000:]

    def ping(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            for name, p in self.procs:
                if p.poll() is not None:
                    raise AssertionError(f"{name} exited ({p.returncode}):\n{self.log(name)}")
            return False

    def admin(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", "Bearer " + ADMIN)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    @staticmethod
    def wait(cond, what, seconds):
        deadline = time.time() + seconds
        while not cond():
            if time.time() > deadline:
                raise AssertionError(f"timed out: {what}")
            time.sleep(0.1)

    def stop(self):
        for _, p in reversed(self.procs):
            p.terminate()
        for _, p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def pump(until, what, seconds):
    """Run the add-on's timer (Blender's event loop would) until `until()`."""
    worker = addon().worker
    deadline = time.time() + seconds
    while True:
        worker.poll()
        s = bpy.context.scene.tessera
        if s.error:
            raise AssertionError(f"{what}: the panel shows an error: {s.error}")
        if until():
            return
        if time.time() > deadline:
            raise AssertionError(f"timed out: {what} (status {s.status!r}, job {s.job_state!r})")
        time.sleep(0.1)


# --- the tests -------------------------------------------------------------------------


class Preflight(unittest.TestCase):
    def test_a_scene_that_renders_is_refused_nothing_and_told_nothing(self):
        with tempfile.TemporaryDirectory() as d:
            scene = renderable_scene(d)
            findings = addon().preflight.check_scene(scene)
            self.assertEqual(findings, [])

    def test_each_unsupported_feature_is_named(self):
        with tempfile.TemporaryDirectory() as d:
            scene = unsupported_scene(d)
            findings = addon().preflight.check_scene(scene)
            text = "\n".join(f"{sev} {where}: {what}" for sev, where, what in findings)
            for where, needle in (
                ("object 'softbox'", "area lights"),
                ("material 'glass'", "transmission"),
                ("material 'noisy'", "'Noise Texture'"),
                ("object 'sphere'", "shape keys"),
                ("world 'sky'", "ShaderNodeTexSky"),
                ("export", "Draco"),
            ):
                self.assertTrue(
                    any(w == where and needle in what for _, w, what in findings),
                    f"{where} / {needle} not named in:\n{text}",
                )
            self.assertEqual(len(findings), 7, text)  # the sky is named twice: node and source
            self.assertFalse(addon().preflight.refused(findings), text)

    def test_a_scene_without_a_camera_is_refused(self):
        with tempfile.TemporaryDirectory() as d:
            scene = renderable_scene(d)
            scene.camera = None
            findings = addon().preflight.check_scene(scene)
            self.assertTrue(addon().preflight.refused(findings))
            self.assertEqual(findings, [("error", "scene", "no camera: set the scene camera or pick one in the panel")])

    def test_the_world_becomes_tessera_environment_in_the_export(self):
        with tempfile.TemporaryDirectory() as d:
            renderable_scene(d)
            bpy.context.scene.tessera.status = "state of the panel"
            bpy.context.scene.tessera.tier = "trusted"
            files, env = addon().export.export_scene(bpy.context, os.path.join(d, "out"))
            self.assertEqual(files, ["scene.glb"])
            doc = glb_json(os.path.join(d, "out", "scene.glb"))
            got = doc["scenes"][0]["extras"]["tessera_environment"]
            self.assertEqual(got["strength"], 1.0)
            self.assertEqual([round(c, 4) for c in got["color"]], [0.05, 0.07, 0.1])
            self.assertIn("KHR_lights_punctual", doc["extensionsUsed"])
            self.assertEqual(len(doc["animations"]), 1)
            # Blender frame F is at F / fps seconds, as Tessera's frame F: the frames
            # submitted are the scene's own numbers.
            times = doc["accessors"][doc["animations"][0]["samplers"][0]["input"]]
            self.assertEqual((times["min"], times["max"]), ([0.0], [2 / 24]))
            self.assertNotIn("KHR_draco_mesh_compression", doc.get("extensionsUsed", []))
            self.assertNotIn("tessera_environment", bpy.context.scene.keys(), "the scene is left as it was")
            # The panel's own state neither travels in the file nor is lost.
            self.assertEqual(set(doc["scenes"][0]["extras"]), {"tessera_environment"})
            self.assertEqual(bpy.context.scene.tessera.status, "state of the panel")
            self.assertEqual(bpy.context.scene.tessera.tier, "trusted")


    def test_an_environment_image_travels_with_the_scene(self):
        with tempfile.TemporaryDirectory() as d:
            scene = renderable_scene(d)
            hdr = bpy.data.images.new("sky", 8, 4, float_buffer=True)
            hdr.pixels.foreach_set(np.full(8 * 4 * 4, 0.5, dtype=np.float32))
            hdr.filepath_raw = os.path.join(d, "sky.hdr")
            hdr.file_format = "HDR"
            hdr.save()
            hdr.source = "FILE"
            tree = scene.world.node_tree
            tex = tree.nodes.new("ShaderNodeTexEnvironment")
            tex.image = hdr
            mapping = tree.nodes.new("ShaderNodeMapping")
            mapping.inputs["Rotation"].default_value = (0.0, 0.0, 1.5707963267948966)
            coords = tree.nodes.new("ShaderNodeTexCoord")
            tree.links.new(coords.outputs["Generated"], mapping.inputs["Vector"])
            tree.links.new(mapping.outputs["Vector"], tex.inputs["Vector"])
            tree.links.new(tex.outputs["Color"], tree.nodes["Background"].inputs["Color"])
            tree.nodes["Background"].inputs["Strength"].default_value = 2.0
            self.assertEqual(addon().preflight.check_scene(scene), [])
            files, _ = addon().export.export_scene(bpy.context, os.path.join(d, "out"))
            self.assertEqual(files, ["scene.glb", "sky.hdr"])
            self.assertTrue(os.path.isfile(os.path.join(d, "out", "sky.hdr")))
            env = glb_json(os.path.join(d, "out", "scene.glb"))["scenes"][0]["extras"]["tessera_environment"]
            self.assertEqual(env["image"], "sky.hdr")
            self.assertEqual(env["strength"], 2.0)
            self.assertAlmostEqual(env["rotation"], 90.0, places=4)
            # An 8-bit image cannot be an environment: refused by name.
            tex.image = bpy.data.images["checker"]
            findings = addon().preflight.check_scene(scene)
            self.assertTrue(addon().preflight.refused(findings))
            self.assertIn("only .hdr and .exr", findings[0][2])


class FakeLayout:
    """Records what a panel draws (bpy as a module has no UI to draw into)."""

    def __init__(self, lines):
        self.lines = lines

    def prop(self, data, name, **kw):
        assert hasattr(data, name), name
        self.lines.append(f"prop {name}")

    def label(self, text="", icon="NONE"):
        self.lines.append(f"label {text}")

    def operator(self, idname, **kw):
        category, name = idname.split(".")
        assert hasattr(getattr(bpy.ops, category), name), idname
        self.lines.append(f"operator {idname}")

    def row(self, **kw):
        return self

    def column(self, **kw):
        return self

    def box(self):
        return self


class Panel(unittest.TestCase):
    def test_the_panel_shows_the_settings_the_findings_and_the_job(self):
        with tempfile.TemporaryDirectory() as d:
            scene = unsupported_scene(d)
            bpy.ops.tessera.preflight()
            s = scene.tessera
            s.job_id, s.job_state = "ab" * 16, "rendering"
            lines = []
            panel = addon().TESSERA_PT_panel
            panel.draw(type("P", (), {"layout": FakeLayout(lines)})(), bpy.context)
            text = "\n".join(lines)
            self.assertIn("label 48x32, 4 samples, 2 bounces (from Cycles)", lines)
            self.assertIn("label Frames 0-2", lines)
            self.assertIn("object 'softbox': area lights", text)
            for op in ("preflight", "estimate", "submit", "refresh", "fetch_frames", "open_dashboard"):
                self.assertIn(f"operator tessera.{op}", lines)
            self.assertIn(f"label Job {'ab' * 6}: rendering", lines)


class Offline(unittest.TestCase):
    def test_nothing_goes_online_while_online_access_is_off(self):
        with tempfile.TemporaryDirectory() as d:
            renderable_scene(d)
            bpy.context.preferences.system.use_online_access = False
            self.assertFalse(bpy.app.online_access)
            prefs().coordinator_url = "http://127.0.0.1:9"
            prefs().token = "t"
            with self.assertRaises(RuntimeError) as e:
                bpy.ops.tessera.estimate()
            self.assertIn("Online access is off", str(e.exception))
            self.assertFalse(bpy.context.scene.tessera.busy)


def glb_json(path):
    with open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[12:16], "little")
    return json.loads(data[20 : 20 + n])


@unittest.skipUnless(
    os.environ.get("TESSERA_REQUIRE_BROKER") == "1" or broker_up(),
    "no RabbitMQ on the local port",
)
class AgainstAFarm(unittest.TestCase):
    def test_submit_follow_fetch_and_compare_with_tessera_render(self):
        self.assertTrue(os.path.exists(TESSERA), f"{TESSERA}: no tessera binary (set TESSERA_BIN)")
        farm = Farm()
        try:
            self.run_job(farm)
        except BaseException:
            for name in ("coordinator", "node", "verifier"):
                sys.stderr.write(f"--- {name} log ---\n{farm.log(name)}\n")
            raise
        finally:
            farm.stop()

    def run_job(self, farm):
        work = tempfile.mkdtemp(prefix="tessera-blender-job-")
        self.addCleanup(shutil.rmtree, work, True)
        scene = renderable_scene(work)
        bpy.context.preferences.system.use_online_access = True
        self.assertTrue(bpy.app.online_access)
        p = prefs()
        p.coordinator_url = farm.url
        p.token = TOKEN
        p.frames_dir = os.path.join(work, "frames")
        s = scene.tessera
        s.tier = "priority"
        self.assertEqual(bpy.ops.tessera.estimate(), {"FINISHED"})
        pump(lambda: not s.busy, "the estimate", 120)
        self.assertGreater(s.estimate_micro, 0)
        self.assertIn("priority tier", s.estimate_text)
        self.assertIn("Uploaded 1 of 1 files", s.status)
        body = addon().worker.prepared(scene.name)
        self.assertEqual((body["frame_start"], body["frame_end"]), (0, 2))
        self.assertEqual(body["settings"]["camera"], "cam")
        # Estimating again uploads nothing: the coordinator has the file.
        self.assertEqual(bpy.ops.tessera.estimate(), {"FINISHED"})
        pump(lambda: not s.busy, "the second estimate", 120)
        self.assertIn("Uploaded 0 of 1 files", s.status)
        folder = addon().worker.exported(scene.name)
        # Submit sends what was estimated: a changed setting needs a new estimate.
        self.assertTrue(bpy.ops.tessera.submit.poll())
        s.tier = "economy"
        self.assertFalse(bpy.ops.tessera.submit.poll())
        s.tier = "priority"
        self.assertTrue(bpy.ops.tessera.submit.poll())
        self.assertEqual(bpy.ops.tessera.submit(), {"FINISHED"})
        pump(lambda: s.job_state in ("done", "failed", "cancelled"), "the job", 300)
        self.assertEqual(s.job_state, "done", s.error)
        self.assertEqual(s.progress, 1.0)
        # Following again (as after a restart) reads the same state.
        s.job_state, s.progress = "", 0.0
        self.assertEqual(bpy.ops.tessera.refresh(), {"FINISHED"})
        pump(lambda: s.job_state == "done", "following again", 60)
        self.assertEqual(s.progress, 1.0)
        self.assertEqual(bpy.ops.tessera.fetch_frames(), {"FINISHED"})
        pump(lambda: not s.busy, "fetching frames", 120)
        job = s.job_id
        # The same exported file through `tessera render`, on this machine's adapter.
        out = os.path.join(work, "render")
        os.makedirs(out)
        subprocess.run(
            [TESSERA, "render", os.path.join(folder, "scene.glb"), "-o", os.path.join(out, "f-#.png"),
             "--width", "48", "--height", "32", "--spp", "4", "--max-bounces", "2", "--seed", "1",
             "--frames", "0..2", "--fps", "24/1", "--camera", "cam", "--data", os.path.join(work, "data")],
            check=True,
            capture_output=True,
        )
        renders = sorted(f for f in os.listdir(out) if f.endswith(".exr"))
        self.assertEqual(len(renders), 3, renders)
        for f, name in enumerate(renders):
            got = bpy.data.images[f"tessera {job[:12]} {f:04d}"]
            self.assertTrue(os.path.exists(bpy.path.abspath(got.filepath_raw)))
            want = bpy.data.images.load(os.path.join(out, name))
            self.assertEqual(tuple(got.size), (48, 32))
            self.assertEqual(tuple(want.size), (48, 32))
            a = np.empty(48 * 32 * 4, dtype=np.float32)
            b = np.empty(48 * 32 * 4, dtype=np.float32)
            got.pixels.foreach_get(a)
            want.pixels.foreach_get(b)
            self.assertGreater(float(a[0::4].max()), 0.0, f"frame {f} is black")
            np.testing.assert_array_equal(a, b, f"frame {f}: the farm's pixels and `tessera render`'s")
        # The frames differ: the cube moves.
        first = np.empty(48 * 32 * 4, dtype=np.float32)
        last = np.empty(48 * 32 * 4, dtype=np.float32)
        bpy.data.images[f"tessera {job[:12]} 0000"].pixels.foreach_get(first)
        bpy.data.images[f"tessera {job[:12]} 0002"].pixels.foreach_get(last)
        self.assertFalse(np.array_equal(first, last), "frames 0 and 2 are the same")


if __name__ == "__main__":
    install_addon()
    unittest.main(verbosity=2)

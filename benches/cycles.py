"""Render Tessera's sample scenes with Blender Cycles (CPU) at the settings of
`tessera bench render`, time the renders, and write the images and a JSON report.

Run with the Python that has bpy (Blender 4.5 LTS as a module):

    /work/bpyenv/bin/python benches/cycles.py --scenes scenes/cornell-box.glb \
        --width 256 --height 256 --spp 64 --max-bounces 8 \
        --images benches/results/images/cycles-64 --out benches/results/cycles-cpu.json

How each scene is set up so that Cycles renders what Tessera renders:
- Import: Blender's glTF importer with its defaults, lighting mode "Standard" (SPEC:
  punctual intensities converted from photometric units, W = lm / 683 · 4π for point
  and spot lights, irradiance = lux / 683 for suns), the same convention as Tessera.
- Camera: the first perspective camera in Tessera's order (depth-first over the default
  scene's nodes, children in array order). Its field of view is set from the glTF
  `yfov` with the vertical sensor fit, as Tessera does (the glTF `aspectRatio` is not
  used); clip start 1e-5 m and clip end 1e9 m, since Tessera does not clip.
- Lights: point and spot radius 0 and sun angle 0, so they are punctual as in glTF.
- Emission: glTF emits only from the front face of a single-sided material, Cycles from
  both faces, so the emission strength of every single-sided emissive material is
  multiplied by (1 − Backfacing) and sampled from the front only.
- World: `scenes[i].extras.tessera_environment` when present (colour × strength, or an
  equirectangular image through an Environment Texture node turned by `rotation`
  degrees about the up axis), otherwise black.
- Integrator: Cycles on the CPU, `--spp` samples, no adaptive sampling, no denoising,
  `max_bounces` and every per-type limit (diffuse, glossy, transmission, volume,
  transparent) = `--max-bounces`; no sample clamping (Cycles' default clamps indirect
  samples at 10), no glossy filter, light threshold 0, light tree off (Tessera picks
  lights from one power-weighted list, which is what Cycles does without its tree),
  seed 0, default sampling pattern, path guiding off.
- Film: box pixel filter 1.0 px wide (Tessera jitters each sample uniformly inside its
  pixel), not transparent, view transform Standard (look None, exposure 0, gamma 1).
- Output: OpenEXR, half float, RGBA, ZIP (linear scene values; the view transform does
  not apply to EXR).

Timing (wall clock): `import_s` is the glTF import. Then, with persistent data on, a
sync render of an 8×8 border region at the full settings (`sync_s`: scene sync, BVH
build, kernel set-up) and the timed full-frame render (`render_s`), which reuses the
synced scene and BVH, so it is the path-tracing time comparable with
`tessera bench render`'s `render_s`. (The sync render keeps the sample count: a 1-spp
sync render followed by an N-spp render with persistent data makes Cycles 4.5 render a
wrong, fast image.) `--no-persistent` times one plain render instead.
`samples_per_second` = width × height × spp / render_s.
"""

import argparse
import json
import math
import os
import platform
import struct
import subprocess
import sys
import time
import urllib.parse

# This file is named cycles.py, like Blender's Cycles add-on: take its folder off the
# module path so that Blender's `import cycles` finds the add-on, not this script.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import bpy  # noqa: E402


def read_gltf_json(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] == b"glTF":
        length, kind = struct.unpack_from("<II", data, 12)
        if kind != 0x4E4F534A:
            raise ValueError(f"{path}: first GLB chunk is not JSON")
        return json.loads(data[20 : 20 + length])
    return json.loads(data)


def default_scene(gltf):
    scenes = gltf.get("scenes", [])
    if not scenes:
        return None
    return scenes[gltf.get("scene", 0)]


def first_camera(gltf):
    """(node name, yfov) of the first perspective camera in Tessera's order."""
    scene = default_scene(gltf)
    if scene is None:
        return None
    nodes = gltf.get("nodes", [])
    cameras = gltf.get("cameras", [])
    stack = list(reversed(scene.get("nodes", [])))
    while stack:
        idx = stack.pop()
        node = nodes[idx]
        cam = node.get("camera")
        if cam is not None and cameras[cam].get("type") == "perspective":
            return node.get("name"), cameras[cam]["perspective"]["yfov"]
        stack.extend(reversed(node.get("children", [])))
    return None


def setup_world(scene, gltf, gltf_path):
    env = ((default_scene(gltf) or {}).get("extras") or {}).get("tessera_environment")
    world = bpy.data.worlds.new("tessera")
    world.use_nodes = True
    scene.world = world
    nt = world.node_tree
    bg = nt.nodes["Background"]
    if env is None:
        bg.inputs["Color"].default_value = (0.0, 0.0, 0.0, 1.0)
        bg.inputs["Strength"].default_value = 0.0
        return "black"
    strength = float(env.get("strength", 1.0))
    bg.inputs["Strength"].default_value = strength
    image = env.get("image")
    if image:
        path = os.path.join(os.path.dirname(gltf_path), urllib.parse.unquote(image))
        tex = nt.nodes.new("ShaderNodeTexEnvironment")
        tex.image = bpy.data.images.load(path)
        tex.image.colorspace_settings.name = "Linear Rec.709"
        coord = nt.nodes.new("ShaderNodeTexCoord")
        mapping = nt.nodes.new("ShaderNodeMapping")
        mapping.inputs["Rotation"].default_value = (
            0.0,
            0.0,
            math.radians(float(env.get("rotation", 0.0))),
        )
        nt.links.new(coord.outputs["Generated"], mapping.inputs["Vector"])
        nt.links.new(mapping.outputs["Vector"], tex.inputs["Vector"])
        nt.links.new(tex.outputs["Color"], bg.inputs["Color"])
        return f"image {image} x {strength} rot {env.get('rotation', 0.0)}"
    r, g, b = env.get("color", [0.0, 0.0, 0.0])
    bg.inputs["Color"].default_value = (r, g, b, 1.0)
    return f"color {r},{g},{b} x {strength}"


def setup_cycles(scene, args):
    scene.render.engine = "CYCLES"
    c = scene.cycles
    c.device = "CPU"
    c.samples = args.spp
    c.use_adaptive_sampling = False
    c.use_denoising = False
    c.max_bounces = args.max_bounces
    c.diffuse_bounces = args.max_bounces
    c.glossy_bounces = args.max_bounces
    c.transmission_bounces = args.max_bounces
    c.volume_bounces = args.max_bounces
    c.transparent_max_bounces = args.max_bounces
    c.sample_clamp_direct = 0.0
    c.sample_clamp_indirect = 0.0
    c.blur_glossy = 0.0
    c.caustics_reflective = True
    c.caustics_refractive = True
    c.light_sampling_threshold = 0.0
    c.use_light_tree = args.light_tree
    c.seed = 0
    c.use_animated_seed = False
    c.use_guiding = False
    c.pixel_filter_type = "BOX"
    c.filter_width = 1.0
    c.film_exposure = 1.0
    scene.render.film_transparent = False
    scene.render.resolution_x = args.width
    scene.render.resolution_y = args.height
    scene.render.resolution_percentage = 100
    scene.render.pixel_aspect_x = 1.0
    scene.render.pixel_aspect_y = 1.0
    scene.render.use_border = False
    scene.render.threads_mode = "FIXED"
    scene.render.threads = args.threads
    scene.render.use_persistent_data = args.persistent
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    s = scene.render.image_settings
    s.file_format = "OPEN_EXR"
    s.color_mode = "RGBA"
    s.color_depth = "16"
    s.exr_codec = "ZIP"
    scene.frame_set(0)


def setup_camera(scene, gltf):
    found = first_camera(gltf)
    if found is None:
        raise RuntimeError("the scene has no perspective camera")
    node_name, yfov = found
    cams = [o for o in scene.objects if o.type == "CAMERA"]
    obj = next((o for o in cams if node_name and o.name == node_name), None)
    if obj is None and len(cams) == 1:
        obj = cams[0]
    if obj is None:
        raise RuntimeError(
            f"camera node {node_name!r} not found among {[o.name for o in cams]}"
        )
    scene.camera = obj
    cam = obj.data
    cam.type = "PERSP"
    cam.sensor_fit = "VERTICAL"
    cam.angle_y = yfov
    cam.shift_x = 0.0
    cam.shift_y = 0.0
    cam.clip_start = 1e-5
    cam.clip_end = 1e9
    cam.dof.use_dof = False
    return obj.name


def setup_lights(scene):
    n = 0
    for o in scene.objects:
        if o.type != "LIGHT":
            continue
        light = o.data
        if light.type in ("POINT", "SPOT"):
            light.shadow_soft_size = 0.0
            if hasattr(light, "use_soft_falloff"):
                light.use_soft_falloff = False
        elif light.type == "SUN":
            light.angle = 0.0
        n += 1
    return n


def front_face_emission():
    """glTF emits only from the front of a single-sided material, Cycles from both sides:
    multiply the Principled BSDF's emission strength by (1 − Backfacing) in every
    material the importer marked single-sided (backface culling on), and sample those
    emitters from the front only."""
    n = 0
    for mat in bpy.data.materials:
        if not mat.use_nodes or not mat.use_backface_culling:
            continue
        nt = mat.node_tree
        for node in list(nt.nodes):
            if node.type != "BSDF_PRINCIPLED":
                continue
            sock = node.inputs["Emission Strength"]
            color = node.inputs["Emission Color"]
            if sock.is_linked or (
                not color.is_linked and max(color.default_value[:3]) <= 0.0
            ):
                continue
            if sock.default_value <= 0.0:
                continue
            geo = nt.nodes.new("ShaderNodeNewGeometry")
            front = nt.nodes.new("ShaderNodeMath")
            front.operation = "SUBTRACT"
            front.inputs[0].default_value = 1.0
            nt.links.new(geo.outputs["Backfacing"], front.inputs[1])
            scale = nt.nodes.new("ShaderNodeMath")
            scale.operation = "MULTIPLY"
            scale.inputs[1].default_value = sock.default_value
            nt.links.new(front.outputs["Value"], scale.inputs[0])
            nt.links.new(scale.outputs["Value"], sock)
            mat.cycles.emission_sampling = "FRONT"
            n += 1
    return n


def render_scene(path, args):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    gltf = read_gltf_json(path)
    t = time.perf_counter()
    bpy.ops.import_scene.gltf(
        filepath=os.path.abspath(path), export_import_convert_lighting_mode="SPEC"
    )
    import_s = time.perf_counter() - t
    scene = bpy.context.scene
    setup_cycles(scene, args)
    camera = setup_camera(scene, gltf)
    lights = setup_lights(scene)
    world = setup_world(scene, gltf, path)
    one_sided_emitters = front_face_emission()
    triangles = 0
    depsgraph = bpy.context.evaluated_depsgraph_get()
    for o in scene.objects:
        if o.type == "MESH":
            mesh = o.evaluated_get(depsgraph).data
            mesh.calc_loop_triangles()
            triangles += len(mesh.loop_triangles)

    stats = []

    def on_stats(s):
        stats.append(s)

    bpy.app.handlers.render_stats.append(on_stats)
    try:
        # The sync render: full settings on an 8×8 border region, so the scene, BVH and
        # kernels are built; with persistent data the timed render then reuses them.
        # (Changing the sample count between the two renders instead would leave Cycles
        # with a stale sampling pattern: it renders wrong images, fast.)
        if args.persistent:
            r = scene.render
            r.use_border = True
            r.use_crop_to_border = True
            r.border_min_x, r.border_max_x = 0.5, 0.5 + 8 / args.width
            r.border_min_y, r.border_max_y = 0.5, 0.5 + 8 / args.height
            t = time.perf_counter()
            bpy.ops.render.render(write_still=False)
            sync_s = time.perf_counter() - t
            r.use_border = False
        else:
            sync_s = None
        stats.clear()
        t = time.perf_counter()
        bpy.ops.render.render(write_still=False)
        render_s = time.perf_counter() - t
    finally:
        bpy.app.handlers.render_stats.remove(on_stats)
    image = None
    if args.images:
        os.makedirs(args.images, exist_ok=True)
        stem = os.path.splitext(os.path.basename(path))[0]
        image = os.path.join(args.images, stem + ".exr")
        bpy.data.images["Render Result"].save_render(filepath=os.path.abspath(image))
    samples = args.width * args.height * args.spp
    return {
        "scene": os.path.basename(path),
        "path": path,
        "triangles": triangles,
        "camera": camera,
        "punctual_lights": lights,
        "world": world,
        "one_sided_emitters": one_sided_emitters,
        "import_s": import_s,
        "sync_s": sync_s,
        "render_s": render_s,
        "samples_per_second": samples / render_s,
        "cycles_stats": stats[-1] if stats else None,
        "image": image,
    }


def git(*a):
    try:
        return subprocess.run(
            ["git", *a], capture_output=True, text=True, check=True
        ).stdout.strip()
    except Exception:
        return None


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scenes", required=True, help="comma-separated glTF paths")
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--spp", type=int, default=64)
    p.add_argument("--max-bounces", type=int, default=8)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--light-tree", action="store_true", help="use Cycles' light tree")
    p.add_argument(
        "--no-persistent",
        dest="persistent",
        action="store_false",
        help="no sync render: render_s then includes scene sync and BVH build",
    )
    p.add_argument("--images", help="folder for SCENE.exr")
    p.add_argument("--out", default="benches/results/cycles-cpu.json")
    args = p.parse_args(sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else None)

    load = os.getloadavg()
    results = []
    ok = True
    for path in [s.strip() for s in args.scenes.split(",") if s.strip()]:
        print(f"cycles: {path}", file=sys.stderr, flush=True)
        try:
            r = render_scene(path, args)
            print(
                f"cycles: {r['scene']}: import {r['import_s']:.2f} s, sync "
                f"{r['sync_s'] or 0:.2f} s, render {r['render_s']:.3f} s, "
                f"{r['samples_per_second']:.0f} samples/s",
                file=sys.stderr,
                flush=True,
            )
        except Exception as e:  # one broken scene must not lose the others' numbers
            ok = False
            r = {"scene": os.path.basename(path), "path": path, "error": repr(e)}
            print(f"cycles: {path}: FAILED: {e!r}", file=sys.stderr, flush=True)
        results.append(r)

    report = {
        "format": "tessera-bench-cycles v1",
        "device": "cycles-cpu",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_commit": git("rev-parse", "HEAD"),
        "blender": bpy.app.version_string,
        "host": {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": args.threads,
                 "load_average": load},
        "settings": {
            "width": args.width,
            "height": args.height,
            "spp": args.spp,
            "max_bounces": args.max_bounces,
            "light_tree": args.light_tree,
            "pixel_filter": "box 1.0",
        },
        "scenes": results,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print(f"wrote {args.out}", file=sys.stderr)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

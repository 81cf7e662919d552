"""Build a small textured PBR scene in Blender from scratch and export it as scenes/blender-pbr.glb.

Made with: Blender 4.5.15 LTS (bpy 4.5.15 from PyPI) on CPython 3.11.

Run it (from the repository root) with Blender as a Python module:

    python -m venv /tmp/bpyenv && /tmp/bpyenv/bin/pip install 'bpy==4.5.*'
    /tmp/bpyenv/bin/python scenes/blender/export_pbr.py

or with a Blender 4.5 install:

    blender --background --factory-startup --python scenes/blender/export_pbr.py

An optional argument after `--` gives another output path:

    /tmp/bpyenv/bin/python scenes/blender/export_pbr.py -- /tmp/pbr.glb

Everything is generated here (numpy, fixed seeds), no external assets:

- floor: 8 m plane, base colour = checker + value noise (sRGB image), roughness map
  (a glTF metallic-roughness image: G = roughness, B = metallic = 0);
- "bumpy" sphere: plain base colour with a tangent-space normal map of round bumps;
- "brushed" cube: metallic 1, roughness from the stripes of a metallic-roughness image;
- emissive panel: Emission Strength 10 (exported as KHR_materials_emissive_strength);
- sun (3 W/m²) and point light (250 W), exported in the glTF exporter's standard
  (photometric) mode: sun lux = W/m² × 683, point candela = W / 4π × 683;
- a perspective camera; world colour black (0, 0, 0), also written to the scene's
  extras as `tessera_environment` so the renderer and Cycles see the same background.

The images are 512 × 512 PNGs packed into the .glb (about 1.5 MB in all). Blender's
exporter is not byte-for-byte reproducible, so the file is committed as is and not
compared in CI.
"""

import math
import os
import sys

import bpy
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.normpath(os.path.join(HERE, "..", "blender-pbr.glb"))
SIZE = 512
WORLD_COLOR = (0.0, 0.0, 0.0)


def output_path():
    """The path after `--` on the command line, else scenes/blender-pbr.glb."""
    argv = sys.argv
    if "--" in argv:
        rest = argv[argv.index("--") + 1:]
        if rest:
            return os.path.abspath(rest[0])
    return DEFAULT_OUT


def value_noise(size, cells, seed):
    """Smooth value noise in [0, 1] on a size × size grid (bilinear over a cells² lattice)."""
    rng = np.random.default_rng(seed)
    lattice = rng.random((cells + 1, cells + 1))
    lattice[-1, :] = lattice[0, :]
    lattice[:, -1] = lattice[:, 0]
    t = np.linspace(0.0, cells, size, endpoint=False)
    i = np.floor(t).astype(int)
    f = t - i
    f = f * f * (3.0 - 2.0 * f)
    rows = lattice[i, :] * (1.0 - f)[:, None] + lattice[i + 1, :] * f[:, None]
    return rows[:, i] * (1.0 - f)[None, :] + rows[:, i + 1] * f[None, :]


def make_image(name, rgb, non_color):
    """A packed PNG image from an (h, w, 3) float array in [0, 1], row 0 = top."""
    h, w, _ = rgb.shape
    image = bpy.data.images.new(name, width=w, height=h, alpha=False)
    # Set the colour space first: changing it afterwards regenerates (blanks) the pixels.
    image.colorspace_settings.name = "Non-Color" if non_color else "sRGB"
    rgba = np.ones((h, w, 4), dtype=np.float32)
    rgba[:, :, :3] = np.clip(rgb, 0.0, 1.0)
    # Blender stores rows bottom-up.
    image.pixels.foreach_set(rgba[::-1].ravel())
    image.update()
    image.file_format = "PNG"
    image.pack()
    return image


def floor_images():
    """Checker + noise base colour (sRGB values) and a roughness map."""
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    checker = ((np.floor(x * 8) + np.floor(y * 8)) % 2).astype(np.float32)
    noise = value_noise(SIZE, 16, 1) * 0.6 + value_noise(SIZE, 64, 2) * 0.4
    base = np.empty((SIZE, SIZE, 3))
    light = np.array([0.78, 0.74, 0.66])
    dark = np.array([0.30, 0.27, 0.24])
    mix = checker[:, :, None]
    base[:] = dark * (1 - mix) + light * mix
    base *= (0.8 + 0.35 * noise)[:, :, None]
    rough = 0.25 + 0.65 * value_noise(SIZE, 8, 3)
    mr = np.zeros((SIZE, SIZE, 3))
    mr[:, :, 1] = rough
    return base, mr


def bump_normal_map():
    """Tangent-space normal map (OpenGL, +Y up) of a grid of round bumps."""
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    cells = 12
    u = (x * cells) % 1.0 - 0.5
    v = (y * cells) % 1.0 - 0.5
    r2 = u * u + v * v
    height = np.clip(1.0 - r2 / 0.16, 0.0, None) ** 2
    dy, dx = np.gradient(height * 0.04 * SIZE / cells)
    # Up in the image is −row: dh/dup = −dh/drow.
    n = np.stack([-dx, dy, np.ones_like(dx)], axis=-1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    return n * 0.5 + 0.5


def stripes_metal_rough():
    """Metallic 1 everywhere (blue), roughness in stripes 0.15 / 0.6 (green)."""
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    stripes = (np.floor(x * 10) % 2) * 0.45 + 0.15
    grain = value_noise(SIZE, 128, 4) * 0.08
    mr = np.zeros((SIZE, SIZE, 3))
    mr[:, :, 1] = stripes + grain
    mr[:, :, 2] = 1.0
    return mr


def principled(name, base_color=(0.8, 0.8, 0.8), roughness=0.5, metallic=0.0):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*base_color, 1.0)
    bsdf.inputs["Roughness"].default_value = roughness
    bsdf.inputs["Metallic"].default_value = metallic
    return mat, bsdf


def image_node(mat, image):
    node = mat.node_tree.nodes.new("ShaderNodeTexImage")
    node.image = image
    return node


def link_metal_rough(mat, bsdf, image):
    """glTF layout: Separate Color G → Roughness, B → Metallic (what the exporter reads)."""
    tree = mat.node_tree
    tex = image_node(mat, image)
    sep = tree.nodes.new("ShaderNodeSeparateColor")
    tree.links.new(tex.outputs["Color"], sep.inputs["Color"])
    tree.links.new(sep.outputs["Green"], bsdf.inputs["Roughness"])
    tree.links.new(sep.outputs["Blue"], bsdf.inputs["Metallic"])


def link_normal_map(mat, bsdf, image):
    tree = mat.node_tree
    tex = image_node(mat, image)
    normal = tree.nodes.new("ShaderNodeNormalMap")
    tree.links.new(tex.outputs["Color"], normal.inputs["Color"])
    tree.links.new(normal.outputs["Normal"], bsdf.inputs["Normal"])


def assign(obj, mat, name):
    obj.name = name
    obj.data.name = name
    obj.data.materials.append(mat)
    return obj


def build_scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.name = "blender-pbr"
    scene.unit_settings.system = "METRIC"

    world = bpy.data.worlds.new("world")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (*WORLD_COLOR, 1.0)
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 1.0
    scene.world = world
    scene["tessera_environment"] = {"color": list(WORLD_COLOR), "strength": 1.0}

    base, floor_mr = floor_images()
    base_img = make_image("floor_base_color", base, non_color=False)
    floor_mr_img = make_image("floor_metal_rough", floor_mr, non_color=True)
    normal_img = make_image("bumps_normal", bump_normal_map(), non_color=True)
    stripes_img = make_image("stripes_metal_rough", stripes_metal_rough(), non_color=True)

    # Floor: 8 m, checker repeated twice (UVs scaled in the mesh).
    bpy.ops.mesh.primitive_plane_add(size=8.0, location=(0.0, 0.0, 0.0))
    floor_obj = bpy.context.object
    for loop_uv in floor_obj.data.uv_layers.active.data:
        loop_uv.uv = (loop_uv.uv[0] * 2.0, loop_uv.uv[1] * 2.0)
    mat, bsdf = principled("floor_checker", roughness=0.6)
    tex = image_node(mat, base_img)
    mat.node_tree.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    link_metal_rough(mat, bsdf, floor_mr_img)
    assign(floor_obj, mat, "floor")

    # Bumpy sphere: normal map.
    bpy.ops.mesh.primitive_uv_sphere_add(segments=64, ring_count=32, radius=0.7, location=(-1.0, 0.3, 0.7))
    sphere = bpy.context.object
    for poly in sphere.data.polygons:
        poly.use_smooth = True
    mat, bsdf = principled("bumpy_blue", base_color=(0.1, 0.3, 0.8), roughness=0.35)
    link_normal_map(mat, bsdf, normal_img)
    assign(sphere, mat, "bumpy_sphere")

    # Brushed metal cube: metallic-roughness texture.
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=(1.1, -0.2, 0.5), rotation=(0.0, 0.0, math.radians(25)))
    cube = bpy.context.object
    mat, bsdf = principled("brushed_gold", base_color=(1.0, 0.77, 0.34), roughness=1.0, metallic=1.0)
    link_metal_rough(mat, bsdf, stripes_img)
    assign(cube, mat, "brushed_cube")

    # Emissive panel behind, facing the objects.
    bpy.ops.mesh.primitive_plane_add(size=1.0, location=(0.0, 2.0, 1.2), rotation=(math.radians(90), 0.0, 0.0))
    panel = bpy.context.object
    panel.scale = (2.4, 0.8, 1.0)
    mat, bsdf = principled("panel_emissive", base_color=(0.9, 0.9, 0.9), roughness=0.9)
    bsdf.inputs["Emission Color"].default_value = (1.0, 0.85, 0.6, 1.0)
    bsdf.inputs["Emission Strength"].default_value = 10.0
    assign(panel, mat, "emissive_panel")

    sun_data = bpy.data.lights.new("sun", type="SUN")
    sun_data.energy = 3.0  # W/m²
    sun_data.color = (1.0, 0.96, 0.9)
    sun = bpy.data.objects.new("sun", sun_data)
    sun.rotation_euler = (math.radians(40), math.radians(-20), math.radians(35))
    scene.collection.objects.link(sun)

    point_data = bpy.data.lights.new("point", type="POINT")
    point_data.energy = 250.0  # W
    point_data.color = (1.0, 0.75, 0.5)
    point_data.shadow_soft_size = 0.0  # a true point, as glTF has
    point = bpy.data.objects.new("point", point_data)
    point.location = (1.8, -1.6, 2.2)
    scene.collection.objects.link(point)

    cam_data = bpy.data.cameras.new("camera")
    cam_data.lens = 35.0
    cam_data.sensor_width = 36.0
    camera = bpy.data.objects.new("camera", cam_data)
    camera.location = (0.0, -6.5, 2.6)
    camera.rotation_euler = (math.radians(72), 0.0, 0.0)
    scene.collection.objects.link(camera)
    scene.camera = camera
    scene.render.resolution_x = 1280
    scene.render.resolution_y = 720
    return scene


def export(path):
    bpy.ops.export_scene.gltf(
        filepath=path,
        export_format="GLB",
        export_image_format="AUTO",
        export_apply=True,
        export_cameras=True,
        export_lights=True,
        export_import_convert_lighting_mode="SPEC",
        export_yup=True,
        export_texcoords=True,
        export_normals=True,
        export_tangents=True,
        export_materials="EXPORT",
        export_animations=False,
        export_extras=True,
    )


def verify(path):
    """Fails unless the file carries what the renderer's tests rely on."""
    with open(path, "rb") as f:
        data = f.read()
    for needle in (
        b"KHR_materials_emissive_strength",
        b"KHR_lights_punctual",
        b"normalTexture",
        b"metallicRoughnessTexture",
        b"baseColorTexture",
        b"tessera_environment",
    ):
        if needle not in data:
            raise SystemExit(f"{path}: missing {needle.decode()}")
    print(f"exported {path} ({len(data)} bytes) with Blender {bpy.app.version_string}")


if __name__ == "__main__":
    out = output_path()
    build_scene()
    export(out)
    verify(out)

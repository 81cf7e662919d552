"""Build a small studio scene in Blender from scratch and export it as scenes/blender-studio.glb.

Made with: Blender 4.5.15 LTS (bpy 4.5.15 from PyPI, build hash 5afeabba6097) on CPython 3.11.

Run it (from the repository root) with Blender as a Python module:

    python -m venv /tmp/bpyenv && /tmp/bpyenv/bin/pip install 'bpy==4.5.*'
    /tmp/bpyenv/bin/python scenes/blender/export_studio.py

or with a Blender 4.5 install:

    blender --background --factory-startup --python scenes/blender/export_studio.py

An optional argument after `--` gives another output path:

    /tmp/bpyenv/bin/python scenes/blender/export_studio.py -- /tmp/studio.glb

The scene uses no external assets: a floor plane, Suzanne, a UV sphere and a bevelled
cube with Principled BSDF materials of different base colours, an emissive panel with
emission strength 8 (so the exporter writes KHR_materials_emissive_strength), a point and
a sun light (KHR_lights_punctual), and a perspective camera. The exporter's output is not
byte-identical from run to run (vertex data differs in the last bits), so the file is committed,
not regenerated or compared in CI.
"""

import math
import os
import sys

import bpy

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.normpath(os.path.join(HERE, "..", "blender-studio.glb"))


def output_path():
    """The path after `--` on the command line, else scenes/blender-studio.glb."""
    argv = sys.argv
    if "--" in argv:
        rest = argv[argv.index("--") + 1:]
        if rest:
            return os.path.abspath(rest[0])
    return DEFAULT_OUT


def principled(name, base_color, roughness=0.5, metallic=0.0, emission=None, strength=0.0):
    """A Principled BSDF material; `emission` (linear RGB) with `strength` makes it glow."""
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*base_color, 1.0)
    bsdf.inputs["Roughness"].default_value = roughness
    bsdf.inputs["Metallic"].default_value = metallic
    if emission is not None:
        bsdf.inputs["Emission Color"].default_value = (*emission, 1.0)
        bsdf.inputs["Emission Strength"].default_value = strength
    return mat


def assign(obj, mat, name):
    obj.name = name
    obj.data.name = name
    obj.data.materials.append(mat)
    return obj


def smooth(obj):
    for poly in obj.data.polygons:
        poly.use_smooth = True


def apply_modifiers(obj):
    """Bakes the object's modifiers into its mesh, keeping the mesh's name."""
    name = obj.data.name
    bpy.context.view_layer.objects.active = obj
    for modifier in list(obj.modifiers):
        bpy.ops.object.modifier_apply(modifier=modifier.name)
    obj.data.name = name


def build_scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.name = "studio"
    scene.unit_settings.system = "METRIC"

    # Floor: 6 m × 6 m, light grey.
    bpy.ops.mesh.primitive_plane_add(size=6.0, location=(0.0, 0.0, 0.0))
    assign(bpy.context.object, principled("floor", (0.6, 0.6, 0.58), roughness=0.8), "floor")

    # Suzanne, red, standing on the floor, turned a little towards the camera.
    bpy.ops.mesh.primitive_monkey_add(size=1.0, location=(0.0, 0.0, 0.5), rotation=(0.0, 0.0, math.radians(-20)))
    monkey = assign(bpy.context.object, principled("suzanne_red", (0.8, 0.08, 0.05), roughness=0.4), "suzanne")
    subsurf = monkey.modifiers.new("subdivision", "SUBSURF")
    subsurf.levels = 2
    subsurf.render_levels = 2
    smooth(monkey)
    apply_modifiers(monkey)

    # Sphere, blue, slightly metallic.
    bpy.ops.mesh.primitive_uv_sphere_add(segments=48, ring_count=24, radius=0.45, location=(1.3, 0.4, 0.45))
    sphere = assign(
        bpy.context.object,
        principled("sphere_blue", (0.06, 0.2, 0.75), roughness=0.25, metallic=0.3),
        "sphere",
    )
    smooth(sphere)

    # Cube, yellow, rotated, with bevelled edges.
    bpy.ops.mesh.primitive_cube_add(size=0.7, location=(-1.3, 0.3, 0.35), rotation=(0.0, 0.0, math.radians(30)))
    cube = assign(bpy.context.object, principled("cube_yellow", (0.85, 0.65, 0.1), roughness=0.6), "cube")
    bevel = cube.modifiers.new("bevel", "BEVEL")
    bevel.width = 0.04
    bevel.segments = 3
    apply_modifiers(cube)

    # Emissive panel behind the objects, facing them (emission strength > 1).
    bpy.ops.mesh.primitive_plane_add(size=1.0, location=(0.0, 1.8, 1.4), rotation=(math.radians(90), 0.0, 0.0))
    panel = bpy.context.object
    panel.scale = (2.0, 0.6, 1.0)
    assign(
        panel,
        principled("panel_emissive", (0.9, 0.9, 0.9), roughness=0.9, emission=(1.0, 0.9, 0.75), strength=8.0),
        "emissive_panel",
    )

    # Point light, warm, to the front left.
    point_data = bpy.data.lights.new("point_light", type="POINT")
    point_data.energy = 300.0  # watts
    point_data.color = (1.0, 0.85, 0.7)
    point_data.shadow_soft_size = 0.1
    point = bpy.data.objects.new("point_light", point_data)
    point.location = (-2.0, -1.5, 2.5)
    scene.collection.objects.link(point)

    # Sun light, cool, from above right.
    sun_data = bpy.data.lights.new("sun_light", type="SUN")
    sun_data.energy = 2.0  # W/m² (irradiance)
    sun_data.color = (0.85, 0.9, 1.0)
    sun = bpy.data.objects.new("sun_light", sun_data)
    sun.rotation_euler = (math.radians(50), math.radians(15), math.radians(30))
    scene.collection.objects.link(sun)

    # Camera looking at the group from the front, slightly above.
    cam_data = bpy.data.cameras.new("camera")
    cam_data.lens = 40.0
    cam_data.sensor_width = 36.0
    camera = bpy.data.objects.new("camera", cam_data)
    camera.location = (0.0, -6.0, 2.2)
    camera.rotation_euler = (math.radians(75), 0.0, 0.0)
    scene.collection.objects.link(camera)
    scene.camera = camera

    scene.render.resolution_x = 1280
    scene.render.resolution_y = 720
    return scene


def export(path):
    bpy.ops.export_scene.gltf(
        filepath=path,
        export_format="GLB",
        export_apply=True,
        export_cameras=True,
        export_lights=True,
        export_yup=True,
        export_texcoords=False,  # no textures, so no UVs
        export_normals=True,
        export_materials="EXPORT",
        export_animations=False,
        export_extras=False,
    )


def verify(path):
    """Fails unless the file carries both extensions the renderer depends on."""
    with open(path, "rb") as f:
        data = f.read()
    for needle in (b"KHR_materials_emissive_strength", b"KHR_lights_punctual"):
        if needle not in data:
            raise SystemExit(f"{path}: missing {needle.decode()}")
    print(f"exported {path} ({len(data)} bytes) with Blender {bpy.app.version_string}")


if __name__ == "__main__":
    out = output_path()
    build_scene()
    export(out)
    verify(out)

"""Export the scene as Tessera renders it: a GLB with cameras, punctual lights (Standard
lighting units, which the renderer divides by 683 lm/W as Blender's importer does),
custom properties as extras, node animation, no Draco; the world background as
`scenes[0].extras.tessera_environment` (its image copied beside the GLB)."""

import os
import shutil

import bpy

from . import preflight

#: The entry file's name in the scene listing.
ENTRY = "scene.glb"


def export_scene(context, folder):
    """Export the current scene into `folder`; the scene listing's relative paths (entry
    first) and the environment dict written (or None)."""
    scene = context.scene
    os.makedirs(folder, exist_ok=True)
    env, env_path, _ = preflight.world_environment(scene.world)
    files = [ENTRY]
    had = "tessera_environment" in scene.keys()
    old = scene.get("tessera_environment")
    if env is not None:
        if env_path:
            if not os.path.isfile(env_path):
                raise FileNotFoundError(f"environment image {env_path}: no such file")
            shutil.copyfile(env_path, os.path.join(folder, env["image"]))
            files.append(env["image"])
        scene["tessera_environment"] = env
    try:
        kwargs = dict(
            filepath=os.path.join(folder, ENTRY),
            export_format="GLB",
            export_image_format="AUTO",
            export_apply=True,
            export_cameras=True,
            export_lights=True,
            export_extras=True,
            export_animations=True,
            export_yup=True,
            export_texcoords=True,
            export_normals=True,
            export_tangents=True,
            export_materials="EXPORT",
            export_import_convert_lighting_mode="SPEC",
            export_draco_mesh_compression_enable=False,
            use_selection=False,
            use_visible=False,
            use_renderable=True,
        )
        bpy.ops.export_scene.gltf(**kwargs)
    finally:
        if had:
            scene["tessera_environment"] = old
        elif "tessera_environment" in scene.keys():
            del scene["tessera_environment"]
    return files, env


class GltfHook:
    """The glTF exporter's user extension (found as `glTF2ExportUserExtension` on the
    add-on's module): the add-on's own scene properties (`scene.tessera`: the panel's
    settings, status, job id) are custom properties, which the exporter would write as the
    scene's extras; they must neither travel in a file nor change its hash."""

    def gather_scene_hook(self, gltf2_scene, blender_scene, export_settings):
        extras = getattr(gltf2_scene, "extras", None)
        if isinstance(extras, dict):
            extras.pop("tessera", None)
            if not extras:
                gltf2_scene.extras = None

"""Pre-flight: what Tessera's renderer would drop or change in this scene, by name, before
anything is exported or uploaded.

What the renderer reads (renderer/src/lib.rs, glTF 2.0 as Blender's exporter writes it):
metallic-roughness materials (the exporter's Principled BSDF: base colour, metallic,
roughness, normal map, emission with strength, alpha), image textures (PNG, JPEG),
KHR_texture_transform, point / spot / sun lights (KHR_lights_punctual), emissive meshes
as area lights, perspective and orthographic cameras, node animations, and the world
background through `scenes[0].extras.tessera_environment` (a colour and strength, or an
equirectangular .hdr/.exr image, with a rotation about the vertical axis). No
transmission, clearcoat, sheen, subsurface, volumes, morph targets or Draco.

Each finding is `(severity, where, what)`: severity "error" refuses the submission
(nothing sensible would render), "warning" names a change the artist should know of.
"""

#: Shader nodes the glTF exporter turns into what the renderer reads.
SUPPORTED_NODES = {
    "OUTPUT_MATERIAL",
    "BSDF_PRINCIPLED",
    "TEX_IMAGE",
    "NORMAL_MAP",
    "EMISSION",
    "UVMAP",
    "TEX_COORD",
    "MAPPING",
    "SEPARATE_COLOR",
    "SEPARATE_RGB",
    "COMBINE_COLOR",
    "FRAME",
    "REROUTE",
    "GROUP_INPUT",
    "GROUP_OUTPUT",
}
#: Principled BSDF inputs the renderer ignores when they are used (non-default).
IGNORED_PRINCIPLED = (
    ("Transmission Weight", 0.0, "transmission"),
    ("Coat Weight", 0.0, "clearcoat"),
    ("Sheen Weight", 0.0, "sheen"),
    ("Subsurface Weight", 0.0, "subsurface scattering"),
)
#: World shader nodes that map to `tessera_environment`.
WORLD_NODES = {"OUTPUT_WORLD", "BACKGROUND", "TEX_ENVIRONMENT", "MAPPING", "TEX_COORD", "REROUTE", "FRAME"}
#: Environment image formats the renderer decodes.
ENV_FORMATS = (".hdr", ".exr")
#: Texture formats the renderer decodes (the exporter converts others to PNG with
#: export_image_format AUTO, so these are notes, not errors).
TEXTURE_FORMATS = {"PNG", "JPEG"}


def _linked(socket):
    return bool(getattr(socket, "is_linked", False))


def check_material(mat, where):
    """Findings for one material."""
    out = []
    if not getattr(mat, "use_nodes", False) or mat.node_tree is None:
        out.append(("warning", where, "no shader nodes: exported as its viewport colour only"))
        return out
    nodes = list(mat.node_tree.nodes)
    principled = [n for n in nodes if n.type == "BSDF_PRINCIPLED"]
    for n in nodes:
        if n.type not in SUPPORTED_NODES:
            out.append(("warning", where, f"shader node {n.name!r} ({n.bl_idname}) is not supported: the renderer drops it"))
        if n.type == "TEX_IMAGE" and n.image is not None:
            img = n.image
            if img.source not in ("FILE", "GENERATED", "PACKED") and img.source != "TILED":
                out.append(("warning", where, f"image {img.name!r} ({img.source}) is exported as a still image"))
            if img.source == "TILED":
                out.append(("error", where, f"image {img.name!r} is a UDIM tiled image: not supported"))
            elif img.file_format not in TEXTURE_FORMATS and img.source == "FILE":
                out.append(("warning", where, f"image {img.name!r} is {img.file_format}: exported as PNG (8 bits a channel)"))
    for n in principled:
        for name, default, what in IGNORED_PRINCIPLED:
            sock = n.inputs.get(name)
            if sock is None:
                continue
            if _linked(sock) or abs(float(sock.default_value) - default) > 1e-6:
                out.append(("warning", where, f"{what} ({name}) is not rendered: reflection only"))
    if not principled and not any(n.type == "EMISSION" for n in nodes):
        out.append(("warning", where, "no Principled BSDF or Emission shader: the exporter writes a default material"))
    disp = mat.node_tree.nodes.get("Material Output")
    if disp is not None and _linked(disp.inputs.get("Displacement")):
        out.append(("warning", where, "displacement is not rendered"))
    if disp is not None and disp.inputs.get("Volume") is not None and _linked(disp.inputs["Volume"]):
        out.append(("warning", where, "volume shaders are not rendered"))
    return out


def world_environment(world):
    """(environment dict or None, image path or None, findings) for the world: a Background
    node's colour and strength, or an Environment Texture (.hdr/.exr) through it, with a
    Mapping node's Z rotation. What cannot be mapped is named and left black."""
    findings = []
    if world is None:
        return None, None, findings
    if not world.use_nodes or world.node_tree is None:
        c = world.color
        return {"color": [c[0], c[1], c[2]], "strength": 1.0}, None, findings
    nodes = world.node_tree.nodes
    for n in nodes:
        if n.type not in WORLD_NODES:
            findings.append(("warning", f"world {world.name!r}", f"node {n.name!r} ({n.bl_idname}) is not supported: the background ignores it"))
    out = next((n for n in nodes if n.type == "OUTPUT_WORLD" and n.is_active_output), None)
    out = out or next((n for n in nodes if n.type == "OUTPUT_WORLD"), None)
    if out is None or not out.inputs["Surface"].is_linked:
        return None, None, findings
    bg = out.inputs["Surface"].links[0].from_node
    where = f"world {world.name!r}"
    if bg.type != "BACKGROUND":
        findings.append(("warning", where, f"the world surface is {bg.bl_idname}, not a Background: exported black"))
        return None, None, findings
    strength_in = bg.inputs["Strength"]
    if strength_in.is_linked:
        findings.append(("warning", where, "a linked background strength is not supported: 1 is used"))
        strength = 1.0
    else:
        strength = float(strength_in.default_value)
    color_in = bg.inputs["Color"]
    if not color_in.is_linked:
        c = color_in.default_value
        return {"color": [float(c[0]), float(c[1]), float(c[2])], "strength": strength}, None, findings
    src = color_in.links[0].from_node
    if src.type != "TEX_ENVIRONMENT" or src.image is None:
        findings.append(("warning", where, f"the background colour comes from {src.bl_idname}: only an Environment Texture image is supported; exported black"))
        return None, None, findings
    import os

    path = src.image.filepath_from_user() if hasattr(src.image, "filepath_from_user") else src.image.filepath
    ext = os.path.splitext(path)[1].lower()
    if ext not in ENV_FORMATS:
        findings.append(("error", where, f"environment image {src.image.name!r} is {ext or 'not a file'}: only .hdr and .exr are supported"))
        return None, None, findings
    if src.projection != "EQUIRECTANGULAR":
        findings.append(("warning", where, f"environment projection {src.projection} is rendered as equirectangular"))
    rotation = 0.0
    vec = src.inputs.get("Vector")
    if vec is not None and vec.is_linked:
        m = vec.links[0].from_node
        if m.type == "MAPPING":
            import math

            rot = m.inputs["Rotation"].default_value
            if abs(rot[0]) > 1e-6 or abs(rot[1]) > 1e-6:
                findings.append(("warning", where, "a Mapping rotation about X or Y is not supported: only Z is kept"))
            rotation = math.degrees(rot[2])
        else:
            findings.append(("warning", where, f"the environment vector from {m.bl_idname} is not supported: the default is used"))
    env = {"strength": strength, "image": os.path.basename(path), "rotation": rotation}
    return env, path, findings


def check_scene(scene, camera=None, export_draco=False):
    """Every finding for `scene` rendered from `camera` (an object, or the scene camera)."""
    out = []
    cam = camera or scene.camera
    if cam is None or cam.type != "CAMERA":
        out.append(("error", "scene", "no camera: set the scene camera or pick one in the panel"))
    elif cam.data.type == "PANO":
        out.append(("error", f"camera {cam.name!r}", "panoramic cameras are not supported"))
    elif cam.data.dof.use_dof:
        out.append(("warning", f"camera {cam.name!r}", "depth of field is not rendered"))
    remembered = scene.get("glTF2ExportSettings")
    if export_draco or (remembered is not None and remembered.get("export_draco_mesh_compression_enable")):
        out.append(("warning", "export", "Draco mesh compression is not decoded by the renderer: Tessera exports without it"))
    seen = set()
    for obj in scene.objects:
        if obj.hide_render:
            continue
        where = f"object {obj.name!r}"
        if obj.type == "LIGHT":
            light = obj.data
            if light.type == "AREA":
                out.append(("warning", where, "area lights are not exported by glTF: use an emissive mesh instead (it is dropped)"))
            elif light.type == "SPOT" and light.spot_blend > 0:
                out.append(("warning", where, "the spot blend follows glTF's falloff, not Cycles' smoothstep"))
            if getattr(light, "use_shadow", True) is False:
                out.append(("warning", where, "a light without shadows casts them in Tessera"))
            continue
        if obj.type in ("CURVE", "SURFACE", "FONT", "META"):
            out.append(("warning", where, f"{obj.type.lower()} objects are exported as meshes"))
        elif obj.type in ("VOLUME", "POINTCLOUD", "GPENCIL", "GREASEPENCIL"):
            out.append(("warning", where, f"{obj.type.lower()} objects are not exported"))
            continue
        if obj.type == "MESH":
            me = obj.data
            if me.shape_keys is not None and len(me.shape_keys.key_blocks) > 1:
                out.append(("warning", where, "shape keys (morph targets) are not rendered: the base shape is"))
            if any(m.type == "ARMATURE" for m in obj.modifiers):
                out.append(("warning", where, "skinned (armature) animation is not rendered"))
            for slot in obj.material_slots:
                mat = slot.material
                if mat is not None and mat.name not in seen:
                    seen.add(mat.name)
                    out.extend(check_material(mat, f"material {mat.name!r}"))
            for ps in getattr(obj, "particle_systems", []):
                out.append(("warning", where, f"particle system {ps.name!r} is not exported"))
    _, _, env_findings = world_environment(scene.world)
    out.extend(env_findings)
    return out


def refused(findings):
    """Whether any finding refuses the submission."""
    return any(sev == "error" for sev, _, _ in findings)

"""Tessera Farm: send the open scene to a Tessera render farm from Blender's Render
properties: pre-flight checks, glTF export, upload of what the coordinator lacks, the price
before the final Submit, progress, frames fetched back as EXR images, and the job's page in
the dashboard.

Network work runs on a background thread (`jobs.Worker`); a `bpy.app.timers` poll moves
its results into the scene's properties, so the UI never waits on the network. Nothing
touches the network while Blender's "Allow Online Access" is off.
"""

import os
import tempfile

import bpy
from bpy.props import (
    BoolProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from . import client, export, preflight, worker

#: The glTF exporter looks for this name on enabled add-ons' modules.
glTF2ExportUserExtension = export.GltfHook

TIER_ITEMS = [
    ("economy", "Economy", "1x price, 50% held back until the challenge window closes"),
    ("priority", "Priority", "2x price, 25% held back"),
    ("trusted", "Trusted", "4x price, only nodes with high trust, 10% held back"),
]


def prefs(context):
    """The add-on's preferences (None when the add-on is not enabled through Blender)."""
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon else None


class TesseraPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    coordinator_url: StringProperty(
        name="Coordinator URL",
        description="The coordinator's HTTP API, e.g. https://farm.example.com:8080",
        default="http://127.0.0.1:8080",
    )
    token: StringProperty(
        name="Client token",
        description="Your client API token (stored in Blender's preferences; never printed)",
        subtype="PASSWORD",
    )
    frames_dir: StringProperty(
        name="Frames folder",
        description="Where fetched frames are written as EXR (empty: a folder beside the .blend, or the temporary folder)",
        subtype="DIR_PATH",
    )

    def draw(self, context):
        col = self.layout.column()
        col.prop(self, "coordinator_url")
        col.prop(self, "token")
        col.prop(self, "frames_dir")
        if not bpy.app.online_access:
            col.label(text="Online access is off (Preferences > System > Network)", icon="ERROR")


def camera_poll(_self, obj):
    return obj.type == "CAMERA"


class TesseraSettings(bpy.types.PropertyGroup):
    tier: EnumProperty(name="Tier", items=TIER_ITEMS, default="economy")
    use_scene_range: BoolProperty(name="Scene frame range", default=True)
    frame_start: IntProperty(name="Start", default=1, min=0)
    frame_end: IntProperty(name="End", default=1, min=0)
    camera: PointerProperty(name="Camera", type=bpy.types.Object, poll=camera_poll)
    seed: IntProperty(name="Seed", default=1, min=0)
    # What the background work reports (set by the timer only).
    findings: StringProperty(name="Findings", default="")
    checked: BoolProperty(default=False)
    estimate_micro: IntProperty(default=-1)
    estimate_text: StringProperty(default="")
    status: StringProperty(default="")
    error: StringProperty(default="")
    job_id: StringProperty(name="Job", default="")
    job_state: StringProperty(default="")
    progress: FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    busy: BoolProperty(default=False)


def frames_of(scene):
    s = scene.tessera
    if s.use_scene_range:
        return scene.frame_start, scene.frame_end
    return s.frame_start, s.frame_end


def render_settings(scene):
    """The job's render settings from the scene's own: resolution (with its percentage),
    Cycles samples and bounces, the chosen or scene camera, the frame rate."""
    r = scene.render
    scale = r.resolution_percentage / 100.0
    cycles = getattr(scene, "cycles", None)
    spp = int(cycles.samples) if cycles is not None else 64
    bounces = int(cycles.max_bounces) if cycles is not None else 12
    cam = scene.tessera.camera or scene.camera
    num, den = client.frame_rate(r.fps, r.fps_base)
    return {
        "width": max(1, int(r.resolution_x * scale)),
        "height": max(1, int(r.resolution_y * scale)),
        "spp": spp,
        "max_bounces": bounces,
        "seed": scene.tessera.seed,
        "camera": cam.data.name if cam is not None else None,
        "fps_num": num,
        "fps_den": den,
    }


def estimate_is_current(scene):
    """Whether the estimated job is still what the panel asks for (settings, frames, tier):
    Submit sends exactly the estimated body, so a changed setting needs a new estimate."""
    body = worker.prepared(scene.name)
    if body is None:
        return False
    try:
        now = client.submission(body["scene"]["entry"], body["scene"]["files"], render_settings(scene), *frames_of(scene), scene.tessera.tier)
    except client.TesseraError:
        return False
    return now == body


def online_refusal():
    """The message that refuses network use while online access is off, else None."""
    if not bpy.app.online_access:
        return "Online access is off: Tessera needs the network (Preferences > System > Network > Allow Online Access)"
    return None


def connect(context):
    p = prefs(context)
    if p is None:
        raise client.TesseraError("preferences", 0, "the add-on is not enabled")
    return client.Client(p.coordinator_url, p.token)


def cache_path():
    try:
        base = bpy.utils.extension_path_user(__package__, create=True)
    except (ValueError, AttributeError):
        base = os.path.join(tempfile.gettempdir(), "tessera_farm")
    return os.path.join(base, "uploads.json")


def run_preflight(context):
    scene = context.scene
    findings = preflight.check_scene(scene, scene.tessera.camera)
    s = scene.tessera
    s.findings = "\n".join(f"{sev}|{where}|{what}" for sev, where, what in findings)
    s.checked = True
    return findings


class TESSERA_OT_preflight(bpy.types.Operator):
    """Name what Tessera would drop or change in this scene"""

    bl_idname = "tessera.preflight"
    bl_label = "Pre-flight Check"

    def execute(self, context):
        findings = run_preflight(context)
        if preflight.refused(findings):
            self.report({"ERROR"}, "Pre-flight: the scene cannot be submitted (see the panel)")
        else:
            self.report({"INFO"}, f"Pre-flight: {len(findings)} notes, nothing refused")
        return {"FINISHED"}


class TESSERA_OT_estimate(bpy.types.Operator):
    """Check the scene, export it, upload what the coordinator lacks, and ask the price"""

    bl_idname = "tessera.estimate"
    bl_label = "Check and Estimate"

    @classmethod
    def poll(cls, context):
        return not context.scene.tessera.busy

    def execute(self, context):
        refusal = online_refusal()
        if refusal:
            self.report({"ERROR"}, refusal)
            return {"CANCELLED"}
        scene = context.scene
        s = scene.tessera
        s.error = ""
        s.estimate_micro = -1
        s.estimate_text = ""
        findings = run_preflight(context)
        if preflight.refused(findings):
            self.report({"ERROR"}, "Pre-flight refused the scene: nothing was uploaded (see the panel)")
            return {"CANCELLED"}
        try:
            api = connect(context)
            settings = render_settings(scene)
            first, last = frames_of(scene)
            folder = tempfile.mkdtemp(prefix="tessera-")
            files, _env = export.export_scene(context, folder)
        except (client.TesseraError, OSError, RuntimeError) as e:
            s.error = str(e)
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        worker.start_estimate(scene.name, api, client.HashCache(cache_path()), folder, files, settings, first, last, s.tier)
        s.busy = True
        s.status = "Uploading the scene…"
        return {"FINISHED"}


class TESSERA_OT_submit(bpy.types.Operator):
    """Submit the estimated job (its escrow is the price shown)"""

    bl_idname = "tessera.submit"
    bl_label = "Submit"

    @classmethod
    def poll(cls, context):
        s = context.scene.tessera
        return not s.busy and estimate_is_current(context.scene)

    def execute(self, context):
        refusal = online_refusal()
        if refusal:
            self.report({"ERROR"}, refusal)
            return {"CANCELLED"}
        s = context.scene.tessera
        try:
            api = connect(context)
        except client.TesseraError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        worker.start_submit(context.scene.name, api)
        s.busy = True
        s.status = "Submitting…"
        return {"FINISHED"}


class TESSERA_OT_fetch_frames(bpy.types.Operator):
    """Download the job's finished frames into image datablocks (saved as EXR)"""

    bl_idname = "tessera.fetch_frames"
    bl_label = "Fetch Frames"

    @classmethod
    def poll(cls, context):
        s = context.scene.tessera
        return not s.busy and bool(s.job_id) and s.job_state == "done"

    def execute(self, context):
        refusal = online_refusal()
        if refusal:
            self.report({"ERROR"}, refusal)
            return {"CANCELLED"}
        s = context.scene.tessera
        try:
            api = connect(context)
        except client.TesseraError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        worker.start_fetch(context.scene.name, api, s.job_id)
        s.busy = True
        s.status = "Fetching frames…"
        return {"FINISHED"}


class TESSERA_OT_refresh(bpy.types.Operator):
    """Follow the job's progress again (after Blender was restarted, say)"""

    bl_idname = "tessera.refresh"
    bl_label = "Refresh"

    @classmethod
    def poll(cls, context):
        return bool(context.scene.tessera.job_id)

    def execute(self, context):
        refusal = online_refusal()
        if refusal:
            self.report({"ERROR"}, refusal)
            return {"CANCELLED"}
        try:
            api = connect(context)
        except client.TesseraError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        context.scene.tessera.error = ""
        worker.start_follow(context.scene.name, api, context.scene.tessera.job_id)
        return {"FINISHED"}


class TESSERA_OT_open_dashboard(bpy.types.Operator):
    """Open the job's page in the coordinator's dashboard"""

    bl_idname = "tessera.open_dashboard"
    bl_label = "Open in Dashboard"

    @classmethod
    def poll(cls, context):
        return bool(context.scene.tessera.job_id)

    def execute(self, context):
        refusal = online_refusal()
        if refusal:
            self.report({"ERROR"}, refusal)
            return {"CANCELLED"}
        try:
            api = connect(context)
        except client.TesseraError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        bpy.ops.wm.url_open(url=api.dashboard_url(context.scene.tessera.job_id))
        return {"FINISHED"}


class TESSERA_PT_panel(bpy.types.Panel):
    bl_label = "Tessera Farm"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "render"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        scene = context.scene
        s = scene.tessera
        if not bpy.app.online_access:
            layout.label(text="Online access is off: enable it in Preferences > System", icon="ERROR")
        p = prefs(context)
        if p is not None and not p.token:
            layout.label(text="Set the coordinator and token in the add-on's preferences", icon="INFO")
        layout.prop(s, "tier")
        layout.prop(s, "use_scene_range")
        row = layout.row(align=True)
        if s.use_scene_range:
            row.label(text=f"Frames {scene.frame_start}-{scene.frame_end}")
        else:
            row.prop(s, "frame_start")
            row.prop(s, "frame_end")
        layout.prop(s, "camera")
        try:
            st = render_settings(scene)
            layout.label(text=f"{st['width']}x{st['height']}, {st['spp']} samples, {st['max_bounces']} bounces (from Cycles)")
        except client.TesseraError as e:
            layout.label(text=str(e), icon="ERROR")
        layout.prop(s, "seed")
        layout.operator("tessera.preflight", icon="CHECKMARK")
        if s.checked:
            box = layout.box()
            lines = [ln for ln in s.findings.split("\n") if ln]
            if not lines:
                box.label(text="Nothing is dropped or changed", icon="CHECKMARK")
            for line in lines:
                sev, where, what = line.split("|", 2)
                box.label(text=f"{where}: {what}", icon="ERROR" if sev == "error" else "INFO")
        layout.operator("tessera.estimate", icon="FUND")
        if s.estimate_text:
            layout.label(text=s.estimate_text)
        if worker.prepared(scene.name) is not None and not estimate_is_current(scene):
            layout.label(text="Settings changed since the estimate: estimate again", icon="ERROR")
        layout.operator("tessera.submit", icon="RENDER_ANIMATION")
        if s.status:
            layout.label(text=s.status)
        if s.error:
            layout.label(text=s.error, icon="ERROR")
        if s.job_id:
            layout.label(text=f"Job {s.job_id[:12]}: {s.job_state}")
            layout.prop(s, "progress", text="Verified")
            row = layout.row()
            row.operator("tessera.refresh", icon="FILE_REFRESH")
            row.operator("tessera.fetch_frames", icon="IMAGE_DATA")
            row.operator("tessera.open_dashboard", icon="URL")


CLASSES = (
    TesseraPreferences,
    TesseraSettings,
    TESSERA_OT_preflight,
    TESSERA_OT_estimate,
    TESSERA_OT_submit,
    TESSERA_OT_fetch_frames,
    TESSERA_OT_refresh,
    TESSERA_OT_open_dashboard,
    TESSERA_PT_panel,
)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.tessera = PointerProperty(type=TesseraSettings)
    worker.start_all()
    if not bpy.app.timers.is_registered(worker.poll):
        bpy.app.timers.register(worker.poll, first_interval=0.5, persistent=True)


def unregister():
    if bpy.app.timers.is_registered(worker.poll):
        bpy.app.timers.unregister(worker.poll)
    worker.stop_all()
    del bpy.types.Scene.tessera
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)

//! glTF metallic-roughness materials as the shader reads them, with their texture
//! references (image rectangle, sampler, texture coordinate set, KHR_texture_transform).

use bytemuck::{Pod, Zeroable};
use gltf::json::material::AlphaMode;
use gltf::json::texture::{MagFilter, MinFilter, WrappingMode};
use gltf::json::validation::Checked;
use gltf::json::Root;
use serde_json::Value;

use super::texture::TextureSet;

pub(crate) const WRAP_REPEAT: u32 = 0;
pub(crate) const WRAP_CLAMP: u32 = 1;
pub(crate) const WRAP_MIRROR: u32 = 2;

pub(crate) const ALPHA_OPAQUE: u32 = 0;
pub(crate) const ALPHA_MASK: u32 = 1;
pub(crate) const ALPHA_BLEND: u32 = 2;

/// A texture reference (the shader's `TexRef`, 64 bytes).
///
/// `rect` = image x, y, width, height in its page; `info` = (page, wrap_s | wrap_t << 8 |
/// nearest << 16 | tex_coord << 24, present, mip levels (1: the image alone; the levels
/// lie where [`mip_rect`](super::texture::mip_rect) puts them)); `m0`/`m1` = the rows of the 2×3 UV
/// transform (KHR_texture_transform, identity without it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable, PartialEq)]
pub(crate) struct GpuTexRef {
    pub rect: [u32; 4],
    pub info: [u32; 4],
    pub m0: [f32; 4],
    pub m1: [f32; 4],
}

/// A material (the shader's `Material`, 320 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct GpuMaterial {
    /// baseColorFactor (linear RGBA).
    pub base_color: [f32; 4],
    /// rgb = emissiveFactor × emissive strength; w = 1 when double-sided.
    pub emission: [f32; 4],
    /// metallic, roughness, normal scale, alpha cutoff.
    pub params: [f32; 4],
    /// alpha mode, 0, 0, 0.
    pub mode: [u32; 4],
    pub base_tex: GpuTexRef,
    pub mr_tex: GpuTexRef,
    pub normal_tex: GpuTexRef,
    pub emissive_tex: GpuTexRef,
}

impl GpuMaterial {
    /// The glTF default material: white, metallic 1, roughness 1 (glTF 2.0, "Materials":
    /// a primitive without a material uses these factor defaults).
    pub fn gltf_default() -> GpuMaterial {
        GpuMaterial {
            base_color: [1.0; 4],
            emission: [0.0; 4],
            params: [1.0, 1.0, 1.0, 0.5],
            mode: [ALPHA_OPAQUE, 0, 0, 0],
            base_tex: GpuTexRef::default(),
            mr_tex: GpuTexRef::default(),
            normal_tex: GpuTexRef::default(),
            emissive_tex: GpuTexRef::default(),
        }
    }

    /// The alpha flag of the triangles that use this material: 0 when the surface is
    /// certainly opaque (so traversal never evaluates its alpha).
    pub fn triangle_alpha_flag(&self) -> u32 {
        let textured = self.base_tex.info[2] != 0;
        match self.mode[0] {
            ALPHA_MASK if textured || self.base_color[3] < self.params[3] => ALPHA_MASK,
            ALPHA_BLEND if textured || self.base_color[3] < 1.0 => ALPHA_BLEND,
            _ => ALPHA_OPAQUE,
        }
    }
}

/// A textureInfo as the loader resolves it.
pub(crate) struct TexInfoJson<'a> {
    /// glTF path of the textureInfo, e.g. `materials[0].normalTexture`.
    pub field: String,
    pub index: usize,
    pub tex_coord: u32,
    /// The textureInfo object in the raw JSON (for KHR_texture_transform).
    pub raw: Option<&'a Value>,
}

/// Why a material field is invalid: (glTF field path, reason).
pub(crate) type FieldError = (String, String);

fn wrap(mode: Checked<WrappingMode>) -> u32 {
    match mode {
        Checked::Valid(WrappingMode::ClampToEdge) => WRAP_CLAMP,
        Checked::Valid(WrappingMode::MirroredRepeat) => WRAP_MIRROR,
        _ => WRAP_REPEAT,
    }
}

fn num(v: &Value, field: &str) -> Result<f64, FieldError> {
    v.as_f64()
        .filter(|x| x.is_finite())
        .ok_or_else(|| (field.to_string(), format!("{v} is not a finite number")))
}

fn vec2(v: &Value, field: &str) -> Result<[f64; 2], FieldError> {
    match v.as_array().map(|a| a.as_slice()) {
        Some([x, y]) => Ok([num(x, field)?, num(y, field)?]),
        _ => Err((
            field.to_string(),
            format!("{v} is not an array of 2 numbers"),
        )),
    }
}

/// Whether a sampler's minFilter lets the renderer use mipmaps: unset or a `*_MIPMAP_*`
/// mode does; NEAREST or LINEAR asks for none.
fn min_filter_allows_mipmaps(min_filter: Option<Checked<MinFilter>>) -> bool {
    !matches!(
        min_filter,
        Some(Checked::Valid(MinFilter::Nearest | MinFilter::Linear))
    )
}

/// Whether the lookup of texture `index` from slot `slot` (see [`texture_infos`]) reads
/// mip levels: shading points read base colour, metallic-roughness and normal textures
/// through their mip chains when the sampler allows it; emissive textures (slot 3) read
/// the image alone.
pub(crate) fn texture_reads_mips(root: &Root, slot: usize, index: usize) -> bool {
    slot < 3
        && root.textures.get(index).is_some_and(|t| {
            t.sampler
                .is_none_or(|s| min_filter_allows_mipmaps(root.samplers[s.value()].min_filter))
        })
}

/// Resolve one textureInfo to a [`GpuTexRef`]; texture index range is checked by the
/// glTF validator before this runs.
pub(crate) fn tex_ref(
    root: &Root,
    textures: &TextureSet,
    info: &TexInfoJson<'_>,
) -> Result<GpuTexRef, FieldError> {
    let field = &info.field;
    let texture = root.textures.get(info.index).ok_or_else(|| {
        (
            format!("{field}.index"),
            format!("texture {} does not exist", info.index),
        )
    })?;
    let image = texture.source.value();
    let placement = match textures.images.get(image) {
        Some(Some(_)) => textures.placements[image],
        _ => {
            return Err((
                format!("textures[{}].source", info.index),
                format!("images[{image}] was not decoded"),
            ))
        }
    };
    let (wrap_s, wrap_t, nearest, mipmaps) = match texture.sampler {
        Some(s) => {
            let sampler = &root.samplers[s.value()];
            let nearest = matches!(sampler.mag_filter, Some(Checked::Valid(MagFilter::Nearest)));
            let mipmaps = min_filter_allows_mipmaps(sampler.min_filter);
            (wrap(sampler.wrap_s), wrap(sampler.wrap_t), nearest, mipmaps)
        }
        None => (WRAP_REPEAT, WRAP_REPEAT, false, true),
    };
    // The levels the image carries (the scene built a chain where a shading lookup's
    // sampler allows one: `texture_reads_mips`).
    let levels = match textures.images.get(image) {
        Some(Some(img)) if mipmaps => img.mips.len() as u32 + 1,
        _ => 1,
    };
    let mut tex_coord = info.tex_coord;
    // KHR_texture_transform: uv' = T · R · S · uv (the extension's matrix order), with
    // R = [[cos r, sin r], [-sin r, cos r]].
    let (mut offset, mut rotation, mut scale) = ([0.0f64; 2], 0.0f64, [1.0f64; 2]);
    if let Some(ext) = info
        .raw
        .and_then(|r| r.get("extensions"))
        .and_then(|e| e.get("KHR_texture_transform"))
    {
        let ext_field = format!("{field}.extensions.KHR_texture_transform");
        if !ext.is_object() {
            return Err((ext_field, "is not an object".into()));
        }
        if let Some(v) = ext.get("offset") {
            offset = vec2(v, &format!("{ext_field}.offset"))?;
        }
        if let Some(v) = ext.get("rotation") {
            rotation = num(v, &format!("{ext_field}.rotation"))?;
        }
        if let Some(v) = ext.get("scale") {
            scale = vec2(v, &format!("{ext_field}.scale"))?;
        }
        if let Some(v) = ext.get("texCoord") {
            tex_coord = v
                .as_u64()
                .and_then(|t| u32::try_from(t).ok())
                .ok_or_else(|| {
                    (
                        format!("{ext_field}.texCoord"),
                        format!("{v} is not a non-negative integer"),
                    )
                })?;
        }
    }
    if tex_coord > 1 {
        return Err((
            format!("{field}.texCoord"),
            format!("TEXCOORD_{tex_coord} is not supported (only TEXCOORD_0 and TEXCOORD_1)"),
        ));
    }
    let (s, c) = rotation.sin_cos();
    let m = [
        c * scale[0],
        s * scale[1],
        offset[0],
        -s * scale[0],
        c * scale[1],
        offset[1],
    ];
    if m.iter().any(|v| !v.is_finite() || v.abs() > 1e30) {
        return Err((
            format!("{field}.extensions.KHR_texture_transform"),
            "the transform overflows".into(),
        ));
    }
    Ok(GpuTexRef {
        rect: [placement.x, placement.y, placement.width, placement.height],
        info: [
            placement.layer,
            wrap_s | (wrap_t << 8) | (u32::from(nearest) << 16) | (tex_coord << 24),
            1,
            levels,
        ],
        m0: [m[0] as f32, m[1] as f32, m[2] as f32, 0.0],
        m1: [m[3] as f32, m[4] as f32, m[5] as f32, 0.0],
    })
}

/// The textureInfos of material `i`: (slot, info). Slots: 0 base colour, 1 metallic-
/// roughness, 2 normal, 3 emissive. Occlusion is not listed: a path tracer computes
/// occlusion itself.
pub(crate) fn texture_infos<'a>(
    root: &Root,
    raw: &'a Value,
    i: usize,
) -> Vec<(usize, TexInfoJson<'a>)> {
    let mat = &root.materials[i];
    let raw_mat = raw.get("materials").and_then(|m| m.get(i));
    let pbr_raw = raw_mat.and_then(|m| m.get("pbrMetallicRoughness"));
    let base = format!("materials[{i}]");
    let mut out = Vec::new();
    let pbr = &mat.pbr_metallic_roughness;
    if let Some(t) = &pbr.base_color_texture {
        out.push((
            0,
            TexInfoJson {
                field: format!("{base}.pbrMetallicRoughness.baseColorTexture"),
                index: t.index.value(),
                tex_coord: t.tex_coord,
                raw: pbr_raw.and_then(|p| p.get("baseColorTexture")),
            },
        ));
    }
    if let Some(t) = &pbr.metallic_roughness_texture {
        out.push((
            1,
            TexInfoJson {
                field: format!("{base}.pbrMetallicRoughness.metallicRoughnessTexture"),
                index: t.index.value(),
                tex_coord: t.tex_coord,
                raw: pbr_raw.and_then(|p| p.get("metallicRoughnessTexture")),
            },
        ));
    }
    if let Some(t) = &mat.normal_texture {
        out.push((
            2,
            TexInfoJson {
                field: format!("{base}.normalTexture"),
                index: t.index.value(),
                tex_coord: t.tex_coord,
                raw: raw_mat.and_then(|p| p.get("normalTexture")),
            },
        ));
    }
    if let Some(t) = &mat.emissive_texture {
        out.push((
            3,
            TexInfoJson {
                field: format!("{base}.emissiveTexture"),
                index: t.index.value(),
                tex_coord: t.tex_coord,
                raw: raw_mat.and_then(|p| p.get("emissiveTexture")),
            },
        ));
    }
    out
}

/// Build the GPU material `i` (factors validated, textures resolved).
pub(crate) fn build(
    root: &Root,
    raw: &Value,
    textures: &TextureSet,
    i: usize,
) -> Result<GpuMaterial, FieldError> {
    let mat = &root.materials[i];
    let field = format!("materials[{i}]");
    let pbr = &mat.pbr_metallic_roughness;
    let base = pbr.base_color_factor.0;
    if base.iter().any(|v| !v.is_finite()) {
        return Err((
            format!("{field}.pbrMetallicRoughness.baseColorFactor"),
            format!("{base:?} is not finite"),
        ));
    }
    let emissive = mat.emissive_factor.0;
    if emissive.iter().any(|&v| !v.is_finite() || v < 0.0) {
        return Err((
            format!("{field}.emissiveFactor"),
            format!("{emissive:?} is not a non-negative colour"),
        ));
    }
    let strength = mat
        .extensions
        .as_ref()
        .and_then(|e| e.emissive_strength.as_ref())
        .map_or(1.0, |s| s.emissive_strength.0);
    if !(strength.is_finite() && strength >= 0.0) {
        return Err((
            format!("{field}.extensions.KHR_materials_emissive_strength.emissiveStrength"),
            format!("{strength} is not a non-negative number"),
        ));
    }
    let emission = emissive.map(|e| e * strength);
    if emission.iter().any(|v| !v.is_finite()) {
        return Err((
            format!("{field}.emissiveFactor"),
            "emission overflows f32".into(),
        ));
    }
    let metallic = pbr.metallic_factor.0;
    let roughness = pbr.roughness_factor.0;
    for (name, v) in [("metallicFactor", metallic), ("roughnessFactor", roughness)] {
        if !(0.0..=1.0).contains(&v) {
            return Err((
                format!("{field}.pbrMetallicRoughness.{name}"),
                format!("{v} is not in [0, 1]"),
            ));
        }
    }
    let normal_scale = mat.normal_texture.as_ref().map_or(1.0, |n| n.scale);
    if !normal_scale.is_finite() {
        return Err((
            format!("{field}.normalTexture.scale"),
            format!("{normal_scale} is not finite"),
        ));
    }
    let cutoff = mat.alpha_cutoff.map_or(0.5, |c| c.0);
    if !(cutoff.is_finite() && cutoff >= 0.0) {
        return Err((
            format!("{field}.alphaCutoff"),
            format!("{cutoff} is not a non-negative number"),
        ));
    }
    let mode = match mat.alpha_mode {
        Checked::Valid(AlphaMode::Mask) => ALPHA_MASK,
        Checked::Valid(AlphaMode::Blend) => ALPHA_BLEND,
        _ => ALPHA_OPAQUE,
    };
    let mut out = GpuMaterial {
        base_color: [
            base[0].clamp(0.0, 1.0),
            base[1].clamp(0.0, 1.0),
            base[2].clamp(0.0, 1.0),
            base[3].clamp(0.0, 1.0),
        ],
        emission: [
            emission[0],
            emission[1],
            emission[2],
            f32::from(u8::from(mat.double_sided)),
        ],
        params: [metallic, roughness, normal_scale, cutoff],
        mode: [mode, 0, 0, 0],
        base_tex: GpuTexRef::default(),
        mr_tex: GpuTexRef::default(),
        normal_tex: GpuTexRef::default(),
        emissive_tex: GpuTexRef::default(),
    };
    for (slot, info) in texture_infos(root, raw, i) {
        let t = tex_ref(root, textures, &info)?;
        match slot {
            0 => out.base_tex = t,
            1 => out.mr_tex = t,
            2 => out.normal_tex = t,
            _ => out.emissive_tex = t,
        }
    }
    Ok(out)
}

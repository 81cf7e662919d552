//! Textured PBR objects: every texture slot, the three wrap modes, nearest vs linear
//! filtering, a second UV set, `KHR_texture_transform`, an alpha-masked fence and a
//! blended glass pane.

use super::kit::{camera, light, object, LUMENS_PER_WATT};
use super::shapes::{floor, quad, uv_sphere};
use super::textures::{
    brick_base_color, brick_metal_rough, brick_normal, checker, emissive_grid, fence, glyph,
    tiny_palette, Canvas,
};
use crate::builder::{
    AlphaMode, Environment, Filter, Light, Material, MeshData, Sampler, SceneBuilder, TextureId,
    TextureRef, TextureTransform, Wrap,
};
use crate::encode::PngEffort;
use crate::SceneError;

/// Background (environment) colour; it shows through the fence's holes.
pub const ENVIRONMENT: [f32; 3] = [0.25, 0.35, 0.55];
/// Centre of the alpha-masked fence (1 m × 1 m, facing +Z).
pub const FENCE_CENTER: [f64; 3] = [-2.5, 1.0, -5.0];
/// Where camera `cutout` stands: 2 m in front of the fence, looking at its centre.
pub const CUTOUT_EYE: [f64; 3] = [-2.5, 1.0, -3.0];
/// Vertical field of view of `cutout` (the Cornell camera's, 39.3°).
pub const CUTOUT_YFOV: f32 = 0.686_047_85;
/// `KHR_texture_transform` rotation of the `transform` quad: 90° (written as a literal).
const QUARTER_TURN: f32 = std::f32::consts::FRAC_PI_2;

fn texture(
    b: &mut SceneBuilder,
    name: &str,
    canvas: &Canvas,
    sampler: &Sampler,
) -> Result<TextureId, SceneError> {
    let image = b.add_image_png(name, &canvas.png(PngEffort::Small))?;
    let sampler = b.add_sampler(sampler)?;
    b.add_texture(name, image, Some(sampler))
}

/// A standing quad of `width × height` centred at `center`, facing +Z, UVs from
/// `uv_min` (top left) to `uv_max` (bottom right).
fn panel(
    center: [f64; 3],
    width: f64,
    height: f64,
    uv_min: [f32; 2],
    uv_max: [f32; 2],
) -> MeshData {
    quad(
        center,
        [width / 2.0, 0.0, 0.0],
        [0.0, height / 2.0, 0.0],
        uv_min,
        uv_max,
    )
}

/// The textured scene: see `scenes/README.md` for the layout. Cameras `camera` (the
/// whole scene) and `cutout` (the fence against the sky).
pub fn textured() -> Result<SceneBuilder, SceneError> {
    let mut b = SceneBuilder::new();
    let mut roots = vec![camera(
        &mut b,
        "camera",
        0.8,
        [0.0, 2.4, 6.5],
        [0.0, 0.8, 0.0],
    )?];
    roots.push(camera(
        &mut b,
        "cutout",
        CUTOUT_YFOV,
        CUTOUT_EYE,
        FENCE_CENTER,
    )?);
    let linear_repeat = Sampler::new("linear_repeat", Filter::Linear, Wrap::Repeat);

    // Floor: grey checker, 10 × 10 repeats, nearest filtering.
    let floor_tex = texture(
        &mut b,
        "floor_checker",
        &checker(64, 2, [150, 150, 150], [90, 90, 96]),
        &Sampler::new("nearest_repeat", Filter::Nearest, Wrap::Repeat),
    )?;
    let floor_mat = b.add_material(
        &Material::diffuse("floor", [1.0, 1.0, 1.0])
            .with_metallic_roughness(0.0, 0.9)
            .with_base_color_texture(TextureRef::new(floor_tex)),
    )?;
    roots.push(object(
        &mut b,
        "floor",
        &floor(5.0, 5.0, 0.0, 10.0),
        floor_mat,
        [0.0; 3],
    )?);

    // Brick spheres: base colour + metallic-roughness + normal map; one with TANGENT,
    // one without (the renderer derives tangents from the UVs).
    let brick_color = texture(
        &mut b,
        "brick_base_color",
        &brick_base_color(256),
        &linear_repeat,
    )?;
    let brick_mr = texture(
        &mut b,
        "brick_metal_rough",
        &brick_metal_rough(256),
        &linear_repeat,
    )?;
    let brick_n = texture(&mut b, "brick_normal", &brick_normal(256), &linear_repeat)?;
    let bricks = b.add_material(
        &Material::diffuse("bricks", [1.0, 1.0, 1.0])
            .with_metallic_roughness(1.0, 1.0)
            .with_base_color_texture(TextureRef::new(brick_color))
            .with_metallic_roughness_texture(TextureRef::new(brick_mr))
            .with_normal_texture(TextureRef::new(brick_n), 1.0),
    )?;
    let sphere = uv_sphere(0.6, 48, 24);
    roots.push(object(
        &mut b,
        "bricks_tangents",
        &sphere,
        bricks,
        [-3.0, 0.6, -0.2],
    )?);
    let mut no_tangents = sphere.clone();
    no_tangents.tangents = None;
    roots.push(object(
        &mut b,
        "bricks_no_tangents",
        &no_tangents,
        bricks,
        [-1.6, 0.6, -0.2],
    )?);

    // Emissive sign: dark base, emissive texture × strength 4.
    let glow = texture(
        &mut b,
        "emissive_grid",
        &emissive_grid(96, 64),
        &linear_repeat,
    )?;
    let sign = b.add_material(
        &Material::diffuse("sign", [0.05, 0.05, 0.05])
            .with_emission([1.0, 1.0, 1.0], 4.0)
            .with_emissive_texture(TextureRef::new(glow)),
    )?;
    roots.push(object(
        &mut b,
        "emissive_sign",
        &panel([0.0; 3], 1.5, 1.0, [0.0, 0.0], [1.0, 1.0]),
        sign,
        [-0.2, 1.7, -2.0],
    )?);

    // Wrap modes: the glyph texture over UVs −1…2 (3 × 3 tiles) with each wrap mode.
    let glyph_canvas = glyph(64);
    for (i, (name, wrap)) in [
        ("wrap_repeat", Wrap::Repeat),
        ("wrap_mirrored_repeat", Wrap::MirroredRepeat),
        ("wrap_clamp_to_edge", Wrap::ClampToEdge),
    ]
    .into_iter()
    .enumerate()
    {
        let tex = texture(
            &mut b,
            name,
            &glyph_canvas,
            &Sampler::new(name, Filter::Linear, wrap),
        )?;
        let mat = b.add_material(
            &Material::diffuse(name, [1.0, 1.0, 1.0]).with_base_color_texture(TextureRef::new(tex)),
        )?;
        let x = 0.6 + 1.1 * i as f64;
        roots.push(object(
            &mut b,
            name,
            &panel([0.0; 3], 1.0, 1.0, [-1.0, -1.0], [2.0, 2.0]),
            mat,
            [x, 0.55, -1.5],
        )?);
    }

    // KHR_texture_transform: offset (0.5, 0), rotation 90°, scale (2, 2) on the glyph.
    let glyph_tex = texture(&mut b, "glyph", &glyph_canvas, &linear_repeat)?;
    let transformed = b.add_material(
        &Material::diffuse("texture_transform", [1.0, 1.0, 1.0]).with_base_color_texture(
            TextureRef::new(glyph_tex).with_transform(TextureTransform {
                offset: [0.5, 0.0],
                rotation: QUARTER_TURN,
                scale: [2.0, 2.0],
                tex_coord: None,
            }),
        ),
    )?;
    roots.push(object(
        &mut b,
        "texture_transform",
        &panel([0.0; 3], 1.0, 1.0, [0.0, 0.0], [1.0, 1.0]),
        transformed,
        [3.9, 0.55, -1.5],
    )?);

    // Nearest vs linear magnification of an 8 × 8 texture.
    let palette = tiny_palette();
    for (i, (name, filter)) in [
        ("filter_nearest", Filter::Nearest),
        ("filter_linear", Filter::Linear),
    ]
    .into_iter()
    .enumerate()
    {
        let tex = texture(
            &mut b,
            name,
            &palette,
            &Sampler::new(name, filter, Wrap::ClampToEdge),
        )?;
        let mat = b.add_material(
            &Material::diffuse(name, [1.0, 1.0, 1.0]).with_base_color_texture(TextureRef::new(tex)),
        )?;
        roots.push(object(
            &mut b,
            name,
            &panel([0.0; 3], 0.8, 0.8, [0.0, 0.0], [1.0, 1.0]),
            mat,
            [0.9 + 1.0 * i as f64, 0.45, 1.0],
        )?);
    }

    // TEXCOORD_1: TEXCOORD_0 tiles the quad 4 × 4 (rotated), TEXCOORD_1 maps the glyph
    // once; the material reads set 1, so one upright glyph must appear.
    let uv1_mat = b.add_material(
        &Material::diffuse("uv1_glyph", [1.0, 1.0, 1.0])
            .with_base_color_texture(TextureRef::new(glyph_tex).with_tex_coord(1)),
    )?;
    let mut uv1_quad = panel([0.0; 3], 0.8, 0.8, [0.0, 0.0], [1.0, 1.0]);
    let once = uv1_quad.tex_coords_0.clone();
    uv1_quad.tex_coords_0 = once
        .as_ref()
        .map(|uvs| uvs.iter().map(|uv| [4.0 * uv[1], 4.0 * uv[0]]).collect());
    uv1_quad.tex_coords_1 = once;
    roots.push(object(
        &mut b,
        "uv1_glyph",
        &uv1_quad,
        uv1_mat,
        [3.0, 0.45, 1.0],
    )?);

    // Alpha MASK: the fence, double-sided, against the sky seen by camera `cutout`.
    let fence_tex = texture(&mut b, "fence", &fence(128), &linear_repeat)?;
    let fence_mat = b.add_material(
        &Material::diffuse("fence", [1.0, 1.0, 1.0])
            .with_base_color_texture(TextureRef::new(fence_tex))
            .with_alpha_mode(AlphaMode::Mask { cutoff: 0.5 })
            .with_double_sided(true),
    )?;
    roots.push(object(
        &mut b,
        "fence",
        &panel([0.0; 3], 1.0, 1.0, [0.0, 0.0], [1.0, 1.0]),
        fence_mat,
        FENCE_CENTER,
    )?);

    // Alpha BLEND: a blue glass pane (alpha 0.35) in front of the untangented sphere.
    let glass = b.add_material(
        &Material::diffuse("glass", [0.2, 0.5, 1.0])
            .with_base_color_factor([0.2, 0.5, 1.0, 0.35])
            .with_metallic_roughness(0.0, 0.1)
            .with_alpha_mode(AlphaMode::Blend)
            .with_double_sided(true),
    )?;
    roots.push(object(
        &mut b,
        "glass_pane",
        &panel([0.0; 3], 0.9, 1.0, [0.0, 0.0], [1.0, 1.0]),
        glass,
        [-1.2, 0.5, 0.8],
    )?);

    roots.push(light(
        &mut b,
        &Light::directional("sun", [1.0, 0.97, 0.92], 2.0 * LUMENS_PER_WATT),
        [3.0, 6.0, 4.0],
        [0.0; 3],
        [0.0, 1.0, 0.0],
    )?);
    let scene = b.add_scene("textured", &roots)?;
    b.set_environment(scene, &Environment::uniform(ENVIRONMENT))?;
    Ok(b)
}

//! Node animation over 2 s: LINEAR translation, slerped rotation, STEP scale, a
//! CUBICSPLINE bounce, and an animated second camera.

use super::kit::{camera, LUMENS_PER_WATT};
use super::shapes::{axis_angle, cuboid, floor, ico_sphere, look_rotation};
use crate::builder::{
    Animation, AnimationChannel, AnimationPath, Environment, Interpolation, Light, Material, Node,
    PerspectiveCamera, SceneBuilder,
};
use crate::SceneError;

/// Slider (box, half size 0.3 m) position at t = 0 s; it moves linearly along +X.
pub const SLIDER_START: [f32; 3] = [-1.5, 0.3, 0.8];
/// Slider position at t = 2 s (x = 0 at t = 1 s, frame 24 at 24 fps).
pub const SLIDER_END: [f32; 3] = [1.5, 0.3, 0.8];
/// Length of the animation (s).
pub const DURATION: f32 = 2.0;
/// Key times of the rotation, bounce and scale channels.
const QUARTERS: [f32; 5] = [0.0, 0.5, 1.0, 1.5, 2.0];

/// The animated scene: see `scenes/README.md`. Cameras `camera` (static) and `dolly`
/// (moving); one animation, `motion`, with five channels.
pub fn animated() -> Result<SceneBuilder, SceneError> {
    let mut b = SceneBuilder::new();
    let mut roots = vec![camera(
        &mut b,
        "camera",
        0.7,
        [0.0, 2.2, 6.5],
        [0.0, 0.6, 0.0],
    )?];
    let dolly_cam = b.add_camera(&PerspectiveCamera::new("dolly", 0.7))?;
    let dolly_start = [3.0, 2.0, 6.0];
    let dolly = b.add_node(
        &Node::new("dolly")
            .with_camera(dolly_cam)
            .with_translation(dolly_start.map(|c| c as f32))
            .with_rotation(look_rotation(dolly_start, [0.0, 0.5, 0.0], [0.0, 1.0, 0.0])),
    )?;
    roots.push(dolly);

    let ground = b.add_material(&Material::diffuse("ground", [0.5, 0.5, 0.5]))?;
    let orange = b.add_material(
        &Material::diffuse("orange", [0.9, 0.35, 0.05]).with_metallic_roughness(0.0, 0.4),
    )?;
    let teal = b.add_material(
        &Material::diffuse("teal", [0.05, 0.6, 0.55]).with_metallic_roughness(0.0, 0.3),
    )?;
    let violet = b.add_material(&Material::diffuse("violet", [0.5, 0.15, 0.8]))?;
    let chrome = b.add_material(
        &Material::diffuse("chrome", [0.95, 0.95, 0.95]).with_metallic_roughness(1.0, 0.15),
    )?;
    let floor_mesh = b.add_mesh("floor", &floor(5.0, 5.0, 0.0, 1.0), Some(ground))?;
    roots.push(b.add_node(&Node::new("floor").with_mesh(floor_mesh))?);

    let slider_mesh = b.add_mesh("slider", &cuboid([0.3, 0.3, 0.3]), Some(orange))?;
    let slider = b.add_node(
        &Node::new("slider")
            .with_mesh(slider_mesh)
            .with_translation(SLIDER_START),
    )?;
    let spinner_mesh = b.add_mesh("spinner", &cuboid([0.6, 0.1, 0.15]), Some(teal))?;
    let spinner = b.add_node(
        &Node::new("spinner")
            .with_mesh(spinner_mesh)
            .with_translation([0.0, 0.9, -1.2]),
    )?;
    let pulser_mesh = b.add_mesh("pulser", &ico_sphere(0.35, 6), Some(violet))?;
    let pulser = b.add_node(
        &Node::new("pulser")
            .with_mesh(pulser_mesh)
            .with_translation([2.2, 0.6, -0.5]),
    )?;
    let bouncer_mesh = b.add_mesh("bouncer", &ico_sphere(0.25, 6), Some(chrome))?;
    let bounce_x_z = (-2.2, -0.8);
    let bouncer = b.add_node(
        &Node::new("bouncer")
            .with_mesh(bouncer_mesh)
            .with_translation([bounce_x_z.0, 0.25, bounce_x_z.1]),
    )?;
    roots.extend([slider, spinner, pulser, bouncer]);

    // Rotation about +Y: 0°, 90°, 180°, 270°, 360° (the last is −identity, so every
    // step is the short way round).
    let mut spin = Vec::new();
    for i in 0..5 {
        spin.extend(axis_angle([0.0, 1.0, 0.0], 90.0 * f64::from(i)).map(|c| c as f32));
    }
    // Ballistic bounce: floor (y = 0.25) at 0, 1, 2 s, top (y = 1.25) at 0.5, 1.5 s;
    // each key is (in-tangent, value, out-tangent), tangents in m/s (4 m/s at impact).
    let mut bounce = Vec::new();
    for (i, &t) in QUARTERS.iter().enumerate() {
        let _ = t;
        let (y, v_in, v_out) = if i % 2 == 0 {
            (0.25, -4.0, 4.0)
        } else {
            (1.25, 0.0, 0.0)
        };
        let (x, z) = bounce_x_z;
        bounce.extend([0.0, v_in, 0.0, x, y, z, 0.0, v_out, 0.0]);
    }
    let linear = |node, path, times: &[f32], values: Vec<f32>| AnimationChannel {
        node,
        path,
        interpolation: Interpolation::Linear,
        times: times.to_vec(),
        values,
    };
    let animation = Animation {
        name: "motion".to_owned(),
        channels: vec![
            linear(
                slider,
                AnimationPath::Translation,
                &[0.0, DURATION],
                SLIDER_START.iter().chain(&SLIDER_END).copied().collect(),
            ),
            linear(spinner, AnimationPath::Rotation, &QUARTERS, spin),
            AnimationChannel {
                node: pulser,
                path: AnimationPath::Scale,
                interpolation: Interpolation::Step,
                times: QUARTERS[..4].to_vec(),
                values: [1.0, 1.6, 0.6, 1.0]
                    .iter()
                    .flat_map(|&s| [s, s, s])
                    .collect(),
            },
            AnimationChannel {
                node: bouncer,
                path: AnimationPath::Translation,
                interpolation: Interpolation::CubicSpline,
                times: QUARTERS.to_vec(),
                values: bounce,
            },
            linear(
                dolly,
                AnimationPath::Translation,
                &[0.0, DURATION],
                vec![3.0, 2.0, 6.0, 1.5, 1.5, 4.5],
            ),
        ],
    };
    b.add_animation(&animation)?;
    let sun = b.add_light(&Light::directional(
        "sun",
        [1.0, 0.97, 0.9],
        2.0 * LUMENS_PER_WATT,
    ))?;
    roots.push(
        b.add_node(
            &Node::new("sun")
                .with_light(sun)
                .with_rotation(look_rotation([2.0, 5.0, 3.0], [0.0; 3], [0.0, 1.0, 0.0])),
        )?,
    );
    let scene = b.add_scene("animated", &roots)?;
    b.set_environment(scene, &Environment::uniform([0.2, 0.22, 0.26]))?;
    Ok(b)
}

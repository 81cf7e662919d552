//! The scene budget: what a scene can make the loader allocate and compute (decoded image
//! bytes and pixels, environment pixels, primitive references, vertices and triangles
//! after instancing), charged from image headers and accessor counts before anything is
//! decoded. [`Scene::load`](super::Scene::load) and
//! [`Scene::inspect`](super::Scene::inspect) charge it with this same code, so a decode
//! bomb is refused by either before it costs memory, and a scene that inspect accepts
//! stays within the budget when a node loads it.
//!
//! Decoded bytes per image pixel, at the decode's peak (what the `image` crate's decoder
//! returns plus the copy the renderer keeps):
//! - PNG: the decoder's output, channels × bytes per channel from the IHDR colour type
//!   and bit depth, counting the alpha channel a `tRNS` chunk can add (grey 2, RGB and
//!   palette 4, grey-alpha 2, RGBA 4 channels; 2 bytes each at bit depth 16), plus 4 for
//!   the RGBA8 copy unless the output already is 8-bit RGBA. An 8-bit RGBA PNG costs 4,
//!   an 8-bit RGB one 8, a 16-bit RGBA one 12.
//! - JPEG: 3 per component (the decoder's 16-bit coefficient planes of a progressive
//!   JPEG plus its 8-bit samples), plus 4 for the RGBA8 copy: 13 for a colour JPEG.
//! - The environment (Radiance HDR or OpenEXR): 32, the RGBA f32 copy the renderer keeps
//!   plus either the decoder's RGB(A) f32 output or the f64 luminance tables of the
//!   importance sampling, whichever is alive with it.
//!
//! Every image of the document is charged, used by a material or not, in index order, then
//! the environment image.

use gltf::json::mesh::{Mode, Semantic};
use gltf::json::validation::Checked;
use gltf::json::Root;

use super::format::{ImageInfo, ImageKind};
use super::SceneLimits;

/// Decoded bytes per pixel charged for the environment image (see the module docs).
pub(crate) const ENVIRONMENT_BYTES_PER_PIXEL: u64 = 32;

/// Decoded bytes per pixel charged for a material image (see the module docs).
pub(crate) fn image_bytes_per_pixel(kind: ImageKind) -> u64 {
    const RGBA8_COPY: u64 = 4;
    match kind {
        ImageKind::Png {
            bit_depth,
            colour_type,
        } => {
            let bytes_per_channel = match bit_depth {
                Some(d) if d <= 8 => 1,
                _ => 2,
            };
            let channels = match colour_type {
                Some(0 | 4) => 2,
                _ => 4,
            };
            let output = channels * bytes_per_channel;
            let rgba8 = colour_type == Some(6) && bytes_per_channel == 1;
            output + if rgba8 { 0 } else { RGBA8_COPY }
        }
        ImageKind::Jpeg { components } => 3 * u64::from(components) + RGBA8_COPY,
    }
}

/// What a scene has been charged so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    /// Triangles after instancing.
    pub triangles: u64,
    /// POSITION elements of every primitive reference.
    pub vertices: u64,
    /// Primitive references (mesh instances × their primitives).
    pub primitives: u64,
    /// Pixels of all images, the environment included.
    pub texture_pixels: u64,
    /// Decoded bytes of all images, the environment included.
    pub texture_bytes: u64,
    /// Pixels of the environment image.
    pub environment_pixels: u64,
}

/// A charge that crossed a budget; the loader adds the file name.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Exceeded {
    pub field: String,
    pub what: &'static str,
    pub value: u64,
    pub unit: &'static str,
    pub budget: &'static str,
    pub limit: u64,
}

/// The running charges of one scene against its [`SceneLimits`].
pub(crate) struct Budget<'a> {
    limits: &'a SceneLimits,
    used: Usage,
}

/// Add `amount` to `total`, refusing when the sum passes `limit`.
fn charge(
    total: &mut u64,
    amount: u64,
    limit: u64,
    refusal: impl FnOnce(u64) -> Exceeded,
) -> Result<(), Exceeded> {
    *total = total.saturating_add(amount);
    if *total > limit {
        return Err(refusal(*total));
    }
    Ok(())
}

impl<'a> Budget<'a> {
    pub fn new(limits: &'a SceneLimits) -> Self {
        Self {
            limits,
            used: Usage::default(),
        }
    }

    pub fn used(&self) -> &Usage {
        &self.used
    }

    /// Charge a material image (glTF `images[i]`, named by `field`) from its header.
    pub fn charge_image(&mut self, field: &str, info: &ImageInfo) -> Result<(), Exceeded> {
        let pixels = u64::from(info.width) * u64::from(info.height);
        self.charge_pixels(field, pixels)?;
        let bytes = pixels.saturating_mul(image_bytes_per_pixel(info.kind));
        self.charge_bytes(field, bytes)
    }

    /// Charge the environment image (`field` names its URI) from its header.
    pub fn charge_environment(
        &mut self,
        field: &str,
        width: u32,
        height: u32,
    ) -> Result<(), Exceeded> {
        let pixels = u64::from(width) * u64::from(height);
        let limit = self.limits.max_environment_pixels;
        charge(&mut self.used.environment_pixels, pixels, limit, |value| {
            Exceeded {
                field: field.to_string(),
                what: "the environment image has",
                value,
                unit: " pixels",
                budget: "max_environment_pixels",
                limit,
            }
        })?;
        self.charge_pixels(field, pixels)?;
        self.charge_bytes(field, pixels.saturating_mul(ENVIRONMENT_BYTES_PER_PIXEL))
    }

    fn charge_pixels(&mut self, field: &str, pixels: u64) -> Result<(), Exceeded> {
        let limit = self.limits.max_texture_pixels;
        charge(&mut self.used.texture_pixels, pixels, limit, |value| {
            Exceeded {
                field: field.to_string(),
                what: "images have",
                value,
                unit: " pixels",
                budget: "max_texture_pixels",
                limit,
            }
        })
    }

    fn charge_bytes(&mut self, field: &str, bytes: u64) -> Result<(), Exceeded> {
        let limit = self.limits.max_texture_bytes;
        charge(&mut self.used.texture_bytes, bytes, limit, |value| {
            Exceeded {
                field: field.to_string(),
                what: "textures decode to",
                value,
                unit: " bytes",
                budget: "max_texture_bytes",
                limit,
            }
        })
    }

    /// Charge every primitive of every mesh instance (node, mesh), in instance order:
    /// one primitive reference, its POSITION count in vertices (a shared accessor is
    /// charged at each reference, as each is decoded and instantiated on its own) and its
    /// triangles (from the index count, else the POSITION count; none for primitives that
    /// are not triangles, which are skipped).
    pub fn charge_geometry(
        &mut self,
        root: &Root,
        instances: &[(usize, usize)],
    ) -> Result<(), Exceeded> {
        let limits = self.limits;
        for &(_, mesh_idx) in instances {
            for (p, prim) in root.meshes[mesh_idx].primitives.iter().enumerate() {
                let field = || format!("meshes[{mesh_idx}].primitives[{p}]");
                let count = |idx: usize| root.accessors.get(idx).map_or(0, |a| a.count.0);
                let positions = prim
                    .attributes
                    .get(&Checked::Valid(Semantic::Positions))
                    .map_or(0, |i| count(i.value()));
                let corners = prim.indices.map_or(positions, |i| count(i.value()));
                let triangles = match prim.mode {
                    Checked::Valid(Mode::Triangles) => corners / 3,
                    Checked::Valid(Mode::TriangleStrip | Mode::TriangleFan) => {
                        corners.saturating_sub(2)
                    }
                    _ => 0,
                };
                let used = &mut self.used;
                charge(&mut used.primitives, 1, limits.max_primitives, |value| {
                    Exceeded {
                        field: field(),
                        what: "mesh instances have",
                        value,
                        unit: " primitives",
                        budget: "max_primitives",
                        limit: limits.max_primitives,
                    }
                })?;
                charge(
                    &mut used.vertices,
                    positions,
                    limits.max_vertices,
                    |value| Exceeded {
                        field: field(),
                        what: "mesh instances have",
                        value,
                        unit: " vertices",
                        budget: "max_vertices",
                        limit: limits.max_vertices,
                    },
                )?;
                charge(
                    &mut used.triangles,
                    triangles,
                    limits.max_triangles,
                    |value| Exceeded {
                        field: field(),
                        what: "mesh instances have",
                        value,
                        unit: " triangles",
                        budget: "max_triangles",
                        limit: limits.max_triangles,
                    },
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(bit_depth: u8, colour_type: u8) -> ImageKind {
        ImageKind::Png {
            bit_depth: Some(bit_depth),
            colour_type: Some(colour_type),
        }
    }

    #[test]
    fn bytes_per_pixel_cover_the_decoder_output_and_the_copy() {
        assert_eq!(image_bytes_per_pixel(png(8, 6)), 4);
        assert_eq!(image_bytes_per_pixel(png(8, 2)), 8);
        assert_eq!(image_bytes_per_pixel(png(16, 6)), 12);
        assert_eq!(image_bytes_per_pixel(png(1, 0)), 6);
        assert_eq!(image_bytes_per_pixel(png(4, 3)), 8);
        let cut = ImageKind::Png {
            bit_depth: None,
            colour_type: None,
        };
        assert_eq!(image_bytes_per_pixel(cut), 12);
        assert_eq!(image_bytes_per_pixel(ImageKind::Jpeg { components: 3 }), 13);
    }

    #[test]
    fn charges_add_up_and_name_the_budget() {
        let limits = SceneLimits {
            max_texture_bytes: 1000,
            ..SceneLimits::default()
        };
        let mut budget = Budget::new(&limits);
        let info = ImageInfo {
            width: 10,
            height: 10,
            kind: png(8, 6),
        };
        budget.charge_image("images[0]", &info).unwrap();
        budget.charge_image("images[1]", &info).unwrap();
        let err = budget.charge_image("images[2]", &info).unwrap_err();
        assert_eq!(
            (err.field.as_str(), err.budget, err.value, err.limit),
            ("images[2]", "max_texture_bytes", 1200, 1000)
        );
        assert_eq!(budget.used().texture_pixels, 300);
    }
}

//! Material textures: decoding PNG/JPEG images once, and packing them into the pages of
//! one GPU texture array.
//!
//! Every image a material uses is decoded to 8-bit RGBA (no colour conversion: the
//! shader decodes sRGB per texel with an exact table) and placed at an integer offset in
//! one layer ("page") of an `rgba8uint` 2D array texture by a deterministic shelf packer.
//! The shader reads texels with `textureLoad` only and does wrapping and filtering itself,
//! inside each image's own rectangle, so images never bleed into their neighbours.
//!
//! An image that a shading point reads through a sampler allowing mipmaps also carries
//! its mip chain ([`build_mips`]): levels 1, 2, … halve both
//! sides (rounding down) until the shorter side is 1, each texel the mean of the 2×2
//! texels above it, averaged as light (through the sRGB curve) for colour images and as
//! numbers for data images. The chain lies in a column to the right of the image
//! ([`mip_rect`]), so an image and its levels are one rectangle of the packer
//! ([`region`]). The shader picks a level per lookup from the ray's footprint (a ray
//! cone); see `tex_lookup` in `pathtrace.wgsl`.

/// Largest page side the packer picks unless an image is bigger (then: that image's side).
pub(crate) const PAGE_SIDE: u32 = 4096;
/// Largest image side accepted (the largest page side any adapter is asked for).
pub(crate) const MAX_IMAGE_SIDE: u32 = 16384;

/// Largest side of an image together with its mip chain; larger images get no mip chain
/// (8192 is the texture side every desktop adapter and wgpu's default limits allow).
pub(crate) const MAX_MIP_REGION_SIDE: u32 = 8192;

/// A decoded image: RGBA8, row-major, row 0 at the top (as stored in PNG/JPEG).
pub(crate) struct DecodedImage {
    pub width: u32,
    pub height: u32,
    pub rgba: Vec<u8>,
    /// Levels 1, 2, … of the mip chain (level 0 is `rgba`), RGBA8 row-major, each of the
    /// size [`mip_rect`] gives; empty until [`build_mips`] runs.
    pub mips: Vec<Vec<u8>>,
}

impl DecodedImage {
    /// The rectangle the image takes in a page: with its mip chain ([`region`]) once
    /// [`build_mips`] has built one, else the image alone.
    pub(crate) fn packed_size(&self) -> (u32, u32) {
        if self.mips.is_empty() {
            (self.width, self.height)
        } else {
            region(self.width, self.height)
        }
    }
}

/// How a mip level averages the texels of the level above it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MipSpace {
    /// Colour in sRGB codes (base colour, emissive): RGB averaged as linear light and
    /// encoded back to the nearest sRGB code; alpha averaged as a number.
    Srgb,
    /// Data (metallic-roughness, normal maps, or an image used both ways): every channel
    /// averaged as a number.
    Linear,
}

/// Number of mip levels of a `width`×`height` image, level 0 included: both sides halve
/// until the shorter one is 1. An image narrower or shorter than 2 texels, or one whose
/// chain would not fit beside it within [`MAX_MIP_REGION_SIDE`], has only level 0.
pub(crate) fn mip_count(width: u32, height: u32) -> u32 {
    if width < 2
        || height < 2
        || width + width / 2 > MAX_MIP_REGION_SIDE
        || height > MAX_MIP_REGION_SIDE
    {
        return 1;
    }
    32 - width.min(height).leading_zeros()
}

/// Offset (x, y) from the image's corner and size (width, height) of mip level `level`:
/// level 0 is the image; level l ≥ 1 is `width >> l` × `height >> l` at
/// (`width`, `height − (height >> (l − 1))`), a column right of the image in which each
/// level starts where the one before would end if it were as tall as half its parent.
/// The shader's `mip_rect` computes the same.
pub(crate) fn mip_rect(width: u32, height: u32, level: u32) -> [u32; 4] {
    if level == 0 {
        return [0, 0, width, height];
    }
    [
        width,
        height - (height >> (level - 1)),
        width >> level,
        height >> level,
    ]
}

/// The rectangle an image and its mip chain take in a page.
pub(crate) fn region(width: u32, height: u32) -> (u32, u32) {
    if mip_count(width, height) > 1 {
        (width + width / 2, height)
    } else {
        (width, height)
    }
}

/// Build `img`'s mip chain: each texel of level l is the mean of the 2×2 texels
/// (2x, 2y) … (2x + 1, 2y + 1) of level l − 1 (an odd last row or column of the parent
/// is left out), in `space`. Pure integer and f32 arithmetic in a fixed order, so the
/// chain is the same on every machine.
pub(crate) fn build_mips(img: &mut DecodedImage, space: MipSpace) {
    let table = decode_table();
    let levels = mip_count(img.width, img.height);
    let mut mips: Vec<Vec<u8>> = Vec::with_capacity(levels.saturating_sub(1) as usize);
    for level in 1..levels {
        let [_, _, pw, _] = mip_rect(img.width, img.height, level - 1);
        let [_, _, w, h] = mip_rect(img.width, img.height, level);
        let parent: &[u8] = if level == 1 {
            &img.rgba
        } else {
            &mips[level as usize - 2]
        };
        let mut out = Vec::with_capacity(w as usize * h as usize * 4);
        for y in 0..h as usize {
            for x in 0..w as usize {
                let at = |dx: usize, dy: usize, c: usize| {
                    parent[((2 * y + dy) * pw as usize + 2 * x + dx) * 4 + c]
                };
                for c in 0..4 {
                    let codes = [at(0, 0, c), at(1, 0, c), at(0, 1, c), at(1, 1, c)];
                    out.push(if space == MipSpace::Srgb && c < 3 {
                        let sum = codes
                            .iter()
                            .fold(0.0f32, |acc, &k| acc + table[usize::from(k)]);
                        srgb_code(&table[..256], sum * 0.25)
                    } else {
                        let sum: u32 = codes.iter().map(|&k| u32::from(k)).sum();
                        ((sum + 2) / 4) as u8
                    });
                }
            }
        }
        mips.push(out);
    }
    img.mips = mips;
}

/// The sRGB code whose linear value (`table`, increasing) is nearest to `v` (the lower
/// code on a tie).
fn srgb_code(table: &[f32], v: f32) -> u8 {
    let above = table.partition_point(|&t| t < v).min(255);
    if above > 0 && (v - table[above - 1]) <= (table[above] - v) {
        (above - 1) as u8
    } else {
        above as u8
    }
}

/// Where an image lies in the pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Placement {
    pub layer: u32,
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// All decoded images of a scene and their places in the texture pages.
#[derive(Default)]
pub(crate) struct TextureSet {
    /// Page width and height in texels; 0 × 0 when there are no images.
    pub page_size: [u32; 2],
    /// Number of pages (array layers).
    pub pages: u32,
    /// Decoded images, indexed like `images` of the glTF document (`None` = unused).
    pub images: Vec<Option<DecodedImage>>,
    /// Placement of each image (meaningful where `images[i]` is `Some`).
    pub placements: Vec<Placement>,
}

impl TextureSet {
    /// GPU bytes of the pages.
    pub fn gpu_bytes(&self) -> u64 {
        u64::from(self.page_size[0]) * u64::from(self.page_size[1]) * 4 * u64::from(self.pages)
    }

    /// Number of decoded images.
    pub fn image_count(&self) -> usize {
        self.images.iter().filter(|i| i.is_some()).count()
    }
}

/// Why an image (a material texture or the environment) could not be decoded. The
/// messages follow the glTF field that names the image, e.g. `images[2]: is Gif; …`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ImageError {
    /// A material texture in a format other than PNG or JPEG.
    #[error("is {0:?}; only PNG and JPEG images are supported for material textures")]
    NotTextureFormat(image::ImageFormat),
    /// A material texture in no format the decoder knows.
    #[error("is neither PNG nor JPEG")]
    UnknownTextureFormat,
    /// An environment image in a format other than Radiance HDR or OpenEXR.
    #[error("is {0:?}; the environment image must be Radiance HDR (.hdr) or OpenEXR (.exr)")]
    NotEnvironmentFormat(image::ImageFormat),
    /// An environment image in no format the decoder knows.
    #[error("is neither Radiance HDR nor OpenEXR")]
    UnknownEnvironmentFormat,
    /// The first bytes could not be read.
    #[error("cannot read: {0}")]
    Read(std::io::Error),
    /// The header could not be parsed.
    #[error("cannot read the {format:?} header: {source}")]
    Header {
        /// The format the magic bytes announced.
        format: image::ImageFormat,
        /// What the decoder reported.
        source: image::ImageError,
    },
    /// The pixels could not be decoded.
    #[error("cannot decode {format:?}: {source}")]
    Decode {
        /// The format the magic bytes announced.
        format: image::ImageFormat,
        /// What the decoder reported.
        source: image::ImageError,
    },
    /// The image has more pixels than the texture pixel budget has left.
    #[error("{width}x{height} pixels exceed the remaining texture pixel budget of {budget}")]
    OverBudget {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Pixels the budget had left.
        budget: u64,
    },
    /// The image decoded to no pixels.
    #[error("has no pixels")]
    Empty,
}

/// Decode PNG or JPEG bytes to RGBA8 under a pixel budget. The error says what failed.
pub(crate) fn decode_rgba8(bytes: &[u8], max_pixels: u64) -> Result<DecodedImage, ImageError> {
    let format = match image::guess_format(bytes) {
        Ok(f @ (image::ImageFormat::Png | image::ImageFormat::Jpeg)) => f,
        Ok(other) => return Err(ImageError::NotTextureFormat(other)),
        Err(_) => return Err(ImageError::UnknownTextureFormat),
    };
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(max_pixels.saturating_mul(16).max(1 << 20));
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|source| ImageError::Decode { format, source })?;
    let (width, height) = (img.width(), img.height());
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(ImageError::OverBudget {
            width,
            height,
            budget: max_pixels,
        });
    }
    // 16-bit PNGs are reduced to 8 bits (round to nearest) like every other texture.
    let rgba = img.into_rgba8().into_raw();
    Ok(DecodedImage {
        width,
        height,
        rgba,
        mips: Vec::new(),
    })
}

/// Granularity of the page sides the packer tries (besides the largest image's own sides).
const PAGE_STEP: u32 = 64;

/// The texture pages' shape and where each image lies in them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Packing {
    /// Page width and height in texels; 0 × 0 when there are no images.
    pub size: [u32; 2],
    /// Number of pages (array layers).
    pub pages: u32,
    /// Where each image lies (meaningful where its size is `Some`).
    pub placements: Vec<Placement>,
}

/// Pack `sizes` (width, height; `None` = not used) into pages of one shape with a shelf
/// packer: images in order of decreasing height (ties by index), each shelf filled left
/// to right, shelves top to bottom, a new page when a shelf does not fit. The page shape
/// is the one that takes the fewest texels in all (then the fewest pages, then the
/// narrowest, then the lowest) among every width and height from the largest image's
/// side up to [`PAGE_SIDE`] (or that side, when an image is bigger) in steps of
/// [`PAGE_STEP`]: so a few small images get one small page, and images that do not tile
/// a square (a 2048² image with its mip chain is 3072 × 2048) waste no page space on
/// it. The result depends only on the sizes.
pub(crate) fn pack(sizes: &[Option<(u32, u32)>]) -> Packing {
    let mut order: Vec<usize> = (0..sizes.len()).filter(|&i| sizes[i].is_some()).collect();
    if order.is_empty() {
        return Packing {
            placements: vec![Placement::default(); sizes.len()],
            ..Packing::default()
        };
    }
    let dims = |i: usize| sizes[i].unwrap_or((0, 0));
    let max_w = order.iter().map(|&i| dims(i).0).max().unwrap_or(1).max(1);
    let max_h = order.iter().map(|&i| dims(i).1).max().unwrap_or(1).max(1);
    order.sort_by_key(|&i| (std::cmp::Reverse(dims(i).1), i));
    let cap = PAGE_SIDE.max(max_w).max(max_h);
    // The candidate sides along one axis: the largest image's side, then every multiple
    // of PAGE_STEP above it up to the cap.
    let sides = |least: u32| {
        std::iter::once(least).chain(
            (least / PAGE_STEP + 1..=cap / PAGE_STEP)
                .map(|k| k * PAGE_STEP)
                .filter(move |&s| s > least),
        )
    };
    let area: u64 = order
        .iter()
        .map(|&i| u64::from(dims(i).0) * u64::from(dims(i).1))
        .sum();
    let mut best: Option<(u64, u32, u32, u32)> = None;
    for w in sides(max_w) {
        for h in sides(max_h) {
            // A shape whose pages cannot hold the images in fewer texels than the best
            // so far is not packed at all: at least ceil(area / page) pages.
            let page = u64::from(w) * u64::from(h);
            if best.is_some_and(|b| area.div_ceil(page).max(1) * page > b.0) {
                continue;
            }
            let pages = shelf_pages(w, h, sizes, &order);
            let texels = page * u64::from(pages);
            let key = (texels, pages, w, h);
            if best.is_none_or(|b| key < b) {
                best = Some(key);
            }
        }
    }
    let (_, _, w, h) = best.unwrap_or((0, 1, cap, cap));
    let mut placements = vec![Placement::default(); sizes.len()];
    let pages = shelf_pack(w, h, sizes, &order, |i, p| placements[i] = p);
    Packing {
        size: [w, h],
        pages,
        placements,
    }
}

/// Pages a `width` × `height` shelf packing of `order` takes.
fn shelf_pages(width: u32, height: u32, sizes: &[Option<(u32, u32)>], order: &[usize]) -> u32 {
    shelf_pack(width, height, sizes, order, |_, _| {})
}

/// Shelf-pack `order` into `width` × `height` pages (every image fits one), handing each
/// image's placement to `place`; returns the pages used.
fn shelf_pack(
    width: u32,
    height: u32,
    sizes: &[Option<(u32, u32)>],
    order: &[usize],
    mut place: impl FnMut(usize, Placement),
) -> u32 {
    let (mut layer, mut shelf_y, mut shelf_h, mut x) = (0u32, 0u32, 0u32, 0u32);
    for &i in order {
        let (w, h) = sizes[i].unwrap_or((0, 0));
        if x + w > width {
            // Next shelf.
            shelf_y += shelf_h;
            shelf_h = 0;
            x = 0;
        }
        if shelf_y + h > height {
            layer += 1;
            shelf_y = 0;
            shelf_h = 0;
            x = 0;
        }
        place(
            i,
            Placement {
                layer,
                x,
                y: shelf_y,
                width: w,
                height: h,
            },
        );
        x += w;
        shelf_h = shelf_h.max(h);
    }
    layer + 1
}

/// The shader's decode table: entries 0..256 map an 8-bit sRGB code to linear (the exact
/// IEC 61966-2-1 curve evaluated in f64, rounded once to f32), entries 256..512 map an
/// 8-bit code `c` to `c / 255`.
pub(crate) fn decode_table() -> Vec<f32> {
    let mut lut = Vec::with_capacity(512);
    for c in 0..256u32 {
        let v = f64::from(c) / 255.0;
        let linear = if v <= 0.04045 {
            v / 12.92
        } else {
            ((v + 0.055) / 1.055).powf(2.4)
        };
        lut.push(linear as f32);
    }
    for c in 0..256u32 {
        lut.push((f64::from(c) / 255.0) as f32);
    }
    lut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_is_deterministic_and_disjoint() {
        let sizes: Vec<Option<(u32, u32)>> = (0..40u32)
            .map(|i| (i % 7 != 3).then(|| (16 + (i * 37) % 300, 8 + (i * 53) % 200)))
            .collect();
        let packed = pack(&sizes);
        assert_eq!(pack(&sizes), packed);
        let [w, h] = packed.size;
        let placed = &packed.placements;
        let used: Vec<usize> = (0..sizes.len()).filter(|&i| sizes[i].is_some()).collect();
        for &a in &used {
            let p = placed[a];
            assert_eq!(sizes[a], Some((p.width, p.height)));
            assert!(p.x + p.width <= w && p.y + p.height <= h && p.layer < packed.pages);
            for &b in &used {
                let q = placed[b];
                if a < b && p.layer == q.layer {
                    let apart = p.x + p.width <= q.x
                        || q.x + q.width <= p.x
                        || p.y + p.height <= q.y
                        || q.y + q.height <= p.y;
                    assert!(apart, "{a} and {b} overlap");
                }
            }
        }
    }

    #[test]
    fn big_images_use_several_pages() {
        let sizes = vec![Some((4096, 4096)), Some((4096, 2048)), Some((100, 100))];
        let packed = pack(&sizes);
        assert_eq!((packed.size, packed.pages), ([4096, 4096], 2));
    }

    /// Eight 2048² images with their mip chains (3072 × 2048 each, as in `large.gltf`):
    /// square 4096² pages held two each, 256 MiB; the pages now hold them without a gap.
    #[test]
    fn pages_fit_images_that_do_not_tile_a_square() {
        let region = region(2048, 2048);
        assert_eq!(region, (3072, 2048));
        let sizes = vec![Some(region); 8];
        let packed = pack(&sizes);
        let [w, h] = packed.size;
        assert!(w <= PAGE_SIDE && h <= PAGE_SIDE, "{w} x {h}");
        assert_eq!(
            u64::from(w) * u64::from(h) * u64::from(packed.pages),
            8 * 3072 * 2048
        );
    }

    /// The shapes skipped unpacked (their lower bound on texels is above the best) never
    /// hold the best packing: the chosen shape is the least of every candidate's
    /// (texels, pages, width, height).
    #[test]
    fn the_chosen_page_shape_is_the_least_of_every_candidate() {
        for seed in 0..12u32 {
            let sizes: Vec<Option<(u32, u32)>> = (0..(3 + seed * 5))
                .map(|i| {
                    let k = i * 7 + seed * 13;
                    Some((1 + (k * 389) % 1500, 1 + (k * 241) % 1100))
                })
                .collect();
            let packed = pack(&sizes);
            let [w, h] = packed.size;
            let key = |w: u32, h: u32, pages: u32| {
                (u64::from(w) * u64::from(h) * u64::from(pages), pages, w, h)
            };
            let chosen = key(w, h, packed.pages);
            let mut order: Vec<usize> = (0..sizes.len()).collect();
            order.sort_by_key(|&i| (std::cmp::Reverse(sizes[i].unwrap_or((0, 0)).1), i));
            let max_w = sizes.iter().flatten().map(|s| s.0).max().unwrap_or(1);
            let max_h = sizes.iter().flatten().map(|s| s.1).max().unwrap_or(1);
            for cw in
                std::iter::once(max_w).chain((1..=PAGE_SIDE / PAGE_STEP).map(|k| k * PAGE_STEP))
            {
                for ch in
                    std::iter::once(max_h).chain((1..=PAGE_SIDE / PAGE_STEP).map(|k| k * PAGE_STEP))
                {
                    if cw < max_w || ch < max_h {
                        continue;
                    }
                    let pages = shelf_pages(cw, ch, &sizes, &order);
                    assert!(
                        chosen <= key(cw, ch, pages),
                        "seed {seed}: {cw} x {ch} beats {w} x {h}"
                    );
                }
            }
        }
    }

    #[test]
    fn one_small_image_gets_a_page_of_its_size() {
        let packed = pack(&[None, Some((300, 200))]);
        assert_eq!((packed.size, packed.pages), ([300, 200], 1));
        assert_eq!(packed.placements[1].layer, 0);
        assert_eq!(pack(&[None, None]).pages, 0);
    }

    #[test]
    fn mip_levels_tile_their_column_without_overlap() {
        for (w, h) in [
            (2048, 2048),
            (300, 77),
            (2, 2),
            (5, 1024),
            (1024, 5),
            (6000, 16),
        ] {
            let levels = mip_count(w, h);
            let (rw, rh) = region(w, h);
            let mut prev_bottom = 0;
            for l in 1..levels {
                let [x, y, lw, lh] = mip_rect(w, h, l);
                assert!(lw >= 1 && lh >= 1, "{w}x{h} level {l} is empty");
                assert_eq!((lw, lh), (w >> l, h >> l));
                assert!(x == w && x + lw <= rw && y + lh <= rh, "{w}x{h} level {l}");
                assert!(
                    y >= prev_bottom,
                    "{w}x{h}: level {l} overlaps level {}",
                    l - 1
                );
                prev_bottom = y + lh;
            }
            assert!(w.min(h) >> (levels - 1) >= 1);
        }
        assert_eq!(mip_count(2048, 2048), 12);
        assert_eq!(mip_count(300, 77), 7);
        assert_eq!(mip_count(6000, 16), 1, "the chain would not fit beside it");
        assert_eq!(region(6000, 16), (6000, 16));
    }

    #[test]
    fn mips_average_colour_as_light_and_data_as_numbers() {
        // 4×2: a black and white checker on the left 2×2, flat codes on the right.
        let rgba: Vec<u8> = [
            [0u8, 0, 0, 0],
            [255, 255, 255, 255],
            [10, 20, 30, 40],
            [12, 22, 32, 42],
            [255, 255, 255, 255],
            [0, 0, 0, 0],
            [10, 20, 30, 40],
            [12, 22, 32, 42],
        ]
        .concat();
        let decoded = |space| {
            let mut img = DecodedImage {
                width: 4,
                height: 2,
                rgba: rgba.clone(),
                mips: Vec::new(),
            };
            build_mips(&mut img, space);
            img.mips
        };
        let srgb = decoded(MipSpace::Srgb);
        assert_eq!(srgb.len(), 1);
        // Half the light of white is code 188 (0.5 linear), not 128; alpha is a number.
        assert_eq!(&srgb[0][0..4], &[188, 188, 188, 128]);
        let linear = decoded(MipSpace::Linear);
        assert_eq!(&linear[0][0..4], &[128, 128, 128, 128]);
        // Flat neighbours average to their mean code, rounded: (10+12+10+12+2)/4 = 11.
        assert_eq!(&linear[0][4..8], &[11, 21, 31, 41]);
        assert_eq!(srgb[0][7], 41);
    }

    #[test]
    fn srgb_table_matches_the_curve() {
        let lut = decode_table();
        assert_eq!(lut[0], 0.0);
        assert_eq!(lut[255], 1.0);
        assert!((lut[128] - 0.215_860_5).abs() < 1e-6);
        assert_eq!(lut[256 + 255], 1.0);
    }
}

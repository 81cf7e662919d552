//! A frame as it fills in: the tiles delivered so far composed into a PNG (tiles not yet
//! delivered are transparent), scaled down to at most [`PREVIEW_EDGE`] pixels a side,
//! through the same sRGB view transform as finished frames (`tessera-images`).

use super::{check_job_id, visible, Oops, Viewer, Web};
use crate::machine::TilePhase;
use crate::store::StoredMachine;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use tessera_images::{View, ViewTransform};
use tessera_protocol::TileRect;

/// The longest side of a preview.
pub(super) const PREVIEW_EDGE: u32 = 1024;

/// A frame's delivered tiles: (rectangle, canonical RGBA16F bytes).
pub(super) type Delivered = Vec<(TileRect, Vec<u8>)>;

/// Compose `tiles` of a `width` × `height` frame into an 8-bit RGBA PNG, every
/// `step`-th pixel (nearest neighbour), where `step` makes the longest side at most
/// `max_edge`. Pixels of no tile are transparent; a tile whose bytes are not its
/// rectangle's size is left out.
pub(super) fn compose_png(
    width: u32,
    height: u32,
    tiles: &Delivered,
    max_edge: u32,
) -> Result<Vec<u8>, image::ImageError> {
    let step = width.max(height).div_ceil(max_edge.max(1)).max(1);
    let (pw, ph) = (width.div_ceil(step), height.div_ceil(step));
    let mut rgba = vec![0u8; pw as usize * ph as usize * 4];
    let view = ViewTransform::new(View::Standard, 0.0).expect("exposure 0 is in range");
    for (rect, bytes) in tiles {
        if bytes.len() != rect.canonical_len() {
            continue;
        }
        let (y0, y1) = (rect.y.div_ceil(step), (rect.y + rect.h).div_ceil(step));
        let (x0, x1) = (rect.x.div_ceil(step), (rect.x + rect.w).div_ceil(step));
        for py in y0..y1.min(ph) {
            let sy = py * step - rect.y;
            for px in x0..x1.min(pw) {
                let sx = px * step - rect.x;
                let src = (sy as usize * rect.w as usize + sx as usize) * 8;
                let dst = (py as usize * pw as usize + px as usize) * 4;
                for c in 0..3 {
                    let h = half::f16::from_le_bytes([bytes[src + 2 * c], bytes[src + 2 * c + 1]]);
                    rgba[dst + c] = view.encode8(h.to_f32());
                }
                rgba[dst + 3] = 255;
            }
        }
    }
    let mut out = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut out),
        &rgba,
        pw,
        ph,
        image::ExtendedColorType::Rgba8,
    )?;
    Ok(out)
}

/// `GET /ui/jobs/{id}/frames/{frame}/preview.png`.
pub(super) async fn preview(
    State(web): State<Web>,
    Extension(viewer): Extension<Viewer>,
    UrlPath((id, frame)): UrlPath<(String, String)>,
) -> Result<Response, Oops> {
    check_job_id(&id)?;
    let frame: u32 = frame.parse().map_err(|_| {
        Oops(
            StatusCode::BAD_REQUEST,
            format!("frame {frame:?}: expected a frame number"),
        )
    })?;
    let who = viewer.who.clone();
    let (w, h, tiles) = web
        .read(move |s| {
            visible(s, &id, &who)?;
            let view = s.job_view(&id)?;
            let m = &view.manifest.statement;
            if frame < m.frame_start || frame > m.frame_end {
                return Err(crate::daemon::service::ServiceError::NotFound(format!(
                    "job {id} has frames {}..={}, not {frame}",
                    m.frame_start, m.frame_end
                )));
            }
            let (w, h) = (m.settings.width, m.settings.height);
            let mut tiles = Vec::new();
            if let Some(StoredMachine::Machine(job)) = s.store().machine(&id)? {
                for t in job.tiles() {
                    let delivered = matches!(
                        t.phase,
                        TilePhase::Delivered
                            | TilePhase::Sampled
                            | TilePhase::Verified
                            | TilePhase::Failed
                    );
                    if t.frame != frame || !delivered || t.node.is_none() {
                        continue;
                    }
                    if let Some(bytes) = s.store().tile_bytes(&id, t.round, frame, t.tile_index)? {
                        tiles.push((t.rect, bytes));
                    }
                }
            }
            Ok((w, h, tiles))
        })
        .await?;
    let png = tokio::task::spawn_blocking(move || compose_png(w, h, &tiles, PREVIEW_EDGE))
        .await
        .map_err(|e| Oops(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| Oops(StatusCode::INTERNAL_SERVER_ERROR, format!("preview: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
}

#[cfg(test)]
mod tests {
    use super::compose_png;
    use tessera_protocol::TileRect;

    fn decode(png: &[u8]) -> image::RgbaImage {
        image::load_from_memory(png).unwrap().to_rgba8()
    }

    /// A tile of one linear value (RGB) and alpha 1.
    fn tile(rect: TileRect, v: f32) -> (TileRect, Vec<u8>) {
        let px: Vec<u8> = [v, v, v, 1.0]
            .iter()
            .flat_map(|c| half::f16::from_f32(*c).to_le_bytes())
            .collect();
        (rect, px.repeat((rect.w * rect.h) as usize))
    }

    #[test]
    fn delivered_tiles_are_opaque_and_the_rest_transparent() {
        let r = |x, y| TileRect { x, y, w: 4, h: 4 };
        let png = compose_png(8, 8, &vec![tile(r(0, 0), 1.0), tile(r(4, 4), 0.0)], 1024).unwrap();
        let img = decode(&png);
        assert_eq!(img.dimensions(), (8, 8));
        assert_eq!(img.get_pixel(1, 1).0, [255, 255, 255, 255]);
        assert_eq!(img.get_pixel(5, 5).0, [0, 0, 0, 255]);
        assert_eq!(img.get_pixel(5, 1).0[3], 0, "no tile there yet");
        assert_eq!(img.get_pixel(1, 5).0[3], 0, "no tile there yet");
    }

    #[test]
    fn large_frames_are_scaled_down_and_a_short_tile_is_left_out() {
        let whole = TileRect {
            x: 0,
            y: 0,
            w: 3000,
            h: 10,
        };
        let png = compose_png(3000, 10, &vec![tile(whole, 1.0)], 1000).unwrap();
        assert_eq!(decode(&png).dimensions(), (1000, 4));
        let (rect, mut bytes) = tile(
            TileRect {
                x: 0,
                y: 0,
                w: 2,
                h: 2,
            },
            1.0,
        );
        bytes.pop();
        let png = compose_png(2, 2, &vec![(rect, bytes)], 1024).unwrap();
        assert_eq!(decode(&png).get_pixel(0, 0).0[3], 0);
    }
}

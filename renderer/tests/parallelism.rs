//! GPU tests: a sample per invocation (`spread` + `gather`, what GPUs run) gives the same
//! bytes as a pixel per invocation (`main`, what lavapipe runs), for frames and tiles,
//! and the shader variant without the features a scene leaves unused gives the bytes of
//! the full shader, on sample scenes that between them use every feature but alpha
//! (emitters, punctual lights, textures, an environment image), path regeneration (the
//! Cornell box's variant) included; and a batch of tiles rendered together gives the bytes
//! of each tile alone.

mod common;

use common::{full, gpu, scene};
use tessera_protocol::{RenderSettings, TileRect, TileRenderer};
use tessera_renderer::{Parallelism, SceneRenderer, ShaderFeatures};

fn settings(width: u32, height: u32, spp: u32) -> RenderSettings {
    RenderSettings {
        width,
        height,
        spp,
        max_bounces: 4,
        seed: 0x0005_eed0_f7e5_5e7a,
        camera: None,
        frame_rate: Default::default(),
    }
}

#[test]
fn a_sample_per_invocation_and_the_full_shader_give_the_same_bytes() {
    let (w, h, spp) = (40, 24, 23);
    // 5 samples per pass over the frame (the last pass has 3), 1 per pass over the tile
    // below, and every sample in one pass.
    let spreads = [w * h * 5, 1, w * h * spp];
    let tile = TileRect {
        x: 5,
        y: 3,
        w: 13,
        h: 7,
    };
    let s = settings(w, h, spp);
    for name in [
        "cornell-box.glb",
        "lights.glb",
        "textured.glb",
        "env-hdr.gltf",
    ] {
        let scene = scene(name);
        let by_pixel = SceneRenderer::new(gpu(), &scene)
            .unwrap()
            .with_parallelism(Parallelism::PixelPerInvocation);
        // The Cornell box (lit by its emitters alone) is the one here whose variant
        // regenerates paths; the full shader never does, so its bytes below are those of
        // the samples run one after another.
        assert_eq!(
            by_pixel.shader_features().regenerate,
            name == "cornell-box.glb",
            "{name}"
        );
        const { assert!(!ShaderFeatures::ALL.regenerate) };
        let frame = by_pixel.render_tile(&s, 0, full(w, h)).unwrap();
        let cut = by_pixel.render_tile(&s, 0, tile).unwrap();
        assert!(frame.iter().any(|&b| b != 0), "{name}: a black frame");
        let full_shader = SceneRenderer::new(gpu(), &scene)
            .unwrap()
            .with_parallelism(Parallelism::PixelPerInvocation)
            .with_full_shader();
        assert_eq!(
            full_shader.render_tile(&s, 0, full(w, h)).unwrap(),
            frame,
            "{name}: the full shader and the scene's variant differ"
        );
        for threads in spreads {
            let by_sample = SceneRenderer::new(gpu(), &scene)
                .unwrap()
                .with_parallelism(Parallelism::SamplePerInvocation { threads });
            assert_eq!(
                by_sample.render_tile(&s, 0, full(w, h)).unwrap(),
                frame,
                "{name}: full frame, {threads} threads per pass"
            );
            assert_eq!(
                by_sample.render_tile(&s, 0, tile).unwrap(),
                cut,
                "{name}: tile {tile}, {threads} threads per pass"
            );
        }
    }
}

#[test]
fn lavapipe_renders_a_pixel_per_invocation_by_default() {
    let scene = scene("cornell-box.glb");
    let r = SceneRenderer::new(gpu(), &scene).unwrap();
    let cpu = gpu()
        .class()
        .adapter
        .to_ascii_lowercase()
        .contains("llvmpipe");
    assert_eq!(
        r.parallelism() == Parallelism::PixelPerInvocation,
        cpu,
        "{:?} on {}",
        r.parallelism(),
        gpu().class().adapter
    );
}

/// A task's tiles rendered together (neighbours joined into one rectangle, one dispatch
/// per pass) give each tile the bytes of rendering it alone, as a verifier does, with
/// either parallelism.
#[test]
fn a_batch_of_tiles_gives_the_bytes_of_each_tile_alone() {
    let (w, h, spp) = (40, 30, 9);
    let s = settings(w, h, spp);
    // 8×8 tiles, 5 per row: a run from the end of row 0 to the start of row 2 (three
    // rectangles), a tile twice, and one apart (row 3).
    let grid = tessera_protocol::tile_layout(w, h, 8);
    let mut rects: Vec<TileRect> = grid[3..12].to_vec();
    rects.push(grid[4]);
    rects.push(grid[17]);
    let scene = scene("lights.glb");
    for parallelism in [
        Parallelism::PixelPerInvocation,
        Parallelism::SamplePerInvocation { threads: 1 << 12 },
    ] {
        let r = SceneRenderer::new(gpu(), &scene)
            .unwrap()
            .with_parallelism(parallelism);
        let batch = r.render_tiles(&s, 0, &rects).unwrap();
        assert_eq!(batch.len(), rects.len());
        for (rect, bytes) in rects.iter().zip(&batch) {
            let alone = r.render_tile(&s, 0, *rect).unwrap();
            assert!(alone.iter().any(|&b| b != 0), "tile {rect} is black");
            assert_eq!(bytes, &alone, "{parallelism:?}: tile {rect}");
        }
    }
    // A tile outside the frame fails the batch, naming it.
    let r = SceneRenderer::new(gpu(), &scene).unwrap();
    let outside = TileRect {
        x: 36,
        y: 0,
        w: 8,
        h: 8,
    };
    let err = r.render_tiles(&s, 0, &[grid[0], outside]).unwrap_err();
    assert_eq!(err.0, 1, "{err:?}");
}

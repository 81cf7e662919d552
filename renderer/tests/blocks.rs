//! GPU tests of rendering scattered pixel blocks (what a verifier re-renders): a list of
//! rects that make no one rectangle is rendered as one list of pixels in one dispatch per
//! pass, and every rect gets exactly the bytes of rendering it alone and of the same
//! region of the full frame, with either parallelism.

mod common;

use common::{full, gpu, scene};
use tessera_protocol::canonical::crop;
use tessera_protocol::{RenderSettings, TileRect, TileRenderer};
use tessera_renderer::{GpuWork, Parallelism, RenderError, SceneRenderer};

fn settings(width: u32, height: u32, spp: u32) -> RenderSettings {
    RenderSettings {
        width,
        height,
        spp,
        max_bounces: 4,
        seed: 0x0b10_c5ed_0f7e_55e7,
        camera: None,
        frame_rate: Default::default(),
    }
}

fn rect(x: u32, y: u32, w: u32, h: u32) -> TileRect {
    TileRect { x, y, w, h }
}

fn parallelisms() -> [Parallelism; 3] {
    [
        Parallelism::PixelPerInvocation,
        // Every sample of the list in one pass, and a few samples per pass.
        Parallelism::SamplePerInvocation { threads: 1 << 20 },
        Parallelism::SamplePerInvocation { threads: 1 << 10 },
    ]
}

/// Scattered 8×8 blocks of a 59×45 frame, as a verifier samples them: clipped at the
/// right edge (3×8), the bottom edge (8×5) and the corner (3×5), side by side and one
/// above the other, far apart, one pixel alone, one off the 8-pixel grid, in no order.
#[test]
fn scattered_blocks_give_the_bytes_of_each_block_alone_and_of_the_frame() {
    let (w, h, spp) = (59, 45, 7);
    let s = settings(w, h, spp);
    let rects = [
        rect(48, 24, 8, 8),
        rect(56, 40, 3, 5),
        rect(8, 0, 8, 8),
        rect(0, 0, 8, 8),
        rect(16, 0, 8, 8),
        rect(8, 8, 8, 8),
        rect(56, 16, 3, 8),
        rect(24, 40, 8, 5),
        rect(33, 21, 1, 1),
        rect(13, 27, 8, 8),
        rect(0, 32, 8, 8),
    ];
    for name in ["textured.glb", "cornell-box.glb"] {
        let scene = scene(name);
        for parallelism in parallelisms() {
            let r = SceneRenderer::new(gpu(), &scene)
                .unwrap()
                .with_parallelism(parallelism);
            let frame = r.render_tile(&s, 0, full(w, h)).unwrap();
            let before = r.gpu_work();
            let blocks = r.render_tiles(&s, 0, &rects).unwrap();
            assert_eq!(
                r.gpu_work().readbacks - before.readbacks,
                1,
                "{name}, {parallelism:?}: the blocks were not rendered as one list"
            );
            assert_eq!(blocks.len(), rects.len());
            for (tile, bytes) in rects.iter().zip(&blocks) {
                let alone = r.render_tile(&s, 0, *tile).unwrap();
                assert_eq!(bytes.len(), tile.canonical_len());
                assert!(
                    bytes.iter().any(|&b| b != 0),
                    "{name}: block {tile} is black"
                );
                assert_eq!(
                    bytes, &alone,
                    "{name}, {parallelism:?}: block {tile} differs from rendering it alone"
                );
                assert_eq!(
                    bytes,
                    &crop(&frame, w, h, *tile).expect("the block lies in the frame"),
                    "{name}, {parallelism:?}: block {tile} differs from the frame's crop"
                );
            }
            // The order of the list changes nothing.
            let reversed: Vec<TileRect> = rects.iter().rev().copied().collect();
            let again = r.render_tiles(&s, 0, &reversed).unwrap();
            assert!(
                again.iter().rev().eq(blocks.iter()),
                "{name}, {parallelism:?}: the blocks in reverse order differ"
            );
        }
    }
}

/// A rect outside the frame fails the list, naming the rect's index, before anything is
/// rendered, whichever path the others would take.
#[test]
fn a_block_outside_the_frame_names_its_index() {
    let s = settings(59, 45, 2);
    let r = SceneRenderer::new(gpu(), &scene("cornell-box.glb")).unwrap();
    let outside = [
        rect(56, 0, 8, 8),  // past the right edge
        rect(0, 40, 8, 8),  // past the bottom edge
        rect(70, 70, 1, 1), // far outside
        rect(8, 8, 0, 8),   // empty
    ];
    for bad in outside {
        // Scattered blocks, and blocks that would make one rectangle with the bad one.
        for rects in [
            vec![rect(0, 0, 8, 8), rect(24, 8, 8, 8), rect(40, 32, 8, 8), bad],
            vec![rect(48, 0, 8, 8), bad],
        ] {
            let before = r.gpu_work();
            let (index, failure) = r.render_tiles(&s, 0, &rects).unwrap_err();
            assert_eq!(index, rects.len() - 1, "{bad}: {failure:?}");
            assert!(failure.0.contains(&bad.to_string()), "{bad}: {failure}");
            assert_eq!(r.gpu_work(), before, "{bad}: rendered before failing");
        }
    }
    // The error the renderer itself gives names the rect too.
    let (index, err) = r
        .render_batch(&s, 0, &[rect(0, 0, 8, 8), rect(56, 40, 8, 8)])
        .unwrap_err();
    assert_eq!(index, 1);
    assert!(matches!(err, RenderError::TileOutside { .. }), "{err}");
}

/// 200 scattered blocks cost the GPU work of one block: one submission (the samples fit
/// one dispatch), one dispatch per pass, one readback.
#[test]
fn two_hundred_blocks_take_one_submission() {
    let (w, h, spp) = (160, 120, 4);
    let s = settings(w, h, spp);
    // 200 of the frame's 20 × 15 blocks, scattered by a stride coprime with 300.
    let grid = tessera_protocol::tile_layout(w, h, 8);
    assert_eq!(grid.len(), 300);
    let rects: Vec<TileRect> = (0..200).map(|i| grid[i * 113 % 300]).collect();
    let scene = scene("cornell-box.glb");
    // (A sample per invocation aiming at fewer threads than 200 blocks have pixels would
    // take more passes than one block: that is what it is asked for.)
    for parallelism in &parallelisms()[..2] {
        let parallelism = *parallelism;
        let r = SceneRenderer::new(gpu(), &scene)
            .unwrap()
            .with_parallelism(parallelism);
        let before = r.gpu_work();
        r.render_tiles(&s, 0, &rects[..1]).unwrap();
        let one = delta(r.gpu_work(), before);
        let before = r.gpu_work();
        let blocks = r.render_tiles(&s, 0, &rects).unwrap();
        let all = delta(r.gpu_work(), before);
        assert_eq!(blocks.len(), 200);
        assert_eq!(all, one, "{parallelism:?}: 200 blocks against one");
        let dispatches = match parallelism {
            Parallelism::PixelPerInvocation => 1,
            Parallelism::SamplePerInvocation { .. } => 2,
        };
        assert_eq!(
            all,
            GpuWork {
                submissions: 1,
                dispatches,
                readbacks: 1
            },
            "{parallelism:?}"
        );
        // Rendered one by one, each block is a submission of its own.
        let before = r.gpu_work();
        for tile in &rects[..10] {
            r.render_tile(&s, 0, *tile).unwrap();
        }
        assert_eq!(delta(r.gpu_work(), before).readbacks, 10);
    }
}

fn delta(after: GpuWork, before: GpuWork) -> GpuWork {
    GpuWork {
        submissions: after.submissions - before.submissions,
        dispatches: after.dispatches - before.dispatches,
        readbacks: after.readbacks - before.readbacks,
    }
}

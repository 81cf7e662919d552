//! Batching a task's tiles: tiles that exactly tile a larger rectangle are rendered as that
//! rectangle in one go (one dispatch per pass instead of one per tile) and cut apart
//! afterwards. Rects that do not make one rectangle (a verifier's scattered 8×8 blocks)
//! are rendered as one list of pixels ([`block_order`]) in one dispatch per pass. A
//! pixel's value does not depend on which other pixels are rendered with it (the
//! renderer's determinism rules), so the bytes are those of rendering each tile alone.

use tessera_protocol::TileRect;

/// Groups of `rects` that each exactly tile one rectangle, with no pixel outside the
/// tiles: (that rectangle, the indices of its tiles). Every index is in exactly one group.
/// Tiles of one band (same `y` and `h`) that touch side by side are joined first, then
/// strips of the same `x` and `w` that touch top to bottom. Overlapping or repeated
/// rectangles are never joined. The groups depend only on `rects` (deterministic).
pub fn merge(rects: &[TileRect]) -> Vec<(TileRect, Vec<usize>)> {
    let mut by_row: Vec<usize> = (0..rects.len()).collect();
    by_row.sort_by_key(|&i| (rects[i].y, rects[i].h, rects[i].x, rects[i].w, i));
    let mut strips: Vec<(TileRect, Vec<usize>)> = Vec::new();
    for i in by_row {
        let r = rects[i];
        match strips.last_mut() {
            Some((s, members))
                if s.y == r.y
                    && s.h == r.h
                    && u64::from(s.x) + u64::from(s.w) == u64::from(r.x) =>
            {
                s.w += r.w;
                members.push(i);
            }
            _ => strips.push((r, vec![i])),
        }
    }
    strips.sort_by_key(|(s, members)| (s.x, s.w, s.y, s.h, members[0]));
    let mut groups: Vec<(TileRect, Vec<usize>)> = Vec::new();
    for (r, members) in strips {
        match groups.last_mut() {
            Some((g, all))
                if g.x == r.x
                    && g.w == r.w
                    && u64::from(g.y) + u64::from(g.h) == u64::from(r.y) =>
            {
                g.h += r.h;
                all.extend(members);
            }
            _ => groups.push((r, members)),
        }
    }
    groups
}

/// The pixels of `tile` out of `pixels`, the row-major pixels of `outer` (which holds
/// `tile`).
pub fn cut<T: Copy>(pixels: &[T], outer: TileRect, tile: TileRect) -> Vec<T> {
    debug_assert!(tile.x >= outer.x && tile.y >= outer.y);
    let mut out = Vec::with_capacity(tile.pixels() as usize);
    for y in tile.y..tile.y + tile.h {
        let start = (y - outer.y) as usize * outer.w as usize + (tile.x - outer.x) as usize;
        out.extend_from_slice(&pixels[start..start + tile.w as usize]);
    }
    out
}

/// The pixels of `rect` (frame coordinates) in the order a pixel list holds them: its
/// 8×8 blocks row by row, each block's pixels row by row, so that the 64 list entries a
/// workgroup of `main` renders are one block of the image wherever the blocks are whole.
pub fn block_order(rect: TileRect) -> impl Iterator<Item = (u32, u32)> {
    const BLOCK: u32 = 8;
    let (cols, rows) = (rect.w.div_ceil(BLOCK), rect.h.div_ceil(BLOCK));
    (0..rows).flat_map(move |by| {
        (0..cols).flat_map(move |bx| {
            let (x0, y0) = (bx * BLOCK, by * BLOCK);
            let (w, h) = (BLOCK.min(rect.w - x0), BLOCK.min(rect.h - y0));
            (0..h).flat_map(move |y| (0..w).map(move |x| (rect.x + x0 + x, rect.y + y0 + y)))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rect(x: u32, y: u32, w: u32, h: u32) -> TileRect {
        TileRect { x, y, w, h }
    }

    /// Every group's rectangle is covered exactly once by its members.
    fn check(rects: &[TileRect], groups: &[(TileRect, Vec<usize>)]) {
        let mut seen = vec![0; rects.len()];
        for (g, members) in groups {
            let area: u64 = members.iter().map(|&i| rects[i].pixels()).sum();
            assert_eq!(area, g.pixels(), "group {g} has gaps or overlaps");
            for &i in members {
                seen[i] += 1;
                let r = rects[i];
                assert!(
                    r.x >= g.x && r.y >= g.y && r.x + r.w <= g.x + g.w && r.y + r.h <= g.y + g.h
                );
                for &j in members {
                    let s = rects[j];
                    let apart = r.x + r.w <= s.x
                        || s.x + s.w <= r.x
                        || r.y + r.h <= s.y
                        || s.y + s.h <= r.y;
                    assert!(i == j || apart, "{r} and {s} overlap in one group");
                }
            }
        }
        assert!(seen.iter().all(|&c| c == 1));
    }

    #[test]
    fn a_run_of_farm_tiles_makes_three_rectangles() {
        // Tiles 3..=8 of a 4×3 grid of 64×64 tiles: the end of row 0, all of row 1, the
        // start of row 2.
        let grid = tessera_protocol::tile_layout(256, 192, 64);
        let run = &grid[3..=8];
        let groups = merge(run);
        check(run, &groups);
        let mut outer: Vec<TileRect> = groups.iter().map(|g| g.0).collect();
        outer.sort_by_key(|r| (r.y, r.x));
        assert_eq!(
            outer,
            [
                rect(192, 0, 64, 64),
                rect(0, 64, 256, 64),
                rect(0, 128, 64, 64)
            ]
        );
        // Whole rows join into one rectangle.
        let rows = merge(&grid[4..]);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].0, rect(0, 64, 256, 128));
    }

    #[test]
    fn repeated_and_overlapping_tiles_stay_apart() {
        let rects = [
            rect(0, 0, 8, 8),
            rect(0, 0, 8, 8),
            rect(4, 0, 8, 8),
            rect(8, 0, 8, 8),
        ];
        let groups = merge(&rects);
        check(&rects, &groups);
        // Sorted by x, each tile's right neighbour is an overlapping one: none is joined.
        assert_eq!(groups.len(), 4);
        let joined = merge(&[rects[0], rects[3]]);
        assert_eq!(joined, [(rect(0, 0, 16, 8), vec![0, 1])]);
    }

    #[test]
    fn cut_takes_the_tile_out_of_its_group() {
        let outer = rect(10, 20, 4, 3);
        let pixels: Vec<u32> = (0..12).collect();
        assert_eq!(cut(&pixels, outer, rect(11, 21, 2, 2)), [5, 6, 9, 10]);
        assert_eq!(cut(&pixels, outer, outer), pixels);
    }

    #[test]
    fn block_order_lists_blocks_row_by_row() {
        let order: Vec<(u32, u32)> = block_order(rect(100, 50, 10, 9)).collect();
        assert_eq!(order.len(), 90);
        // Block (0, 0): 8×8 pixels, row by row.
        assert_eq!(&order[..3], [(100, 50), (101, 50), (102, 50)]);
        assert_eq!(order[8], (100, 51));
        assert_eq!(order[63], (107, 57));
        // Block (1, 0): 2 columns × 8 rows; then (0, 1): 8 × 1; then (1, 1): 2 × 1.
        assert_eq!(&order[64..67], [(108, 50), (109, 50), (108, 51)]);
        assert_eq!(order[80], (100, 58));
        assert_eq!(&order[88..], [(108, 58), (109, 58)]);
        assert_eq!(block_order(rect(3, 4, 1, 1)).collect::<Vec<_>>(), [(3, 4)]);
    }

    proptest! {
        #[test]
        fn block_order_visits_every_pixel_once(
            x in 0u32..100, y in 0u32..100, w in 1u32..40, h in 1u32..40,
        ) {
            let r = rect(x, y, w, h);
            let mut order: Vec<(u32, u32)> = block_order(r).collect();
            order.sort_by_key(|&(x, y)| (y, x));
            let rows: Vec<(u32, u32)> =
                (y..y + h).flat_map(|py| (x..x + w).map(move |px| (px, py))).collect();
            prop_assert_eq!(order, rows);
        }


        #[test]
        fn groups_tile_their_rectangles_exactly(
            size in 1u32..40,
            tile in 1u32..16,
            picks in proptest::collection::vec(any::<proptest::sample::Index>(), 0..24),
        ) {
            let grid = tessera_protocol::tile_layout(size, size + 3, tile);
            let rects: Vec<TileRect> = picks.iter().map(|p| grid[p.index(grid.len())]).collect();
            let groups = merge(&rects);
            check(&rects, &groups);
            prop_assert_eq!(&groups, &merge(&rects));
        }
    }
}

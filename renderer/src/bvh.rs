//! A binned-SAH bounding volume hierarchy, built on the CPU and flattened for the GPU.
//!
//! The build is deterministic: the same triangles give the same nodes and order, byte for
//! byte. Ties are broken by fixed rules (lowest axis, then lowest split plane), partitions
//! are sequential, and the tree depth is capped at [`MAX_DEPTH`] so the shader's fixed
//! traversal stack (64 entries) can never overflow.

use bytemuck::{Pod, Zeroable};

/// A flattened BVH node, laid out as the shader's `Node` (32 bytes).
///
/// Interior node: `count == 0`, children at `left_first` and `left_first + 1`.
/// Leaf: triangles `left_first .. left_first + count` of the reordered triangle array.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub(crate) struct BvhNode {
    pub bmin: [f32; 3],
    pub left_first: u32,
    pub bmax: [f32; 3],
    pub count: u32,
}

/// The built hierarchy: nodes (root at 0) and the triangle order its leaves refer to.
pub(crate) struct Bvh {
    pub nodes: Vec<BvhNode>,
    /// `order[i]` = index of the input triangle stored at position `i`.
    pub order: Vec<u32>,
}

const BINS: usize = 16;
/// Deepest level of the tree (root = 0); the shader's stack holds 64 entries.
pub(crate) const MAX_DEPTH: u32 = 60;
/// A node with at most this many triangles becomes a leaf when splitting does not pay.
const MAX_LEAF: u32 = 8;
/// Cost of one traversal step relative to one triangle test.
const TRAVERSAL_COST: f32 = 1.0;

#[derive(Clone, Copy)]
struct Aabb {
    min: [f32; 3],
    max: [f32; 3],
}

impl Aabb {
    const EMPTY: Aabb = Aabb {
        min: [f32::INFINITY; 3],
        max: [f32::NEG_INFINITY; 3],
    };

    fn grow(&mut self, other: &Aabb) {
        self.min = std::array::from_fn(|k| self.min[k].min(other.min[k]));
        self.max = std::array::from_fn(|k| self.max[k].max(other.max[k]));
    }

    fn grow_point(&mut self, p: [f32; 3]) {
        self.grow(&Aabb { min: p, max: p });
    }

    fn area(&self) -> f32 {
        let d = [
            self.max[0] - self.min[0],
            self.max[1] - self.min[1],
            self.max[2] - self.min[2],
        ];
        if d.iter().any(|&x| x < 0.0) {
            return 0.0;
        }
        d[0] * d[1] + d[1] * d[2] + d[2] * d[0]
    }
}

/// Build a BVH over triangles given by their three vertices.
pub(crate) fn build(triangles: &[[[f32; 3]; 3]]) -> Bvh {
    let n = triangles.len();
    if n == 0 {
        // The shader skips traversal when there are no triangles; one node keeps the
        // buffer non-empty.
        return Bvh {
            nodes: vec![BvhNode {
                bmin: [0.0; 3],
                left_first: 0,
                bmax: [0.0; 3],
                count: 0,
            }],
            order: Vec::new(),
        };
    }
    let boxes: Vec<Aabb> = triangles
        .iter()
        .map(|t| {
            let mut b = Aabb::EMPTY;
            t.iter().for_each(|&p| b.grow_point(p));
            b
        })
        .collect();
    let centroids: Vec<[f32; 3]> = boxes
        .iter()
        .map(|b| {
            [
                0.5 * (b.min[0] + b.max[0]),
                0.5 * (b.min[1] + b.max[1]),
                0.5 * (b.min[2] + b.max[2]),
            ]
        })
        .collect();
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut nodes = Vec::with_capacity(2 * n);
    nodes.push(BvhNode {
        bmin: [0.0; 3],
        left_first: 0,
        bmax: [0.0; 3],
        count: n as u32,
    });
    set_bounds(&mut nodes[0], &order, &boxes);
    let mut stack = vec![(0usize, 0u32)];
    while let Some((node_idx, depth)) = stack.pop() {
        let node = nodes[node_idx];
        let first = node.left_first as usize;
        let count = node.count as usize;
        if count <= 2 || depth >= MAX_DEPTH {
            continue;
        }
        let range = &mut order[first..first + count];
        let Some(left_count) = split(range, &boxes, &centroids, &node) else {
            continue;
        };
        let left_idx = nodes.len();
        let mut left = BvhNode {
            bmin: [0.0; 3],
            left_first: first as u32,
            bmax: [0.0; 3],
            count: left_count as u32,
        };
        let mut right = BvhNode {
            bmin: [0.0; 3],
            left_first: (first + left_count) as u32,
            bmax: [0.0; 3],
            count: (count - left_count) as u32,
        };
        set_bounds(&mut left, &order, &boxes);
        set_bounds(&mut right, &order, &boxes);
        nodes.push(left);
        nodes.push(right);
        nodes[node_idx].left_first = left_idx as u32;
        nodes[node_idx].count = 0;
        stack.push((left_idx + 1, depth + 1));
        stack.push((left_idx, depth + 1));
    }
    Bvh { nodes, order }
}

fn set_bounds(node: &mut BvhNode, order: &[u32], boxes: &[Aabb]) {
    let mut b = Aabb::EMPTY;
    let first = node.left_first as usize;
    for &t in &order[first..first + node.count as usize] {
        b.grow(&boxes[t as usize]);
    }
    node.bmin = b.min;
    node.bmax = b.max;
}

/// Partition `range` in place and return the size of the left part, or `None` to keep
/// the node as a leaf.
#[allow(clippy::needless_range_loop)] // `axis` indexes several arrays at once.
fn split(
    range: &mut [u32],
    boxes: &[Aabb],
    centroids: &[[f32; 3]],
    node: &BvhNode,
) -> Option<usize> {
    let count = range.len();
    let mut cbounds = Aabb::EMPTY;
    for &t in range.iter() {
        cbounds.grow_point(centroids[t as usize]);
    }
    // (cost, axis, plane) of the best split; strict `<` keeps the lowest axis and plane.
    let mut best: Option<(f32, usize, usize)> = None;
    for axis in 0..3 {
        let lo = cbounds.min[axis];
        let extent = cbounds.max[axis] - lo;
        if extent.is_nan() || extent <= 0.0 {
            continue;
        }
        let scale = BINS as f32 / extent;
        let mut bin_boxes = [Aabb::EMPTY; BINS];
        let mut bin_counts = [0u32; BINS];
        for &t in range.iter() {
            let b = bin_of(centroids[t as usize][axis], lo, scale);
            bin_counts[b] += 1;
            bin_boxes[b].grow(&boxes[t as usize]);
        }
        let mut left_area = [0.0f32; BINS - 1];
        let mut left_count = [0u32; BINS - 1];
        let mut acc = Aabb::EMPTY;
        let mut acc_count = 0;
        for i in 0..BINS - 1 {
            acc.grow(&bin_boxes[i]);
            acc_count += bin_counts[i];
            left_area[i] = acc.area();
            left_count[i] = acc_count;
        }
        let mut acc = Aabb::EMPTY;
        let mut acc_count = 0;
        for i in (1..BINS).rev() {
            acc.grow(&bin_boxes[i]);
            acc_count += bin_counts[i];
            let plane = i - 1;
            if left_count[plane] == 0 || acc_count == 0 {
                continue;
            }
            let cost = left_area[plane] * left_count[plane] as f32 + acc.area() * acc_count as f32;
            let better = match best {
                None => true,
                Some((c, a, p)) => cost < c || (cost == c && (axis, plane) < (a, p)),
            };
            if better {
                best = Some((cost, axis, plane));
            }
        }
    }
    let parent_area = Aabb {
        min: node.bmin,
        max: node.bmax,
    }
    .area();
    match best {
        Some((cost, axis, plane)) => {
            let split_cost = TRAVERSAL_COST
                + if parent_area > 0.0 {
                    cost / parent_area
                } else {
                    0.0
                };
            if split_cost >= count as f32 && count as u32 <= MAX_LEAF {
                return None;
            }
            let lo = cbounds.min[axis];
            let scale = BINS as f32 / (cbounds.max[axis] - lo);
            let left = partition(range, |t| {
                bin_of(centroids[t as usize][axis], lo, scale) <= plane
            });
            (left > 0 && left < count).then_some(left)
        }
        None => {
            // All centroids coincide: split by position in the list if the leaf is too big.
            (count as u32 > MAX_LEAF).then_some(count / 2)
        }
    }
}

fn bin_of(c: f32, lo: f32, scale: f32) -> usize {
    (((c - lo) * scale) as usize).min(BINS - 1)
}

/// Deterministic in-place two-pointer partition; returns the size of the left part.
fn partition(range: &mut [u32], goes_left: impl Fn(u32) -> bool) -> usize {
    let mut i = 0;
    let mut j = range.len();
    while i < j {
        if goes_left(range[i]) {
            i += 1;
        } else {
            j -= 1;
            range.swap(i, j);
        }
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(n: usize) -> Vec<[[f32; 3]; 3]> {
        let mut tris = Vec::new();
        for i in 0..n {
            for j in 0..n {
                let (x, y) = (i as f32, j as f32 * 1.3);
                tris.push([[x, y, 0.1 * x], [x + 1.0, y, 0.0], [x, y + 1.0, 0.2 * y]]);
            }
        }
        tris
    }

    #[test]
    fn build_is_deterministic_and_covers_every_triangle() {
        let tris = grid(40);
        let a = build(&tris);
        let b = build(&tris);
        assert_eq!(
            bytemuck::cast_slice::<_, u8>(&a.nodes),
            bytemuck::cast_slice::<_, u8>(&b.nodes)
        );
        assert_eq!(a.order, b.order);
        let mut seen = a.order.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..tris.len() as u32).collect::<Vec<_>>());
        // Every leaf's triangles lie in the leaf's box; leaves cover the array once.
        let mut covered = 0;
        for node in &a.nodes {
            if node.count > 0 {
                covered += node.count;
                for k in node.left_first..node.left_first + node.count {
                    for p in tris[a.order[k as usize] as usize] {
                        for (d, v) in p.iter().enumerate() {
                            assert!(*v >= node.bmin[d] && *v <= node.bmax[d]);
                        }
                    }
                }
            }
        }
        assert_eq!(covered as usize, tris.len());
    }

    #[test]
    fn identical_triangles_still_terminate() {
        let tris = vec![[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]; 1000];
        let bvh = build(&tris);
        assert!(bvh.nodes.len() > 1);
    }

    #[test]
    fn depth_is_capped() {
        // Exponentially spaced triangles make a maximally unbalanced SAH tree.
        let tris: Vec<_> = (0..200)
            .map(|i| {
                let x = 1.5f32.powi(i) * 1e-20;
                [[x, 0.0, 0.0], [x, 1.0, 0.0], [x, 0.0, 1.0]]
            })
            .collect();
        let bvh = build(&tris);
        fn depth(nodes: &[BvhNode], i: usize) -> u32 {
            if nodes[i].count > 0 {
                0
            } else {
                let l = nodes[i].left_first as usize;
                1 + depth(nodes, l).max(depth(nodes, l + 1))
            }
        }
        assert!(depth(&bvh.nodes, 0) <= MAX_DEPTH);
    }
}

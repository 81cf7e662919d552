//! A compressed 4-wide bounding volume hierarchy (BVH4), built on the CPU and flattened
//! for the GPU.
//!
//! The build has three steps:
//! 1. a binned-SAH binary BVH (16 bins per axis; a node becomes a leaf when splitting
//!    does not pay and it holds at most [`MAX_LEAF`] triangles). Below a depth cap that
//!    leaves room for it, nodes are halved by position instead, so every leaf holds at
//!    most [`MAX_LEAF`] triangles and the tree is at most [`STACK_LIMIT`] levels deep;
//! 2. a collapse into 4-wide nodes: a node starts from a binary node's two children and
//!    repeatedly replaces the interior child with the largest surface area (the lowest
//!    slot on a tie) by that child's two children, until it holds four children or none
//!    can be replaced without breaking the stack bound below;
//! 3. an encoding into 48-byte nodes: the four child boxes quantized to 8 bits per plane
//!    on a power-of-two grid anchored at the node's lower corner (as in Ylitie, Karras and
//!    Laine, "Efficient Incoherent Ray Traversal on GPUs Through Compressed Wide BVHs",
//!    HPG 2017, but 4 wide), lower planes rounded down and upper planes up, so a decoded
//!    box always contains the exact one; and, as there, a base node index and a base
//!    triangle index for the whole node with 4 bits per child: empty, interior, or a
//!    leaf's triangle count. A node's interior children are consecutive nodes and its
//!    leaves' triangles consecutive triangles (the final triangle order is made so, node
//!    by node), so a child's index is its base plus the children or triangles of the slots
//!    before it.
//!
//! All steps are deterministic: the same triangles give the same nodes and order, byte for
//! byte. Ties are broken by fixed rules (lowest axis, then lowest split plane; the lowest
//! slot among equally large children), partitions are sequential and nothing runs on
//! another thread.
//!
//! Why this layout: on lavapipe (8 invocations per SIMD instruction) every storage read
//! and every access to the traversal stack is done lane by lane, a couple of dozen
//! instructions per 32-bit word, and that dominates a node visit. A node visit reads 12
//! words for four boxes (the binary BVH read 14 for two, the first 4-wide layout 16 with a
//! 32-bit reference per child) and pushes one word per hit child; on GPUs the same layout
//! cuts the node traffic to 3/8 of the binary BVH's per child.
//!
//! **Stack bound.** The shader's traversal (`trace` in `pathtrace.wgsl`) pushes, at each
//! node, every hit child but the nearest on a fixed stack of [`STACK_SIZE`] entries, and
//! writes one discarded entry past the last one it pushes. So the entries a ray can have
//! on the stack are at most the largest sum of (children − 1) over the nodes of one
//! root-to-leaf path; the collapse keeps that sum at most [`STACK_LIMIT`] (one entry
//! below the stack size): a node only takes a grandchild when the sum would still fit if
//! everything below it stayed binary, which the binary tree's height makes possible.

use bytemuck::{Pod, Zeroable};

/// A 4-wide BVH node, laid out as the shader's `Node` (48 bytes).
///
/// Child slot `k` (0..4) has a 4-bit kind (see [`BvhNode::kinds`]): 0 for an empty slot,
/// [`INTERIOR`] for an interior child, or `count` (1..=[`MAX_LEAF`]) for a leaf of
/// `count` triangles. The interior children are nodes `child, child + 1, …` and the
/// leaves' triangles `triangle, triangle + 1, …` in the final triangle order, both in slot
/// order. Slot `k`'s box on axis `a` is `origin[a] + q * 2^(e_a − 127)` for `q` its lower
/// and upper bytes (byte `k` of `q[2a]` and `q[2a + 1]`) and `e_a` byte `a` of `exponents`
/// (biased, 1..=254). An empty slot's box is inverted (lower 255, upper 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub(crate) struct BvhNode {
    pub origin: [f32; 3],
    /// Bytes 0..3: the grid exponents of x, y and z; bits 24..28 and 28..32: the kinds of
    /// slots 0 and 1.
    pub exponents: u32,
    /// Lower x, upper x, lower y, upper y, lower z, upper z: one byte per slot.
    pub q: [u32; 6],
    /// Bits 0..28: the first interior child's node index; bits 28..32: slot 2's kind.
    pub child: u32,
    /// Bits 0..28: the first triangle of the node's leaves; bits 28..32: slot 3's kind.
    pub triangle: u32,
}

/// The kind of an interior child slot (an empty slot is 0, a leaf its triangle count).
pub(crate) const INTERIOR: u32 = 15;
/// Bits of a node's base node and base triangle indices.
const INDEX_MASK: u32 = (1 << 28) - 1;

#[cfg(test)]
impl BvhNode {
    /// The four slots' kinds: 0 (empty), [`INTERIOR`], or a leaf's triangle count.
    pub fn kinds(&self) -> [u32; 4] {
        [
            self.exponents >> 24 & 15,
            self.exponents >> 28,
            self.child >> 28,
            self.triangle >> 28,
        ]
    }
}

/// Triangles a scene may have: a leaf reference holds the first triangle in 28 bits.
pub(crate) const MAX_TRIANGLES: usize = 1 << 28;

/// Entries of the shader's traversal stack (`STACK_SIZE` in `pathtrace.wgsl`).
pub(crate) const STACK_SIZE: u32 = 64;
/// Most entries a ray's traversal may have pushed at once (see the module docs).
pub(crate) const STACK_LIMIT: u32 = STACK_SIZE - 1;

/// The built hierarchy: 4-wide nodes (root at 0) and the triangle order its leaves refer
/// to.
pub(crate) struct Bvh {
    pub nodes: Vec<BvhNode>,
    /// `order[i]` = index of the input triangle stored at position `i`.
    pub order: Vec<u32>,
    /// The input triangles in the binary tree's leaf order (depth first, left to right),
    /// which does not depend on the node layout: the order in which the scene lists its
    /// emitters, so that light sampling stays the same when only the encoding changes.
    pub leaf_order: Vec<u32>,
}

const BINS: usize = 16;
/// Deepest level of the binary tree (root = 0) where SAH splits are made; see
/// [`sah_depth_cap`].
pub(crate) const MAX_DEPTH: u32 = 60;
/// Most triangles in a leaf: a node with more is always split.
pub(crate) const MAX_LEAF: u32 = 8;
/// Cost of one traversal step relative to one triangle test.
const TRAVERSAL_COST: f32 = 1.0;

#[derive(Clone, Copy, Debug, PartialEq)]
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

/// A node of the intermediate binary tree. Interior: `count == 0`, children at `first`
/// and `first + 1`. Leaf: triangles `first .. first + count` of the reordered array.
#[derive(Clone, Copy)]
struct BinNode {
    bounds: Aabb,
    first: u32,
    count: u32,
}

/// Build a BVH4 over triangles given by their three vertices (at most
/// [`MAX_TRIANGLES`]: the caller refuses more).
pub(crate) fn build(triangles: &[[[f32; 3]; 3]]) -> Bvh {
    debug_assert!(triangles.len() <= MAX_TRIANGLES);
    if triangles.is_empty() {
        // The shader skips traversal when there are no triangles; one node keeps the
        // buffer non-empty.
        return Bvh {
            nodes: vec![encode(&[], 0, 0)],
            order: Vec::new(),
            leaf_order: Vec::new(),
        };
    }
    let (binary, leaf_order) = build_binary(triangles);
    let (nodes, order) = collapse(&binary, &leaf_order);
    Bvh {
        nodes,
        order,
        leaf_order,
    }
}

/// The depth below which a binary tree over `n` triangles is split by position: room for
/// halving the largest node left there down to [`MAX_LEAF`] triangles within
/// [`STACK_LIMIT`] levels.
fn sah_depth_cap(n: usize) -> u32 {
    let leaves = n.div_ceil(MAX_LEAF as usize).max(1);
    let halvings = usize::BITS - (leaves - 1).leading_zeros();
    MAX_DEPTH.min(STACK_LIMIT - halvings)
}

fn build_binary(triangles: &[[[f32; 3]; 3]]) -> (Vec<BinNode>, Vec<u32>) {
    let n = triangles.len();
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
    nodes.push(leaf(&order, &boxes, 0, n));
    let cap = sah_depth_cap(n);
    let mut stack = vec![(0usize, 0u32)];
    while let Some((node_idx, depth)) = stack.pop() {
        let node = nodes[node_idx];
        let first = node.first as usize;
        let count = node.count as usize;
        let range = &mut order[first..first + count];
        let split_at = if depth >= cap || count <= 2 {
            None
        } else {
            split(range, &boxes, &centroids, &node.bounds)
        };
        // A node too big for a leaf is halved by position (past the depth cap, or when all
        // centroids coincide).
        let left_count = match split_at {
            Some(left) => left,
            None if count > MAX_LEAF as usize => count / 2,
            None => continue,
        };
        let left_idx = nodes.len();
        nodes.push(leaf(&order, &boxes, first, left_count));
        nodes.push(leaf(&order, &boxes, first + left_count, count - left_count));
        nodes[node_idx].first = left_idx as u32;
        nodes[node_idx].count = 0;
        stack.push((left_idx + 1, depth + 1));
        stack.push((left_idx, depth + 1));
    }
    (nodes, order)
}

/// A leaf over `order[first .. first + count]`, with its bounds.
fn leaf(order: &[u32], boxes: &[Aabb], first: usize, count: usize) -> BinNode {
    let mut bounds = Aabb::EMPTY;
    for &t in &order[first..first + count] {
        bounds.grow(&boxes[t as usize]);
    }
    BinNode {
        bounds,
        first: first as u32,
        count: count as u32,
    }
}

/// Partition `range` in place and return the size of the left part, or `None` to keep
/// the node as a leaf.
#[allow(clippy::needless_range_loop)] // `axis` indexes several arrays at once.
fn split(
    range: &mut [u32],
    boxes: &[Aabb],
    centroids: &[[f32; 3]],
    bounds: &Aabb,
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
    let parent_area = bounds.area();
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
        // All centroids coincide: the caller splits by position if the leaf is too big.
        None => None,
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

/// Height of every binary node (a leaf is 0): the stack entries its subtree needs when
/// it is traversed as a binary tree, one per interior level.
fn heights(binary: &[BinNode]) -> Vec<u32> {
    let mut height = vec![0u32; binary.len()];
    // Children always come after their parent, so one backward pass sees them first.
    for i in (0..binary.len()).rev() {
        let node = &binary[i];
        if node.count == 0 {
            let l = node.first as usize;
            height[i] = 1 + height[l].max(height[l + 1]);
        }
    }
    height
}

/// A child slot of a 4-wide node before encoding: its box and kind (see [`BvhNode`]).
#[derive(Clone, Copy)]
struct Slot {
    bounds: Aabb,
    kind: u32,
}

/// Collapse the binary tree into 4-wide nodes and encode them, root first and every node
/// before its children, each node's interior children consecutive. Returns the nodes and
/// the final triangle order (input indices): each node's leaves' triangles, consecutive
/// in slot order, node after node; `leaf_order` is the binary tree's.
fn collapse(binary: &[BinNode], leaf_order: &[u32]) -> (Vec<BvhNode>, Vec<u32>) {
    let height = heights(binary);
    debug_assert!(
        height[0] <= STACK_LIMIT,
        "binary tree deeper than the stack"
    );
    let mut nodes = vec![encode(&[], 0, 0)];
    let mut order = Vec::with_capacity(leaf_order.len());
    // (binary node, its 4-wide node, stack entries its subtree may still use).
    let mut work = vec![(0usize, 0usize, STACK_LIMIT)];
    while let Some((bin_idx, node_idx, budget)) = work.pop() {
        let (children, len) = if binary[bin_idx].count > 0 {
            // Only a root can be a leaf here: it becomes a node with one leaf slot.
            ([bin_idx, 0, 0, 0], 1)
        } else {
            widen(binary, &height, bin_idx, budget)
        };
        let child_budget = budget - (len as u32 - 1);
        let first_child = nodes.len();
        let first_triangle = order.len();
        let mut interior = Vec::with_capacity(4);
        let slots: Vec<Slot> = children[..len]
            .iter()
            .map(|&c| {
                let b = &binary[c];
                let kind = if b.count > 0 {
                    debug_assert!((1..=MAX_LEAF).contains(&b.count));
                    let first = b.first as usize;
                    order.extend_from_slice(&leaf_order[first..first + b.count as usize]);
                    b.count
                } else {
                    interior.push(c);
                    INTERIOR
                };
                Slot {
                    bounds: b.bounds,
                    kind,
                }
            })
            .collect();
        nodes[node_idx] = encode(&slots, first_child as u32, first_triangle as u32);
        nodes.resize(first_child + interior.len(), nodes[0]);
        for (i, &c) in interior.iter().enumerate().rev() {
            work.push((c, first_child + i, child_budget));
        }
    }
    (nodes, order)
}

/// The 48-byte node for `slots` (at most 4), whose interior children start at node
/// `child` and whose leaves' triangles start at `triangle`.
fn encode(slots: &[Slot], child: u32, triangle: u32) -> BvhNode {
    debug_assert!(child <= INDEX_MASK && triangle <= INDEX_MASK);
    let mut bounds = Aabb::EMPTY;
    slots.iter().for_each(|s| bounds.grow(&s.bounds));
    let mut node = BvhNode {
        origin: [0.0; 3],
        exponents: 127 | 127 << 8 | 127 << 16,
        // Empty slots: lower 255, upper 0 on every axis (inverted).
        q: [0xffff_ffff, 0, 0xffff_ffff, 0, 0xffff_ffff, 0],
        child,
        triangle,
    };
    if slots.is_empty() {
        return node;
    }
    node.exponents = 0;
    for axis in 0..3 {
        let origin = bounds.min[axis];
        let exponent = grid_exponent(origin, bounds.max[axis]);
        node.origin[axis] = origin;
        node.exponents |= exponent << (8 * axis);
        let step = grid_step(exponent);
        for (k, slot) in slots.iter().enumerate() {
            let (lo, hi) = quantize(origin, step, slot.bounds.min[axis], slot.bounds.max[axis]);
            let shift = 8 * k;
            node.q[2 * axis] = node.q[2 * axis] & !(0xff << shift) | u32::from(lo) << shift;
            node.q[2 * axis + 1] |= u32::from(hi) << shift;
        }
    }
    let kind = |k: usize| slots.get(k).map_or(0, |s| s.kind);
    node.exponents |= kind(0) << 24 | kind(1) << 28;
    node.child |= kind(2) << 28;
    node.triangle |= kind(3) << 28;
    node
}

/// The grid step 2^(exponent − 127) of a biased exponent, exactly.
fn grid_step(exponent: u32) -> f64 {
    f64::from(f32::from_bits(exponent << 23))
}

/// The smallest biased exponent (1..=254) whose grid reaches from `lo` to `hi` in 255
/// steps; 127 when the extent is empty or not finite.
fn grid_exponent(lo: f32, hi: f32) -> u32 {
    let extent = f64::from(hi) - f64::from(lo);
    if !(extent > 0.0 && extent.is_finite()) {
        return 127;
    }
    let reaches = |e: u32| f64::from(lo) + 255.0 * grid_step(e) >= f64::from(hi);
    // A guess from the logarithm, then exact steps to the smallest that reaches.
    let mut e = ((extent / 255.0).log2().ceil() as i64 + 127).clamp(1, 254) as u32;
    while e < 254 && !reaches(e) {
        e += 1;
    }
    while e > 1 && reaches(e - 1) {
        e -= 1;
    }
    e
}

/// Grid bytes (lower rounded down, upper rounded up) of the interval `[lo, hi]` on the
/// grid `origin + q * step`: `origin + lo_q * step <= lo` and `origin + hi_q * step >= hi`
/// exactly (in f64, which holds these sums of f32 values and powers of two exactly).
fn quantize(origin: f32, step: f64, lo: f32, hi: f32) -> (u8, u8) {
    let (origin, lo, hi) = (f64::from(origin), f64::from(lo), f64::from(hi));
    if !(lo.is_finite() && hi.is_finite() && origin.is_finite()) {
        return (0, 255);
    }
    let mut q_lo = ((lo - origin) / step).floor().clamp(0.0, 255.0);
    while q_lo > 0.0 && origin + q_lo * step > lo {
        q_lo -= 1.0;
    }
    let mut q_hi = ((hi - origin) / step).ceil().clamp(0.0, 255.0);
    while q_hi < 255.0 && origin + q_hi * step < hi {
        q_hi += 1.0;
    }
    (q_lo as u8, q_hi as u8)
}

/// The children (binary node indices, in left-to-right order, and how many) of the
/// 4-wide node made from interior binary node `bin_idx`, whose subtree may push `budget`
/// stack entries.
fn widen(binary: &[BinNode], height: &[u32], bin_idx: usize, budget: u32) -> ([usize; 4], usize) {
    let left = binary[bin_idx].first as usize;
    let mut slots = [left, left + 1, 0, 0];
    let mut len = 2;
    // A node pushes (children − 1) entries, and its children's subtrees need at most their
    // heights if they stay binary; `height[bin_idx] <= budget` makes the first two fit.
    while len < 4 {
        // The interior child with the largest surface area (the lowest slot on a tie)
        // among those whose two children still fit.
        let mut best: Option<(usize, f32)> = None;
        for k in 0..len {
            let child = &binary[slots[k]];
            if child.count > 0 {
                continue;
            }
            let grandchild = child.first as usize;
            let others = (0..len).filter(|&j| j != k).map(|j| height[slots[j]]);
            let deepest = others
                .chain([height[grandchild], height[grandchild + 1]])
                .max()
                .unwrap_or(0);
            if len as u32 + deepest > budget {
                continue;
            }
            let area = child.bounds.area();
            if best.is_none_or(|(_, a)| area.total_cmp(&a).is_gt()) {
                best = Some((k, area));
            }
        }
        let Some((k, _)) = best else { break };
        let grandchild = binary[slots[k]].first as usize;
        slots.copy_within(k + 1..len, k + 2);
        slots[k] = grandchild;
        slots[k + 1] = grandchild + 1;
        len += 1;
    }
    (slots, len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The flag of a leaf reference on the shader's traversal stack (`LEAF` there).
    const LEAF: u32 = 1 << 31;

    type Tri = [[f32; 3]; 3];
    type Vec3 = [f32; 3];

    fn grid(n: usize) -> Vec<Tri> {
        let mut tris = Vec::new();
        for i in 0..n {
            for j in 0..n {
                let (x, y) = (i as f32, j as f32 * 1.3);
                tris.push([[x, y, 0.1 * x], [x + 1.0, y, 0.0], [x, y + 1.0, 0.2 * y]]);
            }
        }
        tris
    }

    /// Exponentially spaced triangles make a maximally unbalanced SAH tree.
    fn staircase(n: i32) -> Vec<Tri> {
        (0..n)
            .map(|i| {
                let x = (1.5f64.powi(i) * 1e-20) as f32;
                [[x, 0.0, 0.0], [x, 1.0, 0.0], [x, 0.0, 1.0]]
            })
            .collect()
    }

    fn sub(a: Vec3, b: Vec3) -> Vec3 {
        [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
    }

    fn cross(a: Vec3, b: Vec3) -> Vec3 {
        [
            a[1] * b[2] - a[2] * b[1],
            a[2] * b[0] - a[0] * b[2],
            a[0] * b[1] - a[1] * b[0],
        ]
    }

    fn dot(a: Vec3, b: Vec3) -> f32 {
        a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
    }

    /// Slot `k`'s decoded box, exactly: (lower, upper) per axis.
    fn slot_box(node: &BvhNode, k: usize) -> [(f64, f64); 3] {
        std::array::from_fn(|a| {
            let step = grid_step(node.exponents >> (8 * a) & 0xff);
            let byte = |w: u32| f64::from(w >> (8 * k) & 0xff);
            let origin = f64::from(node.origin[a]);
            (
                origin + byte(node.q[2 * a]) * step,
                origin + byte(node.q[2 * a + 1]) * step,
            )
        })
    }

    /// The slots' references as the shader decodes them and pushes them on its stack: 0
    /// (empty), a node index, or `LEAF | (count − 1) << 28 | first`.
    fn refs(node: &BvhNode) -> [u32; 4] {
        let (mut child, mut triangle) = (node.child & INDEX_MASK, node.triangle & INDEX_MASK);
        node.kinds().map(|kind| match kind {
            0 => 0,
            INTERIOR => {
                child += 1;
                child - 1
            }
            count => {
                triangle += count;
                LEAF | (count - 1) << 28 | (triangle - count)
            }
        })
    }

    fn interior(node: &BvhNode, k: usize) -> bool {
        node.kinds()[k] == INTERIOR
    }

    /// (first triangle, count) of a leaf reference, or (node index, 0).
    fn unpack(reference: u32) -> (u32, u32) {
        if reference & LEAF != 0 {
            (reference & 0x0fff_ffff, (reference >> 28 & 7) + 1)
        } else {
            (reference, 0)
        }
    }

    #[derive(Clone, Copy, Debug, PartialEq)]
    struct Hit {
        t: f32,
        triangle: u32,
    }

    /// The shader's `hit_triangle` (Möller–Trumbore, strict `<` against the closest so
    /// far), without alpha; `tri` is (v0, e1, e2).
    fn hit_triangle(orig: Vec3, dir: Vec3, tri: &Tri, index: u32, hit: &mut Hit) {
        let [v0, e1, e2] = *tri;
        let pvec = cross(dir, e2);
        let det = dot(e1, pvec);
        if det.abs() < 1e-30 {
            return;
        }
        let inv_det = 1.0 / det;
        let tvec = sub(orig, v0);
        let u = dot(tvec, pvec) * inv_det;
        if !(0.0..=1.0).contains(&u) {
            return;
        }
        let qvec = cross(tvec, e1);
        let v = dot(dir, qvec) * inv_det;
        if v < 0.0 || u + v > 1.0 {
            return;
        }
        let t = dot(e2, qvec) * inv_det;
        if t > 0.0 && t < hit.t {
            *hit = Hit { t, triangle: index };
        }
    }

    fn safe_inverse(d: Vec3) -> Vec3 {
        d.map(|x| {
            if x.abs() < 1e-30 {
                if x < 0.0 {
                    -1e30
                } else {
                    1e30
                }
            } else {
                1.0 / x
            }
        })
    }

    /// The shader's `hit_box`: entry distances (clamped at 0) into the node's four child
    /// boxes, `f32::MAX` where the ray misses a box or enters it beyond `tmax`. Same f32
    /// operations, in the same order.
    fn hit_box(orig: Vec3, inv_dir: Vec3, tmax: f32, node: &BvhNode) -> [f32; 4] {
        let mut near = [0.0f32; 4];
        let mut far = [tmax; 4];
        for a in 0..3 {
            let step = f32::from_bits((node.exponents >> (8 * a) & 0xff) << 23);
            let offset = node.origin[a] - orig[a];
            let (n, f) = if inv_dir[a] < 0.0 {
                (node.q[2 * a + 1], node.q[2 * a])
            } else {
                (node.q[2 * a], node.q[2 * a + 1])
            };
            for k in 0..4 {
                let t = |w: u32| ((w >> (8 * k) & 0xff) as f32).mul_add(step, offset) * inv_dir[a];
                near[k] = near[k].max(t(n));
                far[k] = far[k].min(t(f));
            }
        }
        std::array::from_fn(|k| {
            if node.kinds()[k] != 0 && near[k] <= far[k] {
                near[k]
            } else {
                f32::MAX
            }
        })
    }

    /// The shader's `trace` on the CPU: nearest hit child first (children sorted by entry
    /// distance, the lower slot on a tie), the others pushed far to near. Returns the hit
    /// (`t = tmax`, `triangle = u32::MAX` when none) and the most stack entries used.
    /// `tris` are in BVH order, as (v0, e1, e2).
    fn trace(bvh: &Bvh, tris: &[Tri], orig: Vec3, dir: Vec3, tmax: f32) -> (Hit, u32) {
        let mut hit = Hit {
            t: tmax,
            triangle: u32::MAX,
        };
        let mut most = 0;
        if tris.is_empty() {
            return (hit, most);
        }
        let inv_dir = safe_inverse(dir);
        let mut stack: Vec<u32> = Vec::new();
        let mut current = 0u32;
        loop {
            let (a, b) = unpack(current);
            if b > 0 {
                for tri in a..a + b {
                    hit_triangle(orig, dir, &tris[tri as usize], tri, &mut hit);
                }
            } else {
                let node = &bvh.nodes[a as usize];
                let d = hit_box(orig, inv_dir, hit.t, node);
                let mut kids: Vec<(f32, u32)> = (0..4)
                    .filter(|&k| d[k] < f32::MAX)
                    .map(|k| (d[k], refs(node)[k]))
                    .collect();
                // Stable: equal distances keep slot order.
                kids.sort_by(|x, y| x.0.total_cmp(&y.0));
                if let Some((&(_, nearest), farther)) = kids.split_first() {
                    stack.extend(farther.iter().rev().map(|&(_, r)| r));
                    most = most.max(stack.len() as u32);
                    current = nearest;
                    continue;
                }
            }
            match stack.pop() {
                Some(r) => current = r,
                None => break,
            }
        }
        (hit, most)
    }

    fn brute_force(tris: &[Tri], orig: Vec3, dir: Vec3, tmax: f32) -> Hit {
        let mut hit = Hit {
            t: tmax,
            triangle: u32::MAX,
        };
        for (i, tri) in tris.iter().enumerate() {
            hit_triangle(orig, dir, tri, i as u32, &mut hit);
        }
        hit
    }

    /// Triangles as (v0, e1, e2), like the scene's GPU arrays.
    fn edges(tris: &[Tri]) -> Vec<Tri> {
        tris.iter()
            .map(|&[a, b, c]| [a, sub(b, a), sub(c, a)])
            .collect()
    }

    /// `tris` in BVH order, as (v0, e1, e2).
    fn gpu_triangles(bvh: &Bvh, tris: &[Tri]) -> Vec<Tri> {
        edges(
            &bvh.order
                .iter()
                .map(|&i| tris[i as usize])
                .collect::<Vec<_>>(),
        )
    }

    /// Walk the tree and check its invariants: every node reached once, every slot's
    /// decoded box contains every vertex of its subtree, every triangle in exactly one
    /// leaf, the stack bound. Returns (4-wide depth, worst stack use by the bound's rule).
    fn check_tree(bvh: &Bvh, tris: &[Tri]) -> (u32, u32) {
        struct Walk<'a> {
            bvh: &'a Bvh,
            tris: &'a [Tri],
            seen_tri: Vec<u32>,
            seen_node: Vec<u32>,
        }
        impl Walk<'_> {
            /// Visit node `n`, checking every vertex below it against each box in
            /// `outer`; returns (depth, stack need).
            fn node(&mut self, n: usize, outer: &mut Vec<[(f64, f64); 3]>) -> (u32, u32) {
                self.seen_node[n] += 1;
                let node = self.bvh.nodes[n];
                let (mut depth, mut need, mut used) = (0, 0, 0u32);
                for k in 0..4 {
                    let (a, b) = unpack(refs(&node)[k]);
                    outer.push(slot_box(&node, k));
                    if interior(&node, k) {
                        used += 1;
                        assert!(a as usize > n, "children come after their parent");
                        let (d, s) = self.node(a as usize, outer);
                        depth = depth.max(d);
                        need = need.max(s);
                    } else if node.kinds()[k] != 0 {
                        used += 1;
                        assert!((1..=MAX_LEAF).contains(&b));
                        for i in a..a + b {
                            self.seen_tri[i as usize] += 1;
                            for p in self.tris[self.bvh.order[i as usize] as usize] {
                                for bx in outer.iter() {
                                    assert!(
                                        (0..3).all(|d| {
                                            bx[d].0 <= f64::from(p[d]) && f64::from(p[d]) <= bx[d].1
                                        }),
                                        "a vertex of triangle {i} lies outside a box above it"
                                    );
                                }
                            }
                        }
                    } else {
                        // An empty slot is inverted on every axis; the used slots come first.
                        assert!(node.kinds()[k..].iter().all(|&r| r == 0));
                        assert!(outer.last().unwrap().iter().all(|&(lo, hi)| lo > hi));
                    }
                    outer.pop();
                }
                assert!(used >= 1, "node {n} has a child");
                (depth + 1, need + used - 1)
            }
        }
        let mut walk = Walk {
            bvh,
            tris,
            seen_tri: vec![0; tris.len()],
            seen_node: vec![0; bvh.nodes.len()],
        };
        let (depth, need) = walk.node(0, &mut Vec::new());
        assert!(
            walk.seen_tri.iter().all(|&c| c == 1),
            "every triangle exactly once"
        );
        assert!(
            walk.seen_node.iter().all(|&c| c == 1),
            "every node reached exactly once"
        );
        let mut sorted = bvh.order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..tris.len() as u32).collect::<Vec<_>>());
        assert!(need <= STACK_LIMIT, "stack need {need} above {STACK_LIMIT}");
        (depth, need)
    }

    #[test]
    fn node_is_48_bytes() {
        assert_eq!(std::mem::size_of::<BvhNode>(), 48);
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
        let (depth, _) = check_tree(&a, &tris);
        // 1600 triangles in leaves of a few: a balanced 4-wide tree is about 5 deep.
        assert!(depth <= 8, "depth {depth}");
        // The collapse fills nodes: a node has an empty slot only when all its children
        // are leaves (the stack bound is far here).
        for (i, node) in a.nodes.iter().enumerate() {
            let used = node.kinds().iter().filter(|&&r| r != 0).count();
            assert!(
                used == 4 || !(0..4).any(|k| interior(node, k)),
                "node {i} could be wider"
            );
        }
    }

    #[test]
    fn quantized_boxes_are_conservative_and_tight() {
        // Lower planes round down, upper planes up, by less than one grid step.
        for (origin, hi) in [
            (0.0f32, 1.0f32),
            (-3.7, 1e-3),
            (1e20, 3e20),
            (5.0, 5.0),
            (-1e-30, 0.0),
        ] {
            let e = grid_exponent(origin, hi);
            let step = grid_step(e);
            assert!(f64::from(origin) + 255.0 * step >= f64::from(hi));
            if e > 1 && hi > origin {
                assert!(f64::from(origin) + 255.0 * grid_step(e - 1) < f64::from(hi));
            }
            for f in [0.0, 0.1, 0.37, 0.5, 0.999, 1.0] {
                let lo = origin + (hi - origin) * f;
                let (q_lo, q_hi) = quantize(origin, step, lo, hi);
                let decoded_lo = f64::from(origin) + f64::from(q_lo) * step;
                let decoded_hi = f64::from(origin) + f64::from(q_hi) * step;
                assert!(decoded_lo <= f64::from(lo) && f64::from(lo) - decoded_lo < step);
                assert!(decoded_hi >= f64::from(hi) && decoded_hi - f64::from(hi) < step);
            }
        }
    }

    #[test]
    fn tiny_and_empty_scenes() {
        let empty = build(&[]);
        assert_eq!(empty.nodes.len(), 1);
        assert!(empty.order.is_empty());
        let one = [[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]];
        let bvh = build(&one);
        check_tree(&bvh, &one);
        assert_eq!(bvh.nodes.len(), 1);
        assert_eq!(refs(&bvh.nodes[0]), [LEAF, 0, 0, 0]);
        let gpu = gpu_triangles(&bvh, &one);
        let (hit, _) = trace(&bvh, &gpu, [0.2, 0.2, 1.0], [0.0, 0.0, -1.0], f32::MAX);
        assert_eq!(
            hit,
            Hit {
                t: 1.0,
                triangle: 0
            }
        );
    }

    #[test]
    fn identical_triangles_still_terminate() {
        let tris = vec![[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]; 1000];
        let bvh = build(&tris);
        assert!(bvh.nodes.len() > 1);
        check_tree(&bvh, &tris);
    }

    #[test]
    fn depth_and_stack_are_capped() {
        let tris = staircase(200);
        let bvh = build(&tris);
        let (depth, need) = check_tree(&bvh, &tris);
        assert!(depth <= MAX_DEPTH, "depth {depth}");
        assert!(need <= STACK_LIMIT, "need {need}");
        // Rays along the staircase reach the deepest leaves; none uses more stack than
        // the bound allows.
        let gpu = gpu_triangles(&bvh, &tris);
        let brute = edges(&tris);
        for i in 0..50 {
            let orig = [-1.0, 0.01 + 0.019 * i as f32, 0.01];
            let (hit, most) = trace(&bvh, &gpu, orig, [1.0, 0.0, 0.0], f32::MAX);
            assert!(most <= need, "used {most} of {need}");
            assert_eq!(
                hit.t,
                brute_force(&brute, orig, [1.0, 0.0, 0.0], f32::MAX).t
            );
        }
    }

    #[test]
    fn collapse_keeps_the_stack_bound_where_it_binds() {
        // Deep staircases beside large leaves: the widest collapse would pull the large
        // leaves up beside every step and push 3 entries per binary level.
        let mut tris = staircase(300);
        for i in 0..300 {
            let x = (1.5f64.powi(i) * 1e-20) as f32;
            tris.push([[x, 5.0, -5.0], [x * 1.2, 9.0, 5.0], [x, 5.0, 5.0]]);
        }
        let bvh = build(&tris);
        let (_, need) = check_tree(&bvh, &tris);
        assert!(need <= STACK_LIMIT);
    }

    #[test]
    fn leaves_stay_small_past_the_depth_cap() {
        // 120 exponentially spaced steps of 30 identical triangles: the SAH peels one
        // step per level, deeper than the cap leaves room for, and identical centroids
        // cannot be split by SAH at all.
        let mut tris = Vec::new();
        for step in staircase(120) {
            tris.extend(std::iter::repeat_n(step, 30));
        }
        assert!(sah_depth_cap(tris.len()) < 120);
        let bvh = build(&tris);
        check_tree(&bvh, &tris);
        let gpu = gpu_triangles(&bvh, &tris);
        let brute = edges(&tris);
        for i in 0..40 {
            let orig = [-1.0, 0.02 + 0.024 * i as f32, 0.01];
            let (hit, _) = trace(&bvh, &gpu, orig, [1.0, 0.0, 0.0], f32::MAX);
            assert_eq!(
                hit.t,
                brute_force(&brute, orig, [1.0, 0.0, 0.0], f32::MAX).t
            );
        }
    }

    #[test]
    fn depth_cap_leaves_room_to_halve() {
        for n in [1, 7, 8, 9, 1000, 2_200_000, 20_000_000, MAX_TRIANGLES] {
            let cap = sah_depth_cap(n);
            // Halving n triangles `STACK_LIMIT - cap` times reaches MAX_LEAF.
            let levels = STACK_LIMIT - cap;
            assert!(
                (n as f64) / 2f64.powi(levels as i32) <= f64::from(MAX_LEAF),
                "{n}"
            );
            assert!(cap >= 30, "{n}: cap {cap}");
        }
    }

    #[test]
    fn non_finite_positions_do_not_panic() {
        let mut tris = grid(6);
        tris.push([[f32::INFINITY, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);
        tris.push([
            [f32::NAN, 0.0, 0.0],
            [0.0, f32::NEG_INFINITY, 0.0],
            [0.0, 0.0, 1.0],
        ]);
        let a = build(&tris);
        let b = build(&tris);
        assert_eq!(
            bytemuck::cast_slice::<_, u8>(&a.nodes),
            bytemuck::cast_slice::<_, u8>(&b.nodes)
        );
        let mut sorted = a.order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..tris.len() as u32).collect::<Vec<_>>());
    }

    #[test]
    fn traversal_matches_brute_force_on_a_grid() {
        let tris = grid(30);
        let bvh = build(&tris);
        let gpu = gpu_triangles(&bvh, &tris);
        let brute = edges(&tris);
        for i in 0..400 {
            let f = i as f32;
            let orig = [
                15.0 + (f * 0.37).sin() * 20.0,
                19.0 + (f * 0.71).cos() * 25.0,
                8.0,
            ];
            let dir = [(f * 1.3).sin() * 0.5, (f * 0.9).cos() * 0.5, -1.0];
            let (hit, _) = trace(&bvh, &gpu, orig, dir, f32::MAX);
            let want = brute_force(&brute, orig, dir, f32::MAX);
            assert_eq!(hit.t, want.t, "ray {i}");
            if want.triangle != u32::MAX {
                assert_eq!(bvh.order[hit.triangle as usize], want.triangle, "ray {i}");
            }
        }
    }

    fn point() -> impl Strategy<Value = Vec3> {
        [-10.0f32..10.0, -10.0f32..10.0, -10.0f32..10.0]
    }

    /// Random soups: mostly small triangles, some large, some repeated or degenerate.
    fn soup() -> impl Strategy<Value = Vec<Tri>> {
        prop::collection::vec((point(), point(), point(), 0u8..8), 1..300).prop_map(|raw| {
            let mut tris: Vec<Tri> = Vec::with_capacity(raw.len());
            for (a, b, c, kind) in raw {
                let near = |p: Vec3| [a[0] + p[0] * 0.1, a[1] + p[1] * 0.1, a[2] + p[2] * 0.1];
                let tri = match kind {
                    0..=4 => [a, near(b), near(c)],
                    5 => [a, b, c],
                    // A copy of the previous triangle, or a degenerate one.
                    6 => tris.last().copied().unwrap_or([a, b, c]),
                    _ => [a, a, b],
                };
                tris.push(tri);
            }
            tris
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn closest_hit_equals_brute_force(
            tris in soup(),
            rays in prop::collection::vec((point(), point(), 0u8..4), 64),
        ) {
            let bvh = build(&tris);
            check_tree(&bvh, &tris);
            let gpu = gpu_triangles(&bvh, &tris);
            let brute = edges(&tris);
            for (orig, target, kind) in rays {
                let mut dir = sub(target, orig);
                if kind == 0 {
                    // Axis-parallel rays exercise safe_inverse's large values.
                    dir = [dir[0], 0.0, 0.0];
                }
                let tmax = if kind == 1 { 6.0 } else { f32::MAX };
                let (hit, most) = trace(&bvh, &gpu, orig, dir, tmax);
                let want = brute_force(&brute, orig, dir, tmax);
                prop_assert!(most <= STACK_LIMIT);
                prop_assert_eq!(hit.t, want.t);
                if want.triangle == u32::MAX {
                    prop_assert_eq!(hit.triangle, u32::MAX);
                } else {
                    // An equally near triangle may win instead; it must be as near.
                    let found = bvh.order[hit.triangle as usize] as usize;
                    let mut again = Hit { t: f32::MAX, triangle: u32::MAX };
                    hit_triangle(orig, dir, &brute[found], found as u32, &mut again);
                    prop_assert_eq!(again.t, want.t);
                }
            }
        }

        #[test]
        fn build_is_deterministic(tris in soup()) {
            let a = build(&tris);
            let b = build(&tris);
            prop_assert_eq!(
                bytemuck::cast_slice::<_, u8>(&a.nodes),
                bytemuck::cast_slice::<_, u8>(&b.nodes)
            );
            prop_assert_eq!(a.order, b.order);
        }
    }
}

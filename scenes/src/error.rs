//! Errors raised while building a scene: every message names the item and the value.

/// Why a [`crate::SceneBuilder`] refused an item.
///
/// Items are checked when they are added, so a builder only ever holds a valid
/// glTF document and [`crate::SceneBuilder::to_glb`] cannot fail.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SceneError {
    /// A mesh has no vertices or no triangles.
    #[error("mesh {mesh:?}: empty ({positions} positions, {indices} indices)")]
    EmptyMesh {
        /// Mesh name.
        mesh: String,
        /// Number of positions given.
        positions: usize,
        /// Number of indices given.
        indices: usize,
    },
    /// The index count is not a multiple of three (triangle lists only).
    #[error("mesh {mesh:?}: index count {count} is not a multiple of 3")]
    IndexCount {
        /// Mesh name.
        mesh: String,
        /// Number of indices given.
        count: usize,
    },
    /// An index points past the last vertex.
    #[error("mesh {mesh:?}: index {index} at position {at} is out of range (vertex count {vertex_count})")]
    IndexOutOfRange {
        /// Mesh name.
        mesh: String,
        /// The offending index value.
        index: u32,
        /// Where in the index list it is.
        at: usize,
        /// Number of vertices in the mesh.
        vertex_count: usize,
    },
    /// More vertices than a 32-bit index can address.
    #[error("mesh {mesh:?}: {vertex_count} vertices exceed the 32-bit index limit")]
    TooManyVertices {
        /// Mesh name.
        mesh: String,
        /// Number of vertices given.
        vertex_count: usize,
    },
    /// The normal count differs from the position count.
    #[error("mesh {mesh:?}: {normals} normals for {positions} positions")]
    NormalCount {
        /// Mesh name.
        mesh: String,
        /// Number of normals given.
        normals: usize,
        /// Number of positions given.
        positions: usize,
    },
    /// A normal has zero (or non-finite) length and cannot be normalised.
    #[error("mesh {mesh:?}: normal {at} has zero length")]
    ZeroNormal {
        /// Mesh name.
        mesh: String,
        /// Index of the normal.
        at: usize,
    },
    /// A number that must be finite is NaN or infinite.
    #[error("{what}: value {value} is not finite")]
    NotFinite {
        /// Which field, e.g. `mesh "floor" position 3`.
        what: String,
        /// The offending value.
        value: f32,
    },
    /// A number lies outside the range the glTF specification allows.
    #[error("{what}: value {value} is outside {range}")]
    OutOfRange {
        /// Which field, e.g. `material "red" baseColorFactor[0]`.
        what: String,
        /// The offending value.
        value: f32,
        /// The allowed range, in words.
        range: &'static str,
    },
    /// A sampler's magFilter is a mipmap mode (glTF allows those for minification only).
    #[error("sampler {sampler:?}: magFilter LINEAR_MIPMAP_LINEAR is a minification filter")]
    MipmapMagFilter {
        /// The sampler's name.
        sampler: String,
    },
    /// An id does not belong to this builder.
    #[error("unknown {kind} id {index}")]
    UnknownId {
        /// `mesh`, `material`, `camera`, `light` or `node`.
        kind: &'static str,
        /// The index carried by the id.
        index: usize,
    },
    /// A node was given a second parent (glTF nodes form a forest).
    #[error("node {node} already has a parent (node {parent})")]
    SecondParent {
        /// Index of the child node.
        node: usize,
        /// Index of the parent it already has.
        parent: usize,
    },
    /// A scene root is a child of another node.
    #[error("scene {scene:?}: root node {node} is a child of node {parent}")]
    RootHasParent {
        /// Scene name.
        scene: String,
        /// Index of the root node.
        node: usize,
        /// Index of its parent.
        parent: usize,
    },
    /// A vertex attribute's count differs from the position count.
    #[error("mesh {mesh:?}: {count} {attribute} values for {positions} positions")]
    AttributeCount {
        /// Mesh name.
        mesh: String,
        /// `TANGENT`, `TEXCOORD_0` or `TEXCOORD_1`.
        attribute: &'static str,
        /// Number of values given.
        count: usize,
        /// Number of positions given.
        positions: usize,
    },
    /// A vertex attribute that something else needs is missing.
    #[error("mesh {mesh:?}: no {attribute}, which {needed_by} needs")]
    MissingAttribute {
        /// Mesh name.
        mesh: String,
        /// The missing attribute, e.g. `TEXCOORD_1`.
        attribute: &'static str,
        /// What needs it, e.g. `material 3` or `TANGENT`.
        needed_by: String,
    },
    /// A mesh variant lists a different number of materials than its source has primitives.
    #[error("mesh {mesh:?}: {materials} materials for {primitives} primitives")]
    PrimitiveCount {
        /// Name of the new mesh.
        mesh: String,
        /// Number of materials given.
        materials: usize,
        /// Number of primitives of the source mesh.
        primitives: usize,
    },
    /// Image bytes that should be a PNG file are not.
    #[error("image {image:?}: not a PNG file (bad signature)")]
    NotPng {
        /// Image name.
        image: String,
    },
    /// A file URI that is not a plain relative path, or is used twice.
    #[error("file uri {uri:?}: not a unique relative path of [A-Za-z0-9-._/]")]
    BadUri {
        /// The URI given.
        uri: String,
    },
    /// An animation channel is malformed.
    #[error("animation {animation:?} channel {channel}: {reason}")]
    InvalidAnimation {
        /// Animation name.
        animation: String,
        /// Index of the channel.
        channel: usize,
        /// What is wrong, with the value.
        reason: String,
    },
    /// The binary buffer would exceed the 4 GiB that a GLB container can address.
    #[error("binary buffer would grow to {bytes} bytes, over the GLB limit of 4 GiB")]
    BufferTooLarge {
        /// The size it would have reached.
        bytes: u64,
    },
}

//! Reading glTF accessors from loaded buffers with every offset and length checked.
//!
//! The `gltf` crate's readers assume well-formed input (they may panic on odd strides);
//! this reader returns an error naming the accessor instead.

use gltf::json::accessor::{ComponentType, Type};
use gltf::json::validation::Checked;
use gltf::json::Root;

/// Why an accessor cannot be read; every variant names the accessor (or buffer view) and
/// the values at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AccessorError {
    /// The accessor index names no accessor.
    #[error("accessor {accessor} does not exist")]
    Missing {
        /// The accessor index.
        accessor: usize,
    },
    /// A buffer view index names no buffer view.
    #[error("bufferView {view} does not exist")]
    MissingView {
        /// The buffer view index.
        view: usize,
    },
    /// A buffer view names no buffer.
    #[error("bufferViews[{view}].buffer {buffer} does not exist")]
    MissingBuffer {
        /// The buffer view index.
        view: usize,
        /// The buffer index it names.
        buffer: usize,
    },
    /// A buffer view lies (partly) outside its buffer's data.
    #[error(
        "bufferViews[{view}] (offset {offset}, length {length}) lies outside buffers[{buffer}] \
         of {buffer_len} bytes"
    )]
    ViewOutside {
        /// The buffer view index.
        view: usize,
        /// Its byte offset.
        offset: u64,
        /// Its byte length.
        length: u64,
        /// The buffer it names.
        buffer: usize,
        /// The buffer's real length.
        buffer_len: usize,
    },
    /// The type or component type did not validate.
    #[error("accessors[{accessor}] has an invalid type or componentType")]
    InvalidType {
        /// The accessor index.
        accessor: usize,
    },
    /// A type or component type the caller does not accept.
    #[error(
        "accessors[{accessor}] is {found_type:?} of {found_component:?}; expected \
         {allowed_type:?} of {allowed_components:?}"
    )]
    WrongType {
        /// The accessor index.
        accessor: usize,
        /// Its type.
        found_type: Type,
        /// Its component type.
        found_component: ComponentType,
        /// The type accepted.
        allowed_type: Type,
        /// The component types accepted.
        allowed_components: Vec<ComponentType>,
    },
    /// More elements than the caller's bound.
    #[error("accessors[{accessor}].count {count} exceeds the limit of {limit}")]
    TooMany {
        /// The accessor index.
        accessor: usize,
        /// Its element count.
        count: u64,
        /// The bound.
        limit: u64,
    },
    /// More elements than the animation keyframe budget has left.
    #[error(
        "accessors[{accessor}] has {count} elements; all animation samplers together may \
         read at most {limit}"
    )]
    KeyframeBudget {
        /// The accessor index.
        accessor: usize,
        /// Its element count.
        count: u64,
        /// The budget of all samplers together.
        limit: u64,
    },
    /// The byte stride is smaller than one element.
    #[error(
        "accessors[{accessor}]: byteStride {stride} is smaller than the element size {element}"
    )]
    StrideTooSmall {
        /// The accessor index.
        accessor: usize,
        /// The view's byte stride.
        stride: usize,
        /// Bytes per element.
        element: usize,
    },
    /// The elements would be read past the end of their buffer view.
    #[error(
        "accessors[{accessor}] ({count} elements, offset {offset}, stride {stride}) reads past \
         the end of bufferViews[{view}] ({view_len} bytes)"
    )]
    OutOfBounds {
        /// The accessor index.
        accessor: usize,
        /// Its element count.
        count: usize,
        /// Its byte offset in the view.
        offset: u64,
        /// The byte stride.
        stride: usize,
        /// The buffer view index.
        view: usize,
        /// The view's length in bytes.
        view_len: usize,
    },
    /// More sparse substitutions than elements.
    #[error("accessors[{accessor}].sparse.count {sparse} exceeds count {count}")]
    SparseCount {
        /// The accessor index.
        accessor: usize,
        /// The sparse count.
        sparse: u64,
        /// The element count.
        count: usize,
    },
    /// The sparse indices' component type did not validate.
    #[error("accessors[{accessor}].sparse.indices has an invalid componentType")]
    SparseIndexType {
        /// The accessor index.
        accessor: usize,
    },
    /// The sparse indices or values would be read past the end of their views.
    #[error("accessors[{accessor}].sparse reads past the end of its buffer views")]
    SparseOutOfBounds {
        /// The accessor index.
        accessor: usize,
    },
    /// A sparse index names no element.
    #[error(
        "accessors[{accessor}].sparse.indices[{position}] = {target} is out of range ({count} \
         elements)"
    )]
    SparseIndex {
        /// The accessor index.
        accessor: usize,
        /// The position in the sparse indices.
        position: usize,
        /// The element index found there.
        target: usize,
        /// The element count.
        count: usize,
    },
}

/// Decoded accessor elements, each widened to f64 (integers exactly).
pub(crate) struct Elements {
    /// Components per element (1 for SCALAR … 16 for MAT4).
    #[allow(dead_code)]
    pub components: usize,
    pub values: Vec<f64>,
}

fn component_size(ty: ComponentType) -> usize {
    match ty {
        ComponentType::I8 | ComponentType::U8 => 1,
        ComponentType::I16 | ComponentType::U16 => 2,
        ComponentType::U32 | ComponentType::F32 => 4,
    }
}

fn components_of(ty: Type) -> usize {
    match ty {
        Type::Scalar => 1,
        Type::Vec2 => 2,
        Type::Vec3 => 3,
        Type::Vec4 | Type::Mat2 => 4,
        Type::Mat3 => 9,
        Type::Mat4 => 16,
    }
}

fn read_component(bytes: &[u8], ty: ComponentType) -> f64 {
    match ty {
        ComponentType::I8 => f64::from(bytes[0] as i8),
        ComponentType::U8 => f64::from(bytes[0]),
        ComponentType::I16 => f64::from(i16::from_le_bytes([bytes[0], bytes[1]])),
        ComponentType::U16 => f64::from(u16::from_le_bytes([bytes[0], bytes[1]])),
        ComponentType::U32 => {
            f64::from(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
        }
        ComponentType::F32 => {
            f64::from(f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
        }
    }
}

/// The bytes of buffer view `view_idx`, checked against its buffer's real data.
fn view_bytes<'b>(
    root: &Root,
    buffers: &'b [Vec<u8>],
    view_idx: usize,
) -> Result<(&'b [u8], Option<usize>), AccessorError> {
    let view = root
        .buffer_views
        .get(view_idx)
        .ok_or(AccessorError::MissingView { view: view_idx })?;
    let buffer = buffers
        .get(view.buffer.value())
        .ok_or(AccessorError::MissingBuffer {
            view: view_idx,
            buffer: view.buffer.value(),
        })?;
    let offset = view.byte_offset.map_or(0, |o| o.0);
    let end = offset.checked_add(view.byte_length.0);
    match end {
        Some(end) if end <= buffer.len() as u64 => Ok((
            &buffer[offset as usize..end as usize],
            view.byte_stride.map(|s| s.0),
        )),
        _ => Err(AccessorError::ViewOutside {
            view: view_idx,
            offset,
            length: view.byte_length.0,
            buffer: view.buffer.value(),
            buffer_len: buffer.len(),
        }),
    }
}

/// Read accessor `idx` whole (dense data, then sparse substitutions). `allowed` lists the
/// accepted (type, component types); anything else is an error naming what was found.
pub(crate) fn read(
    root: &Root,
    buffers: &[Vec<u8>],
    idx: usize,
    allowed_type: Type,
    allowed_components: &[ComponentType],
    max_count: u64,
) -> Result<Elements, AccessorError> {
    let acc = root
        .accessors
        .get(idx)
        .ok_or(AccessorError::Missing { accessor: idx })?;
    let (Checked::Valid(ty), Checked::Valid(ct)) = (acc.type_, acc.component_type) else {
        return Err(AccessorError::InvalidType { accessor: idx });
    };
    let ct = ct.0;
    if ty != allowed_type || !allowed_components.contains(&ct) {
        return Err(AccessorError::WrongType {
            accessor: idx,
            found_type: ty,
            found_component: ct,
            allowed_type,
            allowed_components: allowed_components.to_vec(),
        });
    }
    let count = acc.count.0;
    if count > max_count {
        return Err(AccessorError::TooMany {
            accessor: idx,
            count,
            limit: max_count,
        });
    }
    let count = count as usize;
    let components = components_of(ty);
    let csize = component_size(ct);
    let elem_size = components * csize;
    // The data is checked to lie inside its view before anything is allocated for it.
    let dense = match acc.buffer_view {
        Some(view_idx) => {
            let (bytes, stride) = view_bytes(root, buffers, view_idx.value())?;
            let stride = stride.unwrap_or(elem_size);
            if stride < elem_size {
                return Err(AccessorError::StrideTooSmall {
                    accessor: idx,
                    stride,
                    element: elem_size,
                });
            }
            let offset = acc.byte_offset.map_or(0, |o| o.0);
            if count > 0 {
                let needed = (count as u64 - 1)
                    .checked_mul(stride as u64)
                    .and_then(|v| v.checked_add(offset))
                    .and_then(|v| v.checked_add(elem_size as u64));
                if needed.is_none_or(|n| n > bytes.len() as u64) {
                    return Err(AccessorError::OutOfBounds {
                        accessor: idx,
                        count,
                        offset,
                        stride,
                        view: view_idx.value(),
                        view_len: bytes.len(),
                    });
                }
            }
            Some((bytes, stride, offset as usize))
        }
        None => None,
    };
    let mut values = vec![0.0f64; count * components];
    if let Some((bytes, stride, offset)) = dense {
        for (i, out) in values.chunks_exact_mut(components).enumerate() {
            let base = offset + i * stride;
            for (c, value) in out.iter_mut().enumerate() {
                *value = read_component(&bytes[base + c * csize..], ct);
            }
        }
    }
    if let Some(sparse) = &acc.sparse {
        let n = sparse.count.0 as usize;
        if sparse.count.0 > acc.count.0 {
            return Err(AccessorError::SparseCount {
                accessor: idx,
                sparse: sparse.count.0,
                count,
            });
        }
        let Checked::Valid(index_ct) = sparse.indices.component_type else {
            return Err(AccessorError::SparseIndexType { accessor: idx });
        };
        let index_ct = index_ct.0;
        let isize = component_size(index_ct);
        let (ibytes, _) = view_bytes(root, buffers, sparse.indices.buffer_view.value())?;
        let ioff = sparse.indices.byte_offset.0 as usize;
        let (vbytes, _) = view_bytes(root, buffers, sparse.values.buffer_view.value())?;
        let voff = sparse.values.byte_offset.0 as usize;
        let ineeded = ioff.checked_add(n.saturating_mul(isize));
        let vneeded = voff.checked_add(n.saturating_mul(elem_size));
        if ineeded.is_none_or(|e| e > ibytes.len()) || vneeded.is_none_or(|e| e > vbytes.len()) {
            return Err(AccessorError::SparseOutOfBounds { accessor: idx });
        }
        for k in 0..n {
            let target = read_component(&ibytes[ioff + k * isize..], index_ct) as usize;
            if target >= count {
                return Err(AccessorError::SparseIndex {
                    accessor: idx,
                    position: k,
                    target,
                    count,
                });
            }
            for c in 0..components {
                values[target * components + c] =
                    read_component(&vbytes[voff + k * elem_size + c * csize..], ct);
            }
        }
    }
    Ok(Elements { components, values })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A document of one 24-byte buffer (two VEC3 of f32) with a good accessor 0 and
    /// `bad` as accessor 1.
    fn root_with(bad: &str) -> Root {
        let json = format!(
            r#"{{"asset": {{"version": "2.0"}},
                "buffers": [{{"byteLength": 24}}],
                "bufferViews": [{{"buffer": 0, "byteLength": 24}}],
                "accessors": [
                    {{"bufferView": 0, "componentType": 5126, "count": 2, "type": "VEC3"}},
                    {bad}
                ]}}"#
        );
        gltf::json::deserialize::from_slice(json.as_bytes()).unwrap()
    }

    #[test]
    fn an_accessor_past_its_view_is_out_of_bounds_with_its_index() {
        let root = root_with(
            r#"{"bufferView": 0, "byteOffset": 12, "componentType": 5126, "count": 2, "type": "VEC3"}"#,
        );
        let buffers = vec![vec![0u8; 24]];
        let good = read(&root, &buffers, 0, Type::Vec3, &[ComponentType::F32], 10).unwrap();
        assert_eq!(good.values.len(), 6);
        let err = read(&root, &buffers, 1, Type::Vec3, &[ComponentType::F32], 10)
            .err()
            .unwrap();
        assert_eq!(
            err,
            AccessorError::OutOfBounds {
                accessor: 1,
                count: 2,
                offset: 12,
                stride: 12,
                view: 0,
                view_len: 24,
            }
        );
        assert_eq!(
            err.to_string(),
            "accessors[1] (2 elements, offset 12, stride 12) reads past the end of \
             bufferViews[0] (24 bytes)"
        );
    }

    #[test]
    fn wrong_types_bounds_and_missing_accessors_are_named() {
        let root =
            root_with(r#"{"bufferView": 0, "componentType": 5123, "count": 2, "type": "VEC3"}"#);
        let buffers = vec![vec![0u8; 24]];
        let err = read(&root, &buffers, 1, Type::Vec3, &[ComponentType::F32], 10)
            .err()
            .unwrap();
        assert!(
            matches!(
                err,
                AccessorError::WrongType {
                    accessor: 1,
                    found_component: ComponentType::U16,
                    ..
                }
            ),
            "{err:?}"
        );
        let err = read(&root, &buffers, 0, Type::Vec3, &[ComponentType::F32], 1)
            .err()
            .unwrap();
        assert_eq!(
            err,
            AccessorError::TooMany {
                accessor: 0,
                count: 2,
                limit: 1
            }
        );
        let err = read(&root, &buffers, 2, Type::Vec3, &[ComponentType::F32], 10)
            .err()
            .unwrap();
        assert_eq!(err, AccessorError::Missing { accessor: 2 });
        // A buffer shorter than its view: the view itself is refused.
        let short = vec![vec![0u8; 20]];
        let err = read(&root, &short, 0, Type::Vec3, &[ComponentType::F32], 10)
            .err()
            .unwrap();
        assert_eq!(
            err,
            AccessorError::ViewOutside {
                view: 0,
                offset: 0,
                length: 24,
                buffer: 0,
                buffer_len: 20
            }
        );
    }
}

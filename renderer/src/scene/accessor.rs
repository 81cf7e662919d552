//! Reading glTF accessors from loaded buffers with every offset and length checked.
//!
//! The `gltf` crate's readers assume well-formed input (they may panic on odd strides);
//! this reader returns an error naming the accessor instead.

use gltf::json::accessor::{ComponentType, Type};
use gltf::json::validation::Checked;
use gltf::json::Root;

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
) -> Result<(&'b [u8], Option<usize>), String> {
    let view = root
        .buffer_views
        .get(view_idx)
        .ok_or_else(|| format!("bufferView {view_idx} does not exist"))?;
    let buffer = buffers.get(view.buffer.value()).ok_or_else(|| {
        format!(
            "bufferViews[{view_idx}].buffer {} does not exist",
            view.buffer.value()
        )
    })?;
    let offset = view.byte_offset.map_or(0, |o| o.0);
    let end = offset.checked_add(view.byte_length.0);
    match end {
        Some(end) if end <= buffer.len() as u64 => {
            Ok((&buffer[offset as usize..end as usize], view.byte_stride.map(|s| s.0)))
        }
        _ => Err(format!(
            "bufferViews[{view_idx}] (offset {offset}, length {}) lies outside buffers[{}] of {} bytes",
            view.byte_length.0,
            view.buffer.value(),
            buffer.len()
        )),
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
) -> Result<Elements, String> {
    let acc = root
        .accessors
        .get(idx)
        .ok_or_else(|| format!("accessor {idx} does not exist"))?;
    let (Checked::Valid(ty), Checked::Valid(ct)) = (acc.type_, acc.component_type) else {
        return Err(format!(
            "accessors[{idx}] has an invalid type or componentType"
        ));
    };
    let ct = ct.0;
    if ty != allowed_type || !allowed_components.contains(&ct) {
        return Err(format!(
            "accessors[{idx}] is {ty:?} of {ct:?}; expected {allowed_type:?} of {allowed_components:?}"
        ));
    }
    let count = acc.count.0;
    if count > max_count {
        return Err(format!(
            "accessors[{idx}].count {count} exceeds the limit of {max_count}"
        ));
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
                return Err(format!("accessors[{idx}]: byteStride {stride} is smaller than the element size {elem_size}"));
            }
            let offset = acc.byte_offset.map_or(0, |o| o.0);
            if count > 0 {
                let needed = (count as u64 - 1)
                    .checked_mul(stride as u64)
                    .and_then(|v| v.checked_add(offset))
                    .and_then(|v| v.checked_add(elem_size as u64));
                if needed.is_none_or(|n| n > bytes.len() as u64) {
                    return Err(format!(
                        "accessors[{idx}] ({count} elements, offset {offset}, stride {stride}) reads past \
                         the end of bufferViews[{}] ({} bytes)",
                        view_idx.value(),
                        bytes.len()
                    ));
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
            return Err(format!(
                "accessors[{idx}].sparse.count {} exceeds count {count}",
                sparse.count.0
            ));
        }
        let Checked::Valid(index_ct) = sparse.indices.component_type else {
            return Err(format!(
                "accessors[{idx}].sparse.indices has an invalid componentType"
            ));
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
            return Err(format!(
                "accessors[{idx}].sparse reads past the end of its buffer views"
            ));
        }
        for k in 0..n {
            let target = read_component(&ibytes[ioff + k * isize..], index_ct) as usize;
            if target >= count {
                return Err(format!("accessors[{idx}].sparse.indices[{k}] = {target} is out of range ({count} elements)"));
            }
            for c in 0..components {
                values[target * components + c] =
                    read_component(&vbytes[voff + k * elem_size + c * csize..], ct);
            }
        }
    }
    Ok(Elements { components, values })
}

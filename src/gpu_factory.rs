//! The GPU [`RendererFactory`] of the `node` and `verifier` daemons: one [`Gpu`] for the
//! process, and a [`SceneRenderer`] per downloaded scene whose content hash matches the
//! job's, as `tessera render` builds them.

use std::path::Path;
use std::sync::Arc;
use tessera_node::worker::{software_version, LoadError, RendererFactory};
use tessera_protocol::wire::Capabilities;
use tessera_protocol::{Digest, TileRenderer};
use tessera_renderer::{Gpu, LoadOptions, Scene, SceneRenderer};

/// Renders on the process's GPU (the adapter wgpu picks; `WGPU_BACKEND` and
/// `WGPU_ADAPTER_NAME` choose).
pub struct GpuFactory {
    gpu: Arc<Gpu>,
}

impl GpuFactory {
    /// Open the GPU and compile the path tracer (slow: seconds on lavapipe).
    pub fn new() -> anyhow::Result<Self> {
        let gpu = Arc::new(Gpu::new()?);
        Ok(Self { gpu })
    }
}

impl RendererFactory for GpuFactory {
    /// The adapter's determinism class and memory ([`Gpu::memory_bytes`]: RAM for a CPU
    /// adapter, `nvidia-smi` for NVIDIA, otherwise 0 = unknown).
    fn capabilities(&self, slots: u32) -> Capabilities {
        Capabilities {
            class: self.gpu.class(),
            memory_bytes: self.gpu.memory_bytes(),
            slots,
            software: software_version(),
        }
    }

    fn load(&self, entry: &Path, expected: &Digest) -> Result<Arc<dyn TileRenderer>, LoadError> {
        let scene = Scene::load(entry, &LoadOptions::default()).map_err(|e| LoadError::Read {
            entry: entry.to_path_buf(),
            source: e.into(),
        })?;
        if scene.content_hash() != *expected {
            return Err(LoadError::HashMismatch {
                entry: entry.to_path_buf(),
                actual: scene.content_hash(),
                expected: *expected,
            });
        }
        for w in scene.warnings() {
            tracing::warn!(scene = %entry.display(), "{w}");
        }
        let renderer =
            SceneRenderer::new(self.gpu.clone(), &scene).map_err(|e| LoadError::Upload {
                entry: entry.to_path_buf(),
                source: e.into(),
            })?;
        Ok(Arc::new(renderer))
    }
}

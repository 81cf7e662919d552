//! Adapter selection errors (a separate test binary, because it changes the environment).

use tessera_renderer::{Gpu, RenderError};

#[test]
fn adapter_errors_name_the_request_and_the_fix() {
    // One test only: the environment is shared by every thread of this process.
    std::env::set_var("WGPU_ADAPTER_NAME", "no-such-adapter");
    let err = Gpu::new().unwrap_err();
    assert!(matches!(err, RenderError::AdapterNotFound { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("WGPU_ADAPTER_NAME \"no-such-adapter\" matches no adapter; available: "),
        "{msg}"
    );
    std::env::remove_var("WGPU_ADAPTER_NAME");

    // A backend this platform does not have leaves no adapter at all.
    let absent = if cfg!(target_os = "macos") {
        "dx12"
    } else {
        "metal"
    };
    std::env::set_var("WGPU_BACKEND", absent);
    let msg = Gpu::new().unwrap_err().to_string();
    assert!(
        msg.contains("apt-get install -y mesa-vulkan-drivers libvulkan1"),
        "{msg}"
    );
    std::env::remove_var("WGPU_BACKEND");

    // Back to the default choice: an adapter exists on the test machines.
    let gpu = Gpu::new().unwrap();
    let class = gpu.class();
    assert!(!class.backend.is_empty() && !class.adapter.is_empty());
    assert_eq!(
        class.shader_hash,
        blake3::hash(tessera_renderer::SHADER_SOURCE.as_bytes())
            .to_hex()
            .to_string()
    );
}

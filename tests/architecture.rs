//! ARCHITECTURE.md's invariants that a command can check: which crate may depend on which
//! foreign system (from `cargo metadata`), which source files may import it, that the job
//! state machine does no IO, reads no clock and draws no random number, and that library
//! code returns typed errors (no `Result<_, String>`, no `anyhow`). Each check names the
//! crate, file and line that breaks it.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Each workspace package's name → (its folder, its direct normal dependencies).
fn packages() -> BTreeMap<String, (PathBuf, Vec<String>)> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata is JSON");
    let mut packages = BTreeMap::new();
    for p in meta["packages"].as_array().expect("packages") {
        let name = p["name"].as_str().expect("name").to_string();
        let dir = Path::new(p["manifest_path"].as_str().expect("manifest_path"))
            .parent()
            .expect("a folder")
            .to_path_buf();
        let deps = p["dependencies"]
            .as_array()
            .expect("dependencies")
            .iter()
            .filter(|d| d["kind"].is_null())
            .map(|d| d["name"].as_str().expect("dependency name").to_string())
            .collect();
        packages.insert(name, (dir, deps));
    }
    packages
}

/// The foreign systems and the only packages that may depend on them.
const OWNERS: &[(&str, &[&str])] = &[
    ("wgpu", &["tessera-renderer"]),
    ("lapin", &["tessera-bus"]),
    ("rusqlite", &["tessera-coordinator"]),
    ("axum", &["tessera-coordinator"]),
    // The node crate serves one thing over HTTP: the plain `--metrics-addr` listener of
    // the node and verifier daemons (`node/src/metrics_http.rs`, checked below), so that
    // those daemons need no web framework.
    ("hyper", &["tessera-coordinator", "tessera-node"]),
    // The API client (nodes, verifiers, the client commands), and the coordinator's
    // webhook deliveries (`coordinator/src/daemon/webhooks.rs` alone, checked below): the
    // coordinator POSTs events to its clients' receivers.
    ("reqwest", &["tessera-api", "tessera-coordinator"]),
    // The binary alone decides exit codes, so only it uses anyhow (and the scene
    // generator's tool binary, `gen-scenes`; `library_code_returns_typed_errors` checks
    // that no library source uses it).
    ("anyhow", &["tessera", "tessera-scenes"]),
];

#[test]
fn only_the_owning_crate_depends_on_each_foreign_system() {
    let packages = packages();
    assert!(
        packages.contains_key("tessera-coordinator") && packages.len() >= 10,
        "cargo metadata lists the workspace: {:?}",
        packages.keys()
    );
    let mut broken = Vec::new();
    for (name, (_, deps)) in &packages {
        for (system, owners) in OWNERS {
            if deps.iter().any(|d| d == system) && !owners.contains(&name.as_str()) {
                broken.push(format!("{name} depends on {system} (only {owners:?} may)"));
            }
        }
    }
    // The protocol crate does no IO: no runtime, GPU, database or network.
    let (_, protocol) = &packages["tessera-protocol"];
    for system in ["tokio", "wgpu", "rusqlite", "lapin", "reqwest", "axum"] {
        if protocol.iter().any(|d| d == system) {
            broken.push(format!("tessera-protocol depends on {system}"));
        }
    }
    // The coordinator reaches the renderer only through `TileRenderer` (protocol).
    let (_, coordinator) = &packages["tessera-coordinator"];
    if coordinator.iter().any(|d| d == "tessera-renderer") {
        broken.push("tessera-coordinator depends on tessera-renderer".into());
    }
    assert!(broken.is_empty(), "{broken:#?}");
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("readable folder") {
            let p = e.expect("a folder entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

/// A file's code before its unit-test module.
fn non_test_code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("readable source");
    match text.find("#[cfg(test)]") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// (file, line) of every occurrence of `needle` in the non-test code of `files`.
fn occurrences(files: &[PathBuf], needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for f in files {
        for (i, line) in non_test_code(f).lines().enumerate() {
            if line.contains(needle) && !line.trim_start().starts_with("//") {
                let rel = f.strip_prefix(root()).unwrap_or(f);
                hits.push(format!("{}:{}: {}", rel.display(), i + 1, line.trim()));
            }
        }
    }
    hits
}

#[test]
fn only_the_store_imports_rusqlite_and_only_the_api_and_webhooks_speak_http_in_the_coordinator() {
    let coordinator = root().join("coordinator/src");
    let files = rust_files(&coordinator);
    assert!(files.len() > 5, "coordinator sources found: {files:?}");
    let outside = |allowed: &str| -> Vec<PathBuf> {
        let allowed = coordinator.join(allowed);
        files
            .iter()
            .filter(|f| !f.starts_with(&allowed))
            .cloned()
            .collect()
    };
    let sql = occurrences(&outside("store"), "rusqlite");
    assert!(sql.is_empty(), "rusqlite outside store/: {sql:#?}");
    // The API (`daemon/http.rs`) and the dashboard it serves on the same listener
    // (`daemon/web/`, merged into the API's router) are the coordinator's HTTP.
    let speaks_http = |f: &PathBuf| {
        !f.starts_with(coordinator.join("daemon/http.rs"))
            && !f.starts_with(coordinator.join("daemon/web"))
    };
    let others: Vec<PathBuf> = files.iter().filter(|f| speaks_http(f)).cloned().collect();
    assert!(
        others.len() + 2 < files.len(),
        "daemon/http.rs and daemon/web/ found: {files:?}"
    );
    let mut http = occurrences(&others, "axum");
    http.extend(occurrences(&others, "hyper"));
    assert!(
        http.is_empty(),
        "HTTP outside daemon/http.rs and daemon/web/: {http:#?}"
    );
    // The one HTTP client inside the coordinator: webhook deliveries to clients'
    // receivers. It is kept out of the API server, and the server out of it.
    let client = occurrences(&outside("daemon/webhooks.rs"), "reqwest");
    assert!(
        client.is_empty(),
        "an HTTP client outside daemon/webhooks.rs: {client:#?}"
    );
}

#[test]
fn the_workers_speak_http_only_in_their_metrics_listener() {
    let node = root().join("node/src");
    let files = rust_files(&node);
    assert!(files.len() > 5, "node sources found: {files:?}");
    let allowed = node.join("metrics_http.rs");
    assert!(
        allowed.is_file(),
        "node/src/metrics_http.rs is the listener"
    );
    let others: Vec<PathBuf> = files.into_iter().filter(|f| *f != allowed).collect();
    let mut http = occurrences(&others, "hyper");
    http.extend(occurrences(&others, "axum"));
    let verifier = rust_files(&root().join("verifier/src"));
    http.extend(occurrences(&verifier, "hyper"));
    http.extend(occurrences(&verifier, "axum"));
    assert!(
        http.is_empty(),
        "HTTP outside node/src/metrics_http.rs: {http:#?}"
    );
}

#[test]
fn the_job_machine_does_no_io_reads_no_clock_and_draws_no_random_number() {
    let machine = [
        root().join("coordinator/src/machine.rs"),
        root().join("coordinator/src/job.rs"),
    ];
    let mut hits = Vec::new();
    for forbidden in [
        "std::fs",
        "std::net",
        "std::process",
        "std::env",
        "SystemTime",
        "Instant",
        // The driver draws the nonces with its own RNG (`Nonces::draw(&mut dyn RngCore)`).
        "rand::random",
        "rand::rngs",
        "from_entropy",
        "OsRng",
        "thread_rng",
        "tokio",
        "rusqlite",
        "crate::store",
        "crate::bus",
        "crate::daemon",
    ] {
        hits.extend(occurrences(&machine, forbidden));
    }
    assert!(
        hits.is_empty(),
        "the machine or its rules reach outside: {hits:#?}"
    );
}

/// Whether `generic` (the text between `Result<` and its `>`) has `String` as its error.
fn string_error(generic: &str) -> bool {
    let mut depth = 0;
    for (i, c) in generic.char_indices() {
        match c {
            '<' | '(' | '[' => depth += 1,
            '>' | ')' | ']' => depth -= 1,
            ',' if depth == 0 => {
                let error = generic[i + 1..].trim();
                return error.strip_suffix(',').unwrap_or(error).trim() == "String";
            }
            _ => {}
        }
    }
    false
}

/// Every `Result<T, E>` in `code`, as the text between its brackets (across lines too).
fn results(code: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut from = 0;
    while let Some(at) = code[from..].find("Result<") {
        let start = from + at + "Result<".len();
        let mut depth = 1;
        let mut end = start;
        while end < bytes.len() && depth > 0 {
            match bytes[end] {
                b'<' => depth += 1,
                // `->` inside a `dyn Fn(..) -> T` is not a closing bracket.
                b'>' if end == 0 || bytes[end - 1] != b'-' => depth -= 1,
                _ => {}
            }
            end += 1;
        }
        let line = code[..start].matches('\n').count() + 1;
        out.push((line, code[start..end.saturating_sub(1)].to_string()));
        from = start;
    }
    out
}

#[test]
fn the_result_scanner_finds_string_errors_across_lines_and_in_closures() {
    let code = "fn a() -> Result<(), String> {}\nfn b() -> Result<\n    Vec<u8>,\n    String,\n> {}\nfn c() -> Result<u8, MyError> {}\ntype F = dyn Fn(u8) -> Result<Option<u8>, String>;\nfn d() -> Result<BTreeMap<String, u8>, E> {}";
    let found: Vec<usize> = results(code)
        .into_iter()
        .filter(|(_, g)| string_error(g))
        .map(|(line, _)| line)
        .collect();
    assert_eq!(found, vec![1, 2, 7]);
}

#[test]
fn library_code_returns_typed_errors() {
    let packages = packages();
    let mut hits = Vec::new();
    for (name, (dir, _)) in &packages {
        if name == "tessera" {
            continue; // the binary uses anyhow and decides exit codes
        }
        for f in rust_files(&dir.join("src")) {
            if f.components().any(|c| c.as_os_str() == "bin") {
                continue; // a crate's tool binaries are binaries
            }
            let code = non_test_code(&f);
            if code.contains("anyhow") {
                let rel = f.strip_prefix(root()).unwrap_or(&f);
                hits.push(format!("{}: uses anyhow", rel.display()));
            }
            for (line, generic) in results(&code) {
                if string_error(&generic) {
                    let rel = f.strip_prefix(root()).unwrap_or(&f);
                    hits.push(format!("{}:{line}: Result<{generic}>", rel.display()));
                }
            }
        }
    }
    assert!(
        hits.is_empty(),
        "library code returns String errors or uses anyhow (use a thiserror type): {hits:#?}"
    );
}

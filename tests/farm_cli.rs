//! The farm commands' command line without running any daemon: where each value comes
//! from (flag > environment > config file > default, through the hidden
//! `--print-config`), the errors for missing values, bad config files, a bad scene and an
//! unreachable coordinator, and `keygen`'s key file.

mod common;

use common::{root, run};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

/// `tessera` with no `TESSERA_*` variable inherited from the test's environment.
fn tessera() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tessera"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TESSERA_") {
            c.env_remove(k);
        }
    }
    c.env("TESSERA_LOG", "warn");
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// How `--print-config` shows a secret: a short hash, never the secret.
fn redacted(secret: &str) -> String {
    format!("*** ({})", &blake3::hash(secret.as_bytes()).to_hex()[..8])
}

/// Run with `--print-config` and parse the JSON it prints.
fn config(cmd: &mut Command) -> Value {
    let out = run(cmd.arg("--print-config"));
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("--print-config prints JSON")
}

/// A port nothing listens on (it was free a moment ago).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn keygen(path: &Path) -> Output {
    run(tessera().arg("keygen").arg("-o").arg(path))
}

fn node(key: &Path) -> Command {
    let mut c = tessera();
    c.arg("node")
        .arg("--key")
        .arg(key)
        .args(["--amqp", "amqp://guest:guest@127.0.0.1:5672/%2f"]);
    c
}

#[cfg(unix)]
#[test]
fn keygen_writes_a_0600_key_file_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("keys/node.key");
    let out = keygen(&key);
    assert!(out.status.success());
    let public = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(public.len(), 64, "prints the public key: {public}");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode {mode:o}");
    let before = std::fs::read(&key).unwrap();
    let again = keygen(&key);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains(&key.display().to_string()));
    assert_eq!(std::fs::read(&key).unwrap(), before, "key file overwritten");
    // The node takes it: the public key it reports is keygen's.
    let cfg = config(node(&key).args(["--coordinator", "http://127.0.0.1:1"]));
    assert_eq!(cfg["public_key"], public.as_str());
    assert_eq!(cfg["name"], format!("node-{}", &public[..12]).as_str());
}

#[test]
fn flag_beats_environment_beats_config_file_beats_default() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("node.key");
    assert!(keygen(&key).status.success());
    let file = dir.path().join("farm.toml");
    std::fs::write(
        &file,
        r#"
coordinator = "http://file-top:1"
token = "file-top-token"
[node]
slots = 3
name = "file-name"
token = "file-node-token"
heartbeat_ms = 700
[client]
token = "file-client-token"
"#,
    )
    .unwrap();
    // Default: nothing but the required flags.
    let cfg = config(node(&key).args(["--coordinator", "http://flag:1"]));
    assert_eq!(cfg["slots"], 1);
    assert_eq!(cfg["heartbeat_ms"], 2000);
    assert_eq!(cfg["renderer"], "gpu");
    assert_eq!(cfg["token"], Value::Null);
    assert_eq!(cfg["amqp"], "amqp://guest:***@127.0.0.1:5672/%2f");
    // File: the [node] table wins over the top level.
    let cfg = config(node(&key).arg("--config").arg(&file));
    assert_eq!(cfg["slots"], 3);
    assert_eq!(cfg["name"], "file-name");
    assert_eq!(cfg["token"], redacted("file-node-token"));
    assert_eq!(cfg["heartbeat_ms"], 700);
    assert_eq!(cfg["coordinator"], "http://file-top:1");
    // Environment over the file (the file named by TESSERA_CONFIG this time).
    let cfg = config(
        node(&key)
            .env("TESSERA_CONFIG", &file)
            .env("TESSERA_SLOTS", "5")
            .env("TESSERA_COORDINATOR", "http://env:1")
            .env("TESSERA_TOKEN", "env-token"),
    );
    assert_eq!(cfg["slots"], 5);
    assert_eq!(cfg["coordinator"], "http://env:1");
    assert_eq!(cfg["token"], redacted("env-token"));
    assert_eq!(cfg["name"], "file-name");
    // Flag over the environment.
    let cfg = config(
        node(&key)
            .env("TESSERA_CONFIG", &file)
            .env("TESSERA_SLOTS", "5")
            .args(["--slots", "7", "--name", "flag-name"]),
    );
    assert_eq!(cfg["slots"], 7);
    assert_eq!(cfg["name"], "flag-name");
    // The hidden test flags.
    let cfg = config(
        node(&key)
            .args(["--coordinator", "http://flag:1", "--stub-renderer"])
            .args(["--stub-delay-ms", "9", "--dishonest", "noise"]),
    );
    assert_eq!(cfg["renderer"], "stub");
    assert_eq!(cfg["stub_delay_ms"], 9);
    assert_eq!(cfg["dishonest"], "noise");
    let cfg = config(
        tessera()
            .args(["verifier", "--coordinator", "http://flag:1", "--key"])
            .arg(&key)
            .args(["--amqp", "amqp://h", "--slots", "2"]),
    );
    assert_eq!(cfg["role"], "verifier");
    assert_eq!(cfg["slots"], 2);
    // The client commands read [client].
    let cfg = config(tessera().arg("status").arg("--config").arg(&file));
    assert_eq!(cfg["coordinator"], "http://file-top:1");
    assert_eq!(cfg["token"], redacted("file-client-token"));
}

#[test]
fn submit_defaults_match_render_and_come_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("farm.toml");
    std::fs::write(
        &file,
        "[client]\ncoordinator = \"http://c:1\"\ntoken = \"t\"\n[submit]\nspp = 16\ntier = \"priority\"\n",
    )
    .unwrap();
    let cfg = config(
        tessera()
            .args(["submit", "scene.glb", "--coordinator", "http://c:1"])
            .args(["--token", "t"]),
    );
    let job = &cfg["job"];
    let s = &job["settings"];
    assert_eq!(
        (&s["width"], &s["height"], &s["spp"], &s["max_bounces"]),
        (&256.into(), &256.into(), &64.into(), &12.into())
    );
    assert_eq!(s["seed"], 1);
    assert_eq!(
        (&job["frame_start"], &job["frame_end"]),
        (&0.into(), &0.into())
    );
    assert_eq!(job["tier"], "economy");
    assert!(job.get("tile_size").is_none());
    let cfg = config(
        tessera()
            .args(["submit", "scene.glb", "--config"])
            .arg(&file)
            .args(["--frames", "2..4", "--bounces", "3", "--tile-size", "32"])
            .args(["--require-class", &"ab".repeat(32), "--min-memory", "1024"])
            .env("TESSERA_WIDTH", "64"),
    );
    let job = &cfg["job"];
    assert_eq!(job["settings"]["spp"], 16);
    assert_eq!(job["settings"]["width"], 64);
    assert_eq!(job["settings"]["max_bounces"], 3);
    assert_eq!(job["tier"], "priority");
    assert_eq!(
        (&job["frame_start"], &job["frame_end"]),
        (&2.into(), &4.into())
    );
    assert_eq!(job["tile_size"], 32);
    assert_eq!(job["requirements"]["class_id"], "ab".repeat(32).as_str());
    assert_eq!(job["requirements"]["min_memory_bytes"], 1024);
    assert_eq!(cfg["client"]["token"], redacted("t"));
}

#[test]
fn coordinator_tokens_and_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        tessera()
            .args(["coordinator", "--amqp", "amqp://127.0.0.1:5672"])
            .arg("--data")
            .arg(dir.path())
            .env("TESSERA_API_TOKEN", "alice=one,two"),
    );
    assert_eq!(
        cfg["api_tokens"],
        serde_json::json!([
            format!("alice={}", redacted("one")),
            format!("default={}", redacted("two"))
        ])
    );
    assert_eq!(cfg["listen"], "127.0.0.1:8700");
    assert_eq!(cfg["data"], dir.path().to_str().unwrap());
    assert_eq!(cfg["namespace"], "tessera");
    let file = dir.path().join("farm.toml");
    std::fs::write(
        &file,
        "amqp = \"amqp://file:5672\"\n[coordinator]\napi-token = [\"a\", \"b\"]\nlisten = \"0.0.0.0:9000\"\nlease_secs = 7\n",
    )
    .unwrap();
    let cfg = config(tessera().args(["coordinator", "--config"]).arg(&file));
    assert_eq!(
        cfg["api_tokens"],
        serde_json::json!([
            format!("default={}", redacted("a")),
            format!("default={}", redacted("b"))
        ])
    );
    assert_eq!(cfg["listen"], "0.0.0.0:9000");
    assert_eq!(cfg["lease_secs"], 7.0);
    assert_eq!(cfg["amqp"], "amqp://file:5672");
    let cfg = config(
        tessera()
            .args(["coordinator", "--config"])
            .arg(&file)
            .args(["--api-token", "flag", "--listen", "127.0.0.1:1"]),
    );
    assert_eq!(
        cfg["api_tokens"],
        serde_json::json!([format!("default={}", redacted("flag"))])
    );
    assert_eq!(cfg["listen"], "127.0.0.1:1");
}

#[test]
fn missing_values_and_bad_config_files_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(tessera().args(["coordinator", "--amqp", "amqp://h"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--api-token") && stderr(&out).contains("TESSERA_API_TOKEN"),
        "{}",
        stderr(&out)
    );
    let out = run(tessera().args(["status", "--token", "t"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--coordinator"), "{}", stderr(&out));
    let missing_key = dir.path().join("nope.key");
    let out = run(node(&missing_key).args(["--coordinator", "http://h:1"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&missing_key.display().to_string())
            && stderr(&out).contains("keygen"),
        "{}",
        stderr(&out)
    );
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[node]\nslot = 2\n").unwrap();
    let out = run(tessera().args(["status", "--config"]).arg(&file));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("bad.toml") && stderr(&out).contains("slot"),
        "{}",
        stderr(&out)
    );
    let out = run(tessera()
        .args(["status"])
        .env("TESSERA_CONFIG", dir.path().join("absent.toml")));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("absent.toml"), "{}", stderr(&out));
    let out = run(tessera()
        .args([
            "submit",
            "s.glb",
            "--coordinator",
            "http://h:1",
            "--token",
            "t",
        ])
        .args(["--require-class", "xyz"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--require-class"), "{}", stderr(&out));
    let out = run(tessera().args([
        "submit",
        "s.glb",
        "--coordinator",
        "ftp://h",
        "--token",
        "t",
    ]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("ftp://h"), "{}", stderr(&out));
}

#[test]
fn submit_of_a_missing_scene_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let scene = dir.path().join("no-such-scene.glb");
    let out = run(tessera()
        .arg("submit")
        .arg(&scene)
        .arg("--coordinator")
        .arg(format!("http://127.0.0.1:{}", closed_port()))
        .args(["--token", "t"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&scene.display().to_string()),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn submit_of_an_unknown_camera_fails_before_uploading() {
    let out = run(tessera()
        .arg("submit")
        .arg(root().join("scenes/cornell-box.glb"))
        .arg("--coordinator")
        .arg(format!("http://127.0.0.1:{}", closed_port()))
        .args(["--token", "t", "--camera", "no-such-camera"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no-such-camera"), "{}", stderr(&out));
}

#[test]
fn commands_against_a_closed_port_name_the_url() {
    let base = format!("http://127.0.0.1:{}", closed_port());
    let out = run(tessera()
        .args(["status", "abc123", "--json", "--token", "t"])
        .env("TESSERA_COORDINATOR", &base));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("{base}/v1/jobs/abc123")),
        "{}",
        stderr(&out)
    );
    // submit reaches the upload with a good scene, and names the URL there.
    let out = run(tessera()
        .arg("submit")
        .arg(root().join("scenes/env-hdr.gltf"))
        .args(["--coordinator", &base, "--token", "t"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("{base}/v1/blobs/")),
        "{}",
        stderr(&out)
    );
    for cmd in [
        &["nodes"][..],
        &["ledger", "--json"],
        &["fetch", "j", "-o", "x.png"],
        &["fetch", "j", "-o", "x.png", "--wait", "--timeout", "1"],
    ] {
        let out = run(tessera()
            .args(cmd)
            .args(["--coordinator", &base, "--token", "t"]));
        assert_eq!(out.status.code(), Some(1), "{cmd:?}");
        assert!(stderr(&out).contains(&base), "{cmd:?}: {}", stderr(&out));
    }
}

#[test]
fn secrets_come_from_files_and_are_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let clients = dir.path().join("clients");
    std::fs::write(
        &clients,
        "# studio tokens\nalice=alice-secret-token-1\n\nbob=bob-secret-token-22\n",
    )
    .unwrap();
    let admin = dir.path().join("admin");
    std::fs::write(&admin, "admin-secret-token-333\n").unwrap();
    let out = run(tessera()
        .args(["coordinator", "--amqp", "amqp://127.0.0.1:5672", "--data"])
        .arg(dir.path())
        .arg("--api-token-file")
        .arg(&clients)
        .arg("--admin-token-file")
        .arg(&admin)
        .args(["--node-token", "node-secret-token-4444", "--print-config"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    for secret in [
        "alice-secret-token-1",
        "bob-secret-token-22",
        "admin-secret-token-333",
        "node-secret-token-4444",
    ] {
        assert!(!printed.contains(secret), "{secret} printed: {printed}");
    }
    let cfg: Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(
        cfg["api_tokens"],
        serde_json::json!([
            format!("alice={}", redacted("alice-secret-token-1")),
            format!("bob={}", redacted("bob-secret-token-22")),
        ])
    );
    assert_eq!(cfg["admin_token"], redacted("admin-secret-token-333"));
    assert_eq!(cfg["node_token"], redacted("node-secret-token-4444"));
    // A value and a file for one secret is a usage error.
    let out = run(tessera()
        .args(["coordinator", "--amqp", "amqp://h", "--api-token", "x"])
        .args([
            "--admin-token",
            "admin-secret-token-333",
            "--admin-token-file",
        ])
        .arg(&admin));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--admin-token-file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn one_token_for_two_clients_or_roles_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = || {
        let mut c = tessera();
        c.args(["coordinator", "--amqp", "amqp://127.0.0.1:1", "--data"])
            .arg(dir.path());
        c
    };
    let out = run(coordinator().args([
        "--api-token",
        "alice=shared-token-value",
        "--api-token",
        "bob=shared-token-value",
        "--print-config",
    ]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("\"alice\"") && err.contains("\"bob\"") && err.contains("same token"),
        "{err}"
    );
    assert!(!err.contains("shared-token-value"), "{err}");
    let out = run(coordinator().args([
        "--api-token",
        "alice=a-client-token-that-is-long",
        "--admin-token",
        "a-client-token-that-is-long",
        "--print-config",
    ]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--admin-token"), "{}", stderr(&out));
}

/// `--metrics-addr` (or `TESSERA_METRICS_ADDR`, or `metrics-addr` in the file) of every
/// daemon: shown by `--print-config`, and a bad address or the API's own is refused as a
/// usage error naming the flag.
#[test]
fn every_daemon_takes_a_metrics_address() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("node.key");
    assert!(keygen(&key).status.success());
    let cfg = config(node(&key).args(["--coordinator", "http://c:1"]));
    assert_eq!(cfg["metrics_addr"], Value::Null);
    let cfg = config(
        node(&key)
            .args(["--coordinator", "http://c:1"])
            .args(["--metrics-addr", "127.0.0.1:9101"]),
    );
    assert_eq!(cfg["metrics_addr"], "127.0.0.1:9101");
    let cfg = config(
        tessera()
            .arg("verifier")
            .arg("--key")
            .arg(&key)
            .args(["--amqp", "amqp://h", "--coordinator", "http://c:1"])
            .env("TESSERA_METRICS_ADDR", "127.0.0.1:9102"),
    );
    assert_eq!(cfg["metrics_addr"], "127.0.0.1:9102");
    let file = dir.path().join("farm.toml");
    std::fs::write(&file, "[coordinator]\nmetrics-addr = \"127.0.0.1:9100\"\n").unwrap();
    let coordinator = || {
        let mut c = tessera();
        c.args(["coordinator", "--amqp", "amqp://h", "--api-token", "t"])
            .arg("--data")
            .arg(dir.path());
        c
    };
    let cfg = config(coordinator().arg("--config").arg(&file));
    assert_eq!(cfg["metrics_addr"], "127.0.0.1:9100");

    let bad = run(node(&key)
        .args(["--coordinator", "http://c:1", "--metrics-addr", "nowhere"])
        .arg("--print-config"));
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("--metrics-addr nowhere"),
        "{}",
        stderr(&bad)
    );
    let same = run(coordinator()
        .args([
            "--listen",
            "127.0.0.1:8700",
            "--metrics-addr",
            "127.0.0.1:8700",
        ])
        .arg("--print-config"));
    assert_eq!(same.status.code(), Some(2), "{}", stderr(&same));
    assert!(
        stderr(&same).contains("--metrics-addr 127.0.0.1:8700"),
        "{}",
        stderr(&same)
    );
}

//! The coordinator's HTTP API tried by a hostile stranger (no token) and by a second client
//! of the same farm, against a real `tessera coordinator` on loopback: bodies nobody
//! authenticated, oversized and forged registrations, half-sent requests, decode bombs,
//! jobs that can never render or would never end, another client's jobs, blobs, scenes and
//! accounts, and configuration mistakes that would leak or share a token. Each attack must
//! be refused early, cheaply and without leaving anything behind.
//!
//! The slow, half-sent and unauthenticated-body attacks use raw `TcpStream`s so that the
//! test controls every byte sent; the rest speak plain HTTP/1.1 over them too (one request
//! per connection).
//!
//! Like tests/farm.rs: without a broker every test that needs a farm prints `SKIPPED: …`
//! and passes, unless `TESSERA_REQUIRE_BROKER=1` (CI), where it fails. The configuration
//! tests need no broker.

#[path = "farm/harness.rs"]
mod harness;

use harness::{
    cornell_box, serial, small_job, tessera, Farm, ADMIN_TOKEN, CLIENT_CREDIT, TOKEN,
    VERIFIER_TOKEN,
};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use tessera_api::{ChallengeResponse, JobSubmission, RegisterRequest, SceneListing};
use tessera_node::worker::{RendererFactory, StubFactory};
use tessera_protocol::keys::SecretKey;
use tessera_protocol::statements::{Registration, Role, Signed};
use tessera_protocol::wire::Requirements;
use tessera_protocol::{FrameRate, RenderSettings};

/// The second client of the farm in the tenancy test (`--api-token rival=…`).
const RIVAL_TOKEN: &str = "rival-token-0123456789abcdef";

/// What an upload attack declares: 50 MB.
const BIG: u64 = 50_000_000;

/// The most a coordinator may hold while strangers push bodies at it (VmHWM).
const FLOOD_RSS_CEILING_KIB: u64 = 150 * 1024;

/// Above this the guard kills a coordinator that is decoding a bomb, so that an unhardened
/// build fails the test instead of taking the machine down.
const BOMB_KILL_KIB: u64 = 1024 * 1024;

/// The most a coordinator may hold after refusing a decode bomb (VmHWM).
const BOMB_RSS_CEILING_KIB: u64 = 256 * 1024;

/// The budget names a refused decode bomb's message may give.
const BUDGETS: [&str; 6] = [
    "max_texture_bytes",
    "max_texture_pixels",
    "max_environment_pixels",
    "max_vertices",
    "max_primitives",
    "max_triangles",
];

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

// ---------------------------------------------------------------------------------------
// HTTP over raw sockets
// ---------------------------------------------------------------------------------------

/// The coordinator's socket address.
fn addr(farm: &Farm) -> SocketAddr {
    farm.url
        .trim_start_matches("http://")
        .parse()
        .expect("the farm's url is http://IP:PORT")
}

/// A request's head: method, path, optional bearer token, and the declared body length.
fn head(method: &str, path: &str, token: Option<&str>, content_length: u64) -> String {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}\
         Content-Type: application/octet-stream\r\nContent-Length: {content_length}\r\n\r\n"
    )
}

/// A complete answer.
#[derive(Debug)]
struct Reply {
    status: u16,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("answer {} is not JSON ({e}): {}", self.status, self.body))
    }
}

/// Parse a whole HTTP/1.1 answer (status line, headers, body; chunked or not).
fn parse_reply(raw: &[u8]) -> Option<Reply> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let mut body = raw[split + 4..].to_vec();
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size_text = String::from_utf8_lossy(&rest[..eol]);
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                break;
            }
            let start = eol + 2;
            out.extend_from_slice(rest.get(start..start + size)?);
            rest = rest.get(start + size + 2..)?;
        }
        body = out;
    }
    Some(Reply {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// One request on its own connection: its complete answer (30 s at most), or what went
/// wrong.
fn try_call(
    farm: &Farm,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> Result<Reply, String> {
    let what = format!("{method} {path}");
    let mut s = TcpStream::connect(addr(farm)).map_err(|e| format!("{what}: {e}"))?;
    s.set_read_timeout(Some(secs(30))).unwrap();
    s.set_write_timeout(Some(secs(30))).unwrap();
    // A server may answer (401, 413) and close before the whole body is sent: what it
    // answered is read all the same.
    let sent = s
        .write_all(head(method, path, token, body.len() as u64).as_bytes())
        .and_then(|()| s.write_all(body));
    let mut raw = Vec::new();
    let read = s.read_to_end(&mut raw);
    parse_reply(&raw).ok_or_else(|| {
        format!(
            "{what}: no HTTP answer (sending: {sent:?}, reading: {read:?}): {:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(300)])
        )
    })
}

/// [`try_call`] that panics when no answer comes.
fn call(farm: &Farm, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> Reply {
    try_call(farm, method, path, token, body).unwrap_or_else(|e| panic!("{e}"))
}

/// How a raw attempt ended.
#[derive(Debug, Clone, PartialEq)]
enum Ending {
    /// An answer with this status came back.
    Status(u16),
    /// The server closed or reset the connection without an answer.
    Closed,
    /// Nothing happened before the deadline: the server still waits for the client.
    Silent,
}

/// Read until an answer's head arrives, the connection ends, or `deadline`.
fn ending(s: &mut TcpStream, deadline: Instant) -> Ending {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]);
            return match head.split_whitespace().nth(1).and_then(|c| c.parse().ok()) {
                Some(code) => Ending::Status(code),
                None => Ending::Closed,
            };
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ending::Silent;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => {
                return match parse_reply(&raw) {
                    Some(r) => Ending::Status(r.status),
                    None => Ending::Closed,
                }
            }
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ending::Silent
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Ending::Closed,
        }
    }
}

/// Send `head`, then zeros as fast as the server takes them until `body_len` bytes are
/// sent or the server stops taking them (closed, reset, or 10 s without progress); then
/// read what it answered (5 s).
fn push_body(at: SocketAddr, head: &str, body_len: u64) -> Ending {
    let mut s = match TcpStream::connect(at) {
        Ok(s) => s,
        Err(_) => return Ending::Closed,
    };
    s.set_write_timeout(Some(secs(10))).unwrap();
    if s.write_all(head.as_bytes()).is_err() {
        return ending(&mut s, Instant::now() + secs(5));
    }
    let chunk = vec![0u8; 256 * 1024];
    let mut sent = 0u64;
    while sent < body_len {
        let n = chunk.len().min((body_len - sent) as usize);
        match s.write(&chunk[..n]) {
            Ok(0) | Err(_) => break,
            Ok(n) => sent += n as u64,
        }
    }
    ending(&mut s, Instant::now() + secs(5))
}

// ---------------------------------------------------------------------------------------
// The coordinator process
// ---------------------------------------------------------------------------------------

/// The pid of the farm's coordinator: this test's child whose command line names the
/// farm's namespace and the `coordinator` subcommand (the harness keeps its `Child`
/// private).
fn coordinator_pid(farm: &Farm) -> u32 {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`: comm may hold spaces, so split after its `)`.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1));
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        if ppid != Some(me.as_str()) || state == Some("Z") {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a == "coordinator") && args.iter().any(|a| a == &farm.ns) {
            found.push(pid);
        }
    }
    assert_eq!(
        found.len(),
        1,
        "coordinator processes of {}: {found:?}",
        farm.ns
    );
    found[0]
}

/// A `/proc/PID/status` field in KiB (`VmRSS`, `VmHWM`); 0 once the process is gone.
fn memory_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Watches a coordinator's resident memory every 10 ms; kills it (SIGKILL) if it passes
/// `kill_above_kib`, so that an attack that works ends the test rather than the machine.
struct MemoryGuard {
    pid: u32,
    stop: Arc<AtomicBool>,
    killed: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MemoryGuard {
    fn watch(pid: u32, kill_above_kib: u64) -> Self {
        let (stop, killed, peak) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let (s, k, p) = (stop.clone(), killed.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let rss = memory_kib(pid, "VmRSS");
                p.fetch_max(rss, Ordering::Relaxed);
                if rss > kill_above_kib && !k.swap(true, Ordering::Relaxed) {
                    let _ = std::process::Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Self {
            pid,
            stop,
            killed,
            peak,
            thread: Some(thread),
        }
    }

    /// The highest resident size seen (VmHWM while the process lives), and whether the
    /// guard had to kill it.
    fn peak_kib(&self) -> (u64, bool) {
        let hwm = memory_kib(self.pid, "VmHWM");
        (
            hwm.max(self.peak.load(Ordering::Relaxed)),
            self.killed.load(Ordering::Relaxed),
        )
    }
}

impl Drop for MemoryGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Farm set-up: verifier, money, blobs, submissions
// ---------------------------------------------------------------------------------------

fn stub_caps() -> tessera_protocol::wire::Capabilities {
    StubFactory::default().capabilities(1)
}

/// A signed registration of a fresh key as `role` named `name`, as `POST /v1/register`
/// takes it (the challenge fetched first).
fn registration(farm: &Farm, role: &str, name: &str, token: Option<&str>) -> Vec<u8> {
    let ch = call(farm, "POST", "/v1/register/challenge", None, b"");
    assert_eq!(ch.status, 200, "challenge: {}", ch.body);
    let ch: ChallengeResponse = serde_json::from_str(&ch.body).expect("a challenge");
    let challenge: [u8; 32] = hex::decode(&ch.challenge)
        .expect("hex challenge")
        .try_into()
        .expect("32 bytes");
    let key = SecretKey::generate();
    let caps = stub_caps();
    let reg = Registration {
        role: role.parse().expect("node or verifier"),
        name: name.into(),
        challenge,
        coordinator: ch.coordinator,
        capabilities: caps.digest(),
    };
    serde_json::to_vec(&RegisterRequest {
        registration: Signed::sign(reg, &key),
        capabilities: caps,
        token: token.map(String::from),
    })
    .unwrap()
}

/// What a submission needs besides the scene: a verifier the operator granted (registered
/// through the API, no daemon), and the client `studio` in funds.
fn ready_to_submit(farm: &Farm) {
    let reg = registration(farm, "verifier", "verifier", Some(VERIFIER_TOKEN));
    let r = call(farm, "POST", "/v1/register", None, &reg);
    assert_eq!(r.status, 200, "the verifier registers: {}", r.body);
    farm.credit(&["--client=studio"], CLIENT_CREDIT, "client-studio");
}

fn blob_hash(bytes: &[u8]) -> String {
    hex::encode(blake3::hash(bytes).as_bytes())
}

/// Upload `bytes` as `token`; the hash.
fn put_blob(farm: &Farm, token: &str, bytes: &[u8]) -> String {
    let hash = blob_hash(bytes);
    let r = call(
        farm,
        "PUT",
        &format!("/v1/blobs/{hash}"),
        Some(token),
        bytes,
    );
    assert!(
        r.status == 200 || r.status == 201,
        "upload of {hash}: {} {}",
        r.status,
        r.body
    );
    hash
}

/// Upload each `(path, bytes)` as studio; the scene listing with `entry`.
fn upload_scene(farm: &Farm, entry: &str, files: &[(&str, Vec<u8>)]) -> SceneListing {
    SceneListing {
        entry: entry.into(),
        files: files
            .iter()
            .map(|(path, bytes)| (path.to_string(), put_blob(farm, TOKEN, bytes)))
            .collect(),
    }
}

/// The Cornell box, uploaded.
fn cornell_listing(farm: &Farm) -> SceneListing {
    let bytes = std::fs::read(cornell_box()).unwrap();
    upload_scene(farm, "cornell-box.glb", &[("cornell-box.glb", bytes)])
}

/// Settings a stand-in render of 32×32 pixels would take.
fn small_settings() -> RenderSettings {
    RenderSettings {
        width: 32,
        height: 32,
        spp: 16,
        max_bounces: 1,
        seed: 1,
        camera: None,
        frame_rate: FrameRate::default(),
    }
}

fn submission(scene: SceneListing, settings: RenderSettings) -> JobSubmission {
    JobSubmission {
        scene,
        settings,
        frame_start: 0,
        frame_end: 0,
        tier: "economy".into(),
        tile_size: Some(16),
        batch_size: Some(2),
        requirements: Requirements::default(),
    }
}

fn try_submit(farm: &Farm, token: &str, job: &JobSubmission) -> Result<Reply, String> {
    try_call(
        farm,
        "POST",
        "/v1/jobs",
        Some(token),
        &serde_json::to_vec(job).unwrap(),
    )
}

fn submit(farm: &Farm, token: &str, job: &JobSubmission) -> Reply {
    try_submit(farm, token, job).unwrap_or_else(|e| panic!("{e}"))
}

/// Every file and folder under the coordinator's `scenes/`, relative.
fn scene_entries(farm: &Farm) -> BTreeSet<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            out.insert(path.strip_prefix(root).unwrap().to_path_buf());
            if path.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let root = farm.path("coordinator-data/scenes");
    let mut out = BTreeSet::new();
    walk(&root, &root, &mut out);
    out
}

/// Submit `job` and expect a 422 naming one of `names`, with nothing left under `scenes/`;
/// a description of what went wrong otherwise.
fn expect_refused(farm: &Farm, job: &JobSubmission, names: &[&str]) -> Result<(), String> {
    let before = scene_entries(farm);
    let r = try_submit(farm, TOKEN, job)?;
    let after = scene_entries(farm);
    let mut wrong = Vec::new();
    if r.status != 422 || !names.iter().any(|n| r.body.contains(n)) {
        wrong.push(format!(
            "answered {} {:?}, expected 422 naming one of {names:?}",
            r.status,
            r.body.chars().take(300).collect::<String>()
        ));
    }
    if after != before {
        let left: Vec<_> = after.difference(&before).collect();
        wrong.push(format!("left behind under scenes/: {left:?}"));
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}

// ---------------------------------------------------------------------------------------
// Decode bombs: tiny files that declare huge decoded sizes
// ---------------------------------------------------------------------------------------

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    let mut typed = kind.to_vec();
    typed.extend_from_slice(data);
    out.extend_from_slice(&typed);
    out.extend_from_slice(&crc32(&typed).to_be_bytes());
    out
}

/// A PNG of a few hundred bytes whose header declares `side`×`side` 16-bit RGBA (8 bytes
/// a pixel decoded), followed by garbage image data.
fn png_bomb(side: u32) -> Vec<u8> {
    let mut ihdr = side.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&[16, 6, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(png_chunk(b"IHDR", &ihdr));
    png.extend(png_chunk(b"IDAT", &[0xab; 256]));
    png.extend(png_chunk(b"IEND", &[]));
    png
}

/// A Radiance HDR header declaring `side`×`side` pixels (12 bytes a pixel decoded),
/// followed by 4 KiB of garbage.
fn hdr_bomb(side: u32) -> Vec<u8> {
    let mut hdr =
        format!("#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y {side} +X {side}\n").into_bytes();
    hdr.extend(std::iter::repeat_n(0x5a, 4096));
    hdr
}

/// A glTF scene of a few hundred bytes: a camera and `mesh_nodes` nodes that each instance
/// mesh 0, whose `primitives` primitives all share POSITION accessor 0 and index accessor 1
/// (one triangle). Accessor 0 declares `vertices` vertices but stores only two: it is
/// sparse over zeros, so its size costs nothing in the files and everything decoded.
/// `edit` adds what a test needs. The files: `scene.gltf` and its buffer `mesh.bin`.
fn gltf(
    mesh_nodes: usize,
    primitives: usize,
    vertices: u64,
    edit: impl FnOnce(&mut Value),
) -> Vec<(&'static str, Vec<u8>)> {
    // Indices 0 1 2; the sparse vertex indices 1 2; their positions (1,0,0) and (0,1,0).
    let mut bin: Vec<u8> = [0u32, 1, 2, 1, 2]
        .iter()
        .flat_map(|i| i.to_le_bytes())
        .collect();
    bin.extend(
        [1.0f32, 0.0, 0.0, 0.0, 1.0, 0.0]
            .iter()
            .flat_map(|v| v.to_le_bytes()),
    );
    let prim = json!({"attributes": {"POSITION": 0}, "indices": 1, "mode": 4});
    let mut nodes = vec![json!({"camera": 0, "translation": [0.0, 0.0, 3.0]})];
    nodes.extend((0..mesh_nodes).map(|_| json!({"mesh": 0})));
    let mut doc = json!({
        "asset": {"version": "2.0"},
        "scene": 0,
        "scenes": [{"nodes": (0..nodes.len()).collect::<Vec<_>>()}],
        "nodes": nodes,
        "cameras": [{"type": "perspective", "perspective": {"yfov": 0.8, "znear": 0.01}}],
        "meshes": [{"primitives": vec![prim; primitives]}],
        "buffers": [{"uri": "mesh.bin", "byteLength": bin.len()}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": 12},
            {"buffer": 0, "byteOffset": 12, "byteLength": 8},
            {"buffer": 0, "byteOffset": 20, "byteLength": 24}
        ],
        "accessors": [
            {"componentType": 5126, "count": vertices, "type": "VEC3",
             "min": [0.0, 0.0, 0.0], "max": [1.0, 1.0, 0.0],
             "sparse": {"count": 2,
                        "indices": {"bufferView": 1, "componentType": 5125},
                        "values": {"bufferView": 2}}},
            {"bufferView": 0, "componentType": 5125, "count": 3, "type": "SCALAR"}
        ]
    });
    edit(&mut doc);
    vec![
        ("scene.gltf", serde_json::to_vec(&doc).unwrap()),
        ("mesh.bin", bin),
    ]
}

/// Submit the scene `files` (entry `scene.gltf`) while a guard watches the coordinator's
/// memory: it must answer 422 naming a budget within 10 s, leave nothing under `scenes/`,
/// and never hold more than [`BOMB_RSS_CEILING_KIB`].
fn bomb_refused(farm: &Farm, files: &[(&str, Vec<u8>)]) -> Result<(), String> {
    let pid = coordinator_pid(farm);
    let scene = upload_scene(farm, "scene.gltf", files);
    let guard = MemoryGuard::watch(pid, BOMB_KILL_KIB);
    let started = Instant::now();
    let refused = expect_refused(farm, &submission(scene, small_settings()), &BUDGETS);
    let took = started.elapsed();
    let (peak_kib, killed) = guard.peak_kib();
    drop(guard);
    if killed {
        return Err(format!(
            "the coordinator passed {} MiB and was killed ({})",
            BOMB_KILL_KIB / 1024,
            refused.err().unwrap_or_default()
        ));
    }
    refused?;
    if peak_kib >= BOMB_RSS_CEILING_KIB {
        return Err(format!(
            "refused, but the coordinator reached {} MiB (ceiling {} MiB)",
            peak_kib / 1024,
            BOMB_RSS_CEILING_KIB / 1024
        ));
    }
    if took > secs(10) {
        return Err(format!("refused, but only after {took:?}"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The attacks
// ---------------------------------------------------------------------------------------

/// Strangers push bodies at every client route: each is refused with 401 from its head
/// alone, before the body is read.
#[test]
fn unauthenticated_bodies_are_refused_unread() {
    let _serial = serial();
    let Some(farm) = Farm::start(&[], &[]) else {
        return;
    };
    let at = addr(&farm);
    let hash = "ab".repeat(32);
    let job = "cd".repeat(16);
    // (1) Each route that takes a body answers from the head: 64 KiB of a declared 50 MB
    // are sent, then nothing; an answer must come anyway.
    let routes = [
        ("PUT", format!("/v1/blobs/{hash}")),
        ("POST", "/v1/jobs".to_string()),
        ("POST", format!("/v1/jobs/{job}/dispute")),
        ("POST", "/v1/credits".to_string()),
    ];
    let mut wrong = Vec::new();
    for (method, path) in &routes {
        for token in [None, Some("not-a-token-of-this-farm")] {
            let mut s = TcpStream::connect(at).unwrap();
            s.write_all(head(method, path, token, BIG).as_bytes())
                .unwrap();
            let _ = s.write_all(&[0u8; 64 * 1024]);
            let got = ending(&mut s, Instant::now() + secs(3));
            // Crediting is the operator's: a wrong token there is a 403.
            let ok = match path.as_str() {
                "/v1/credits" => matches!(got, Ending::Status(401 | 403)),
                _ => got == Ending::Status(401),
            };
            if !ok {
                wrong.push(format!("{method} {path} token {token:?}: {got:?}"));
            }
        }
    }
    // Routes without a body: 401 for a missing or unknown token.
    for path in [
        "/v1/jobs".to_string(),
        format!("/v1/jobs/{job}"),
        format!("/v1/jobs/{job}/bundle"),
        format!("/v1/jobs/{job}/frames/0"),
        format!("/v1/blobs/{hash}"),
        format!("/v1/scenes/{hash}"),
        "/v1/ledger".to_string(),
        "/v1/nodes".to_string(),
    ] {
        for token in [None, Some("not-a-token-of-this-farm")] {
            let r = call(&farm, "GET", &path, token, b"");
            if r.status != 401 {
                wrong.push(format!(
                    "GET {path} token {token:?}: {} {}",
                    r.status, r.body
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "not refused from the head alone (Silent: the server waited for the body):\n{}",
        wrong.join("\n")
    );
}

/// Twenty strangers upload 50 MB each at once, as fast as the coordinator takes it: each
/// upload ends in 401 or a closed connection, and the coordinator's memory stays flat.
#[test]
fn unauthenticated_upload_flood_leaves_memory_flat() {
    let _serial = serial();
    let Some(farm) = Farm::start(&[], &[]) else {
        return;
    };
    let at = addr(&farm);
    let pid = coordinator_pid(&farm);
    let baseline = memory_kib(pid, "VmHWM");
    let started = Instant::now();
    let uploads: Vec<_> = (0..20)
        .map(|i| {
            let path = format!("/v1/blobs/{}", format!("{i:02x}").repeat(32));
            std::thread::spawn(move || push_body(at, &head("PUT", &path, None, BIG), BIG))
        })
        .collect();
    let endings: Vec<Ending> = uploads.into_iter().map(|t| t.join().unwrap()).collect();
    let took = started.elapsed();
    let peak = memory_kib(pid, "VmHWM");
    assert!(
        endings
            .iter()
            .all(|e| matches!(e, Ending::Status(401) | Ending::Closed)),
        "each upload must end in 401 or a closed connection: {endings:?}"
    );
    assert!(
        peak < FLOOD_RSS_CEILING_KIB,
        "20 unauthenticated 50 MB uploads took the coordinator's peak RSS from {} to {} MiB \
         (ceiling {} MiB) in {took:?}",
        baseline / 1024,
        peak / 1024,
        FLOOD_RSS_CEILING_KIB / 1024
    );
    // The farm still serves its client.
    let r = call(&farm, "GET", "/v1/jobs", Some(TOKEN), b"");
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Registration is open to anyone, so its bodies are small (64 KiB) and its names plain:
/// a 20 MB body is refused from its head, a long or odd name with a short 422 naming
/// `name`, and none of them reaches the log (no echo, no forged line).
#[test]
fn registrations_are_small_and_their_names_plain() {
    let _serial = serial();
    let Some(farm) = Farm::start(&[], &[]) else {
        return;
    };
    let at = addr(&farm);
    let mut wrong = Vec::new();
    // (1) Bodies above 64 KiB: 413, whole (100 KiB sent) or streamed (20 MB declared).
    let long_name = "N".repeat(100 * 1024);
    let big = registration(&farm, "node", &long_name, None);
    let r = call(&farm, "POST", "/v1/register", None, &big);
    if r.status != 413 {
        wrong.push(format!(
            "POST /v1/register with {} bytes: {} (expected 413)",
            big.len(),
            r.status
        ));
    }
    let r = call(
        &farm,
        "POST",
        "/v1/register/challenge",
        None,
        &[b' '; 100 * 1024],
    );
    if r.status != 413 {
        wrong.push(format!(
            "POST /v1/register/challenge with 100 KiB: {} (expected 413)",
            r.status
        ));
    }
    let mut s = TcpStream::connect(at).unwrap();
    s.write_all(head("POST", "/v1/register", None, 20_000_000).as_bytes())
        .unwrap();
    let _ = s.write_all(&[b'{'; 128 * 1024]);
    let got = ending(&mut s, Instant::now() + secs(3));
    if !matches!(got, Ending::Status(413) | Ending::Closed) {
        wrong.push(format!(
            "POST /v1/register declaring 20 MB, 128 KiB sent: {got:?} (expected 413 or closed)"
        ));
    }
    drop(s);
    // (2) Names: 1 to 64 letters, digits, spaces, `.`, `_`, `-`.
    let echo = "E".repeat(1000);
    for name in [
        String::new(),
        echo.clone(),
        "n".repeat(65),
        "node\nFORGED-LINE-1 coordinator: everything is fine".into(),
        "node\u{2028}FORGED-LINE-2".into(),
        "node\u{202e}3-edon".into(),
        "node</script>".into(),
    ] {
        let r = call(
            &farm,
            "POST",
            "/v1/register",
            None,
            &registration(&farm, "node", &name, None),
        );
        if r.status != 422 || !r.body.contains("name") || r.body.len() >= 1024 {
            wrong.push(format!(
                "name {:?}: {} with a {}-byte body {:?} (expected a short 422 naming `name`)",
                name.chars().take(40).collect::<String>(),
                r.status,
                r.body.len(),
                r.body.chars().take(120).collect::<String>()
            ));
        }
    }
    let r = call(
        &farm,
        "POST",
        "/v1/register",
        None,
        &registration(&farm, "node", "render-01 gpu_a.2", None),
    );
    if r.status != 200 {
        wrong.push(format!("a plain name: {} {}", r.status, r.body));
    }
    // (3) The log: no echoed long name, no line an attacker wrote.
    std::thread::sleep(Duration::from_millis(300));
    let log = farm.log("coordinator");
    if log.contains(&echo[..200]) || log.contains(&long_name[..200]) {
        wrong.push("the log repeats a long name".into());
    }
    for l in log.lines() {
        let bare = l.trim_start();
        if bare.starts_with("FORGED") || l.contains("\u{2028}FORGED") {
            wrong.push(format!("a forged log line: {l:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Half-sent heads and stalled bodies are cut off (`--header-timeout-secs 2`,
/// `--body-timeout-secs 2`), and the farm serves its client while 200 of them hang on.
#[test]
fn half_sent_requests_are_cut_off() {
    let _serial = serial();
    let Some(farm) = Farm::start(
        &["--header-timeout-secs", "2", "--body-timeout-secs", "2"],
        &[],
    ) else {
        return;
    };
    let at = addr(&farm);
    let started = Instant::now();
    let deadline = started + secs(6);
    let blob = format!("/v1/blobs/{}", "ef".repeat(32));
    let mut attempts: Vec<(String, TcpStream)> = Vec::new();
    for i in 0..200 {
        let mut s = TcpStream::connect(at).unwrap();
        let half = if i % 2 == 0 {
            "GET /v1/jo"
        } else {
            "GET /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        };
        s.write_all(half.as_bytes()).unwrap();
        attempts.push((format!("half head {half:?} #{i}"), s));
    }
    for (method, path, token) in [
        ("PUT", blob.as_str(), Some(TOKEN)),
        ("POST", "/v1/register", None),
        ("POST", "/v1/jobs", Some(TOKEN)),
    ] {
        let mut s = TcpStream::connect(at).unwrap();
        s.write_all(head(method, path, token, 1000).as_bytes())
            .unwrap();
        let _ = s.write_all(&[b'{'; 10]);
        attempts.push((format!("{method} {path}: 10 of 1000 body bytes"), s));
    }
    // An honest request is served meanwhile.
    let r = call(&farm, "GET", "/v1/jobs", Some(TOKEN), b"");
    assert_eq!(r.status, 200, "{}", r.body);
    let waits: Vec<_> = attempts
        .into_iter()
        .map(|(what, mut s)| {
            std::thread::spawn(move || {
                let end = ending(&mut s, deadline);
                let after = started.elapsed();
                // After an answer (408), the connection must end too.
                let closed = match end {
                    Ending::Status(_) => ending(&mut s, deadline) != Ending::Silent,
                    _ => true,
                };
                (what, end, closed, after)
            })
        })
        .collect();
    let mut wrong = Vec::new();
    for w in waits {
        let (what, end, closed, after) = w.join().unwrap();
        let ok = match end {
            Ending::Closed => true,
            Ending::Status(408) => closed,
            _ => false,
        };
        if !ok {
            let then = if closed {
                ""
            } else {
                ", and the connection stays open"
            };
            wrong.push(format!("{what}: {end:?} after {after:.1?}{then}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} connections not cut within 6 s:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// A client has 4 upload slots and the farm 16: a fifth stalled upload of one client, or
/// the seventeenth of all, is answered 429 at once.
#[test]
fn upload_slots_are_bounded() {
    let _serial = serial();
    let clients = ["c1", "c2", "c3", "c4"];
    let flags: Vec<String> = clients
        .iter()
        .flat_map(|c| {
            [
                "--api-token".to_string(),
                format!("{c}={c}-token-0123456789"),
            ]
        })
        .collect();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let Some(farm) = Farm::start(&flags, &[]) else {
        return;
    };
    let at = addr(&farm);
    // A stalled upload: the head and 1 KiB of a declared 10 MB, then nothing.
    let open = |token: &str, i: usize| -> TcpStream {
        let mut s = TcpStream::connect(at).unwrap();
        let path = format!("/v1/blobs/{}", format!("{i:02x}").repeat(32));
        s.write_all(head("PUT", &path, Some(token), 10_000_000).as_bytes())
            .unwrap();
        // A refused upload may be closed on before this is sent.
        let _ = s.write_all(&[1u8; 1024]);
        s
    };
    // Uploads within the slots are waited for, not answered.
    let quiet = |held: &mut [TcpStream], who: &str| {
        std::thread::sleep(Duration::from_millis(300));
        for (i, s) in held.iter_mut().enumerate() {
            let got = ending(s, Instant::now() + Duration::from_millis(20));
            assert_eq!(got, Ending::Silent, "{who}'s upload {i}, within the slots");
        }
    };
    let mut studio: Vec<TcpStream> = (0..4).map(|i| open(TOKEN, i)).collect();
    quiet(&mut studio, "studio");
    let mut fifth = open(TOKEN, 4);
    let per_client = ending(&mut fifth, Instant::now() + secs(2));
    // Twelve more from three other clients fill the farm's 16; the next is one too many.
    let mut others: Vec<TcpStream> = Vec::new();
    for (c, client) in clients[..3].iter().enumerate() {
        for i in 0..4 {
            others.push(open(&format!("{client}-token-0123456789"), 10 + c * 4 + i));
        }
    }
    quiet(&mut others, "c1, c2 and c3");
    let mut seventeenth = open("c4-token-0123456789", 40);
    let total = ending(&mut seventeenth, Instant::now() + secs(2));
    assert!(
        per_client == Ending::Status(429) && total == Ending::Status(429),
        "a client's fifth upload: {per_client:?}, the farm's seventeenth: {total:?} (both 429)"
    );
}

/// Tiny scenes that declare huge decoded sizes: each is refused with a 422 naming the
/// budget it exceeds, leaves nothing under `scenes/`, and never swells the coordinator
/// (a guard kills it past 1 GiB, and it is restarted for the next bomb). The bombs' scene
/// with one small primitive is accepted.
#[test]
fn decode_bombs_are_refused() {
    let _serial = serial();
    let Some(mut farm) = Farm::start(&[], &[]) else {
        return;
    };
    ready_to_submit(&farm);
    let control = upload_scene(&farm, "scene.gltf", &gltf(1, 1, 3, |_| {}));
    let r = submit(&farm, TOKEN, &submission(control, small_settings()));
    assert_eq!(
        r.status, 200,
        "the bombs' scene, one small primitive: {}",
        r.body
    );

    let mut texture = gltf(1, 1, 3, |doc| {
        doc["meshes"][0]["primitives"][0]["material"] = json!(0);
        doc["materials"] = json!([{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}]);
        doc["meshes"][0]["primitives"][0]["material"] = json!(0);
        doc["materials"] = json!([{"pbrMetallicRoughness": {
            "baseColorTexture": {"index": 0},
            "metallicRoughnessTexture": {"index": 1}
        }}]);
        doc["textures"] = json!([{"source": 0}, {"source": 1}]);
        doc["images"] = json!([{"uri": "bomb.png"}, {"uri": "bomb2.png"}]);
    });
    texture.push(("bomb.png", png_bomb(16384)));
    // Another file (another hash) with the same header: one such image (3 GiB decoded)
    // is within the default budget, two are not.
    let mut second = png_bomb(16384);
    second.extend_from_slice(&png_chunk(b"tEXt", b"Comment\0second"));
    texture.push(("bomb2.png", second));
    let mut environment = gltf(1, 1, 3, |doc| {
        doc["scenes"][0]["extras"] = json!({"tessera_environment": {"image": "sky.hdr"}});
    });
    environment.push(("sky.hdr", hdr_bomb(16000)));
    let bombs = [
        (
            "two PNG textures each declaring 16384x16384 16-bit RGBA (6 GiB decoded) in 600 bytes",
            texture,
        ),
        (
            "an environment .hdr declaring 16000x16000 pixels (3 GB decoded) in 4 KiB",
            environment,
        ),
        (
            "4096 primitives sharing one sparse accessor of 65536 vertices (2^28 decoded)",
            gltf(1, 4096, 65536, |_| {}),
        ),
        (
            "4096 nodes instancing one primitive of 65536 vertices (2^28 after instancing)",
            gltf(4096, 1, 65536, |_| {}),
        ),
    ];
    let mut coordinator = "coordinator".to_string();
    let mut wrong = Vec::new();
    for (i, (what, files)) in bombs.iter().enumerate() {
        if let Err(e) = bomb_refused(&farm, files) {
            wrong.push(format!("{what}: {e}"));
        }
        if !farm.alive(&coordinator) {
            coordinator = format!("coordinator-after-bomb-{i}");
            farm.start_coordinator(&coordinator, &[]);
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Settings that can never render, and jobs too big to ever finish, are refused at submit
/// with a 422 naming the field or limit, leaving nothing on disk; a plain job is accepted.
#[test]
fn unrenderable_and_oversized_jobs_are_refused() {
    let _serial = serial();
    let Some(farm) = Farm::start(&[], &[]) else {
        return;
    };
    ready_to_submit(&farm);
    let scene = cornell_listing(&farm);
    let with = |edit: &dyn Fn(&mut JobSubmission)| {
        let mut job = submission(scene.clone(), small_settings());
        edit(&mut job);
        job
    };
    let cases: Vec<(&str, JobSubmission, &[&str])> = vec![
        (
            "unknown camera",
            with(&|j| j.settings.camera = Some("no-such-camera".into())),
            &["settings.camera"],
        ),
        (
            "frame rate 0/1",
            with(&|j| j.settings.frame_rate = FrameRate { num: 0, den: 1 }),
            &["settings.frame_rate"],
        ),
        (
            "frame rate 24/0",
            with(&|j| j.settings.frame_rate = FrameRate { num: 24, den: 0 }),
            &["settings.frame_rate"],
        ),
        (
            "4 billion bounces",
            with(&|j| j.settings.max_bounces = 4_000_000_000),
            &["settings.max_bounces"],
        ),
        (
            "1025 bounces",
            with(&|j| j.settings.max_bounces = 1025),
            &["settings.max_bounces"],
        ),
        (
            "262144 tasks",
            with(&|j| {
                j.settings.width = 4096;
                j.settings.height = 4096;
                j.settings.spp = 1;
                j.tile_size = Some(8);
                j.batch_size = Some(1);
            }),
            &["max_job_tasks"],
        ),
        (
            "4194304 tiles in 4096 tasks",
            with(&|j| {
                j.settings.width = 16384;
                j.settings.height = 16384;
                j.settings.spp = 1;
                j.tile_size = Some(8);
                j.batch_size = Some(1024);
            }),
            &["max_job_tiles"],
        ),
        (
            "a scene that does not load",
            submission(
                upload_scene(
                    &farm,
                    "broken.gltf",
                    &[(
                        "broken.gltf",
                        br#"{"asset": {"version": "2.0"}, "nodes": 7}"#.to_vec(),
                    )],
                ),
                small_settings(),
            ),
            &["broken.gltf"],
        ),
    ];
    let mut wrong = Vec::new();
    for (what, job, names) in &cases {
        if let Err(e) = expect_refused(&farm, job, names) {
            wrong.push(format!("{what}: {e}"));
        }
    }
    // The edge of what renders is accepted.
    let edge = with(&|j| j.settings.max_bounces = 1024);
    let r = submit(&farm, TOKEN, &edge);
    if r.status != 200 {
        wrong.push(format!("1024 bounces: {} {}", r.status, r.body));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A second client (`rival`) of the farm sees nothing of studio's: its job's status,
/// bundle, frames and dispute are 404, its blobs and scenes are 404, the job list and the
/// ledger show only rival's own; the node list is the operator's.
#[test]
fn clients_see_only_their_own() {
    let _serial = serial();
    let rival = format!("rival={RIVAL_TOKEN}");
    let Some(mut farm) = Farm::start(&["--api-token", &rival], &[]) else {
        return;
    };
    farm.verifier("verifier", "verifier", &["--stub-renderer"], &[]);
    farm.node("n1", &["--stub-renderer"], &[]);
    let job = farm.submit(&cornell_box(), &small_job());
    farm.wait_done(&job, secs(60));
    farm.credit(&["--client=rival"], 1_000_000, "client-rival");
    let bundle = call(
        &farm,
        "GET",
        &format!("/v1/jobs/{job}/bundle"),
        Some(TOKEN),
        b"",
    );
    assert_eq!(bundle.status, 200, "studio's own bundle: {}", bundle.body);
    let scene_hash = bundle.json()["manifest"]["statement"]["scene_hash"]
        .as_str()
        .expect("the manifest's scene hash")
        .to_string();
    let blob = blob_hash(&std::fs::read(cornell_box()).unwrap());

    let mut wrong = Vec::new();
    for (method, path) in [
        ("GET", format!("/v1/jobs/{job}")),
        ("GET", format!("/v1/jobs/{job}/bundle")),
        ("GET", format!("/v1/jobs/{job}/frames/0")),
        ("POST", format!("/v1/jobs/{job}/dispute")),
        ("GET", format!("/v1/blobs/{blob}")),
        ("GET", format!("/v1/scenes/{scene_hash}")),
    ] {
        if method == "GET" {
            let own = call(&farm, method, &path, Some(TOKEN), b"");
            assert_eq!(own.status, 200, "studio {method} {path}: {}", own.body);
        }
        let r = call(&farm, method, &path, Some(RIVAL_TOKEN), b"");
        if r.status != 404 {
            wrong.push(format!(
                "rival {method} {path}: {} (expected 404)",
                r.status
            ));
        }
    }
    let listed = |token: &str| -> Vec<String> {
        let r = call(&farm, "GET", "/v1/jobs", Some(token), b"");
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
            .as_array()
            .expect("a job list")
            .iter()
            .map(|j| j["job_id"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert!(listed(TOKEN).contains(&job), "studio lists its own job");
    if listed(RIVAL_TOKEN).contains(&job) {
        wrong.push("rival's GET /v1/jobs lists studio's job".into());
    }
    let accounts = |token: &str| -> (u16, Vec<String>) {
        let r = call(&farm, "GET", "/v1/ledger", Some(token), b"");
        let names = if r.status == 200 {
            r.json()["accounts"]
                .as_array()
                .expect("ledger accounts")
                .iter()
                .map(|a| a["account"].as_str().unwrap_or_default().to_string())
                .collect()
        } else {
            Vec::new()
        };
        (r.status, names)
    };
    let (status, seen) = accounts(RIVAL_TOKEN);
    let foreign: Vec<&String> = seen
        .iter()
        .filter(|a| *a != "client:rival" && *a != "external:credit:rival")
        .collect();
    if status != 200 || !seen.contains(&"client:rival".to_string()) || !foreign.is_empty() {
        wrong.push(format!(
            "rival's ledger ({status}) shows {foreign:?} besides its own (has client:rival: {})",
            seen.contains(&"client:rival".to_string())
        ));
    }
    let (status, all) = accounts(ADMIN_TOKEN);
    if status != 200
        || !all.contains(&"client:studio".to_string())
        || !all.contains(&"client:rival".to_string())
        || !all.iter().any(|a| a.starts_with("node:"))
    {
        wrong.push(format!("the admin's ledger ({status}): {all:?}"));
    }
    for (token, want) in [(TOKEN, 403), (RIVAL_TOKEN, 403), (ADMIN_TOKEN, 200)] {
        let r = call(&farm, "GET", "/v1/nodes", Some(token), b"");
        if r.status != want {
            wrong.push(format!(
                "GET /v1/nodes as {token}: {} (expected {want})",
                r.status
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Eight clients upload the same blob at once: each is told it is stored (200 or 201),
/// none gets a 500, and the stored blob is whole.
#[test]
fn concurrent_uploads_of_one_blob_all_succeed() {
    let _serial = serial();
    // Eight at once from one client: more than its default four upload slots.
    let Some(farm) = Farm::start(&["--max-uploads-per-client", "8"], &[]) else {
        return;
    };
    let at = addr(&farm);
    let mut wrong = Vec::new();
    for round in 0..3u8 {
        let bytes: Arc<Vec<u8>> = Arc::new(
            (0..2_000_000u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8 ^ round)
                .collect(),
        );
        let hash = blob_hash(&bytes);
        let gate = Arc::new(Barrier::new(8));
        let puts: Vec<_> = (0..8)
            .map(|_| {
                let (bytes, gate, hash) = (bytes.clone(), gate.clone(), hash.clone());
                std::thread::spawn(move || {
                    let mut s = TcpStream::connect(at).unwrap();
                    let path = format!("/v1/blobs/{hash}");
                    let head = head("PUT", &path, Some(TOKEN), bytes.len() as u64);
                    gate.wait();
                    s.write_all(head.as_bytes()).unwrap();
                    s.write_all(&bytes).unwrap();
                    let mut raw = Vec::new();
                    let _ = s.read_to_end(&mut raw);
                    parse_reply(&raw).map(|r| (r.status, r.body))
                })
            })
            .collect();
        for p in puts {
            match p.join().unwrap() {
                Some((200 | 201, _)) => {}
                other => wrong.push(format!("round {round}: {other:?}")),
            }
        }
        let stored =
            std::fs::read(farm.path(&format!("coordinator-data/blobs/{hash}"))).unwrap_or_default();
        if stored != *bytes {
            wrong.push(format!("round {round}: the stored blob is not the upload"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The data folder is the coordinator's alone (0700), and so is its database (0600).
#[test]
fn data_folder_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let _serial = serial();
    let Some(farm) = Farm::start(&[], &[]) else {
        return;
    };
    let mode = |rel: &str| {
        std::fs::metadata(farm.path(rel))
            .unwrap_or_else(|e| panic!("{rel}: {e}"))
            .permissions()
            .mode()
            & 0o777
    };
    let (dir, db) = (
        mode("coordinator-data"),
        mode("coordinator-data/coordinator.db"),
    );
    assert!(
        dir == 0o700 && db == 0o600,
        "data folder {dir:o}, coordinator.db {db:o} (expected 700 and 600)"
    );
}

/// Per-client quotas (`--max-client-jobs 2`, `--max-client-bytes 1000000`) and worker
/// sessions that end (`--session-ttl-secs 2`).
#[test]
fn client_quotas_and_session_lifetime_hold() {
    let _serial = serial();
    let Some(farm) = Farm::start(
        &[
            "--max-client-jobs",
            "2",
            "--max-client-bytes",
            "1000000",
            "--session-ttl-secs",
            "2",
        ],
        &[],
    ) else {
        return;
    };
    ready_to_submit(&farm);
    let reg = registration(&farm, "node", "short-lived", None);
    let r = call(&farm, "POST", "/v1/register", None, &reg);
    assert_eq!(r.status, 200, "{}", r.body);
    let session = r.json()["session"].as_str().unwrap().to_string();
    let scene = cornell_listing(&farm);
    let mut wrong = Vec::new();
    for i in 0..3 {
        let r = submit(&farm, TOKEN, &submission(scene.clone(), small_settings()));
        let ok = if i < 2 {
            r.status == 200
        } else {
            (400..500).contains(&r.status) && r.body.contains("max_client_jobs")
        };
        if !ok {
            wrong.push(format!("job {}: {} {}", i + 1, r.status, r.body));
        }
    }
    // The Cornell box already counts against the bytes; 600 kB fits once at most.
    let mut refused = None;
    for i in 0..3u8 {
        let bytes = vec![i; 600_000];
        let hash = blob_hash(&bytes);
        let r = call(
            &farm,
            "PUT",
            &format!("/v1/blobs/{hash}"),
            Some(TOKEN),
            &bytes,
        );
        if r.status >= 400 {
            refused = Some(r);
            break;
        }
    }
    match refused {
        Some(r) if r.status < 500 && r.body.contains("max_client_bytes") => {}
        other => wrong.push(format!("1.8 MB of blobs with 1 MB allowed: {other:?}")),
    }
    // A session token works, then expires.
    let path = format!("/v1/scenes/{}", "ab".repeat(32));
    let fresh = call(&farm, "GET", &path, Some(&session), b"").status;
    std::thread::sleep(secs(3));
    let stale = call(&farm, "GET", &path, Some(&session), b"").status;
    if fresh != 404 || stale != 401 {
        wrong.push(format!(
            "the session answered {fresh}, then {stale} after its TTL (404, 401)"
        ));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A worker whose session expired while it was quiet (a verifier with nothing to check)
/// registers again by itself on the 401 and gets what it asked for: the Rust client's
/// renewal, on the real coordinator.
#[test]
fn a_worker_whose_session_expired_registers_again_by_itself() {
    let _serial = serial();
    let Some(farm) = Farm::start(&["--session-ttl-secs", "1"], &[]) else {
        return;
    };
    ready_to_submit(&farm);
    let scene = cornell_listing(&farm);
    let r = submit(&farm, TOKEN, &submission(scene.clone(), small_settings()));
    assert_eq!(r.status, 200, "{}", r.body);
    let scene_hash = r.json()["scene_hash"].as_str().unwrap().to_string();
    let rt = harness::runtime();
    let key = SecretKey::generate();
    let (registered, client) = rt
        .block_on(tessera_node::worker::register(
            &farm.url,
            None,
            Role::Node,
            "sleepy node",
            &key,
            stub_caps(),
        ))
        .expect("registers");
    // The bare session, without renewal, is refused once the TTL has passed...
    std::thread::sleep(secs(2));
    let bare = call(
        &farm,
        "GET",
        &format!("/v1/scenes/{scene_hash}"),
        Some(&registered.session),
        b"",
    );
    assert_eq!(bare.status, 401, "{}", bare.body);
    assert!(bare.body.contains("session expired"), "{}", bare.body);
    // ...and the worker's client registers again and gets the listing.
    std::thread::sleep(secs(2));
    let listing = rt
        .block_on(client.scene(&scene_hash))
        .expect("the client renews its session and retries");
    assert_eq!(listing, scene);
    let log = farm.log("coordinator");
    assert_eq!(
        log.matches("registered worker=").count(),
        3,
        "the verifier, the node, and the node again: {log}"
    );
}

// ---------------------------------------------------------------------------------------
// Configuration: token files, clashes, and what is printed (no broker needed)
// ---------------------------------------------------------------------------------------

/// `tessera coordinator` with `args` against a broker that is not there, given 10 s to
/// exit: (status code, stdout, stderr), `None` for the code if it was still running.
fn coordinator_exit(args: &[&str]) -> (Option<i32>, String, String) {
    let data = tempfile::tempdir().unwrap();
    let mut child = tessera()
        .args([
            "coordinator",
            "--amqp",
            "amqp://nobody:nothing@127.0.0.1:1/%2f",
        ])
        .arg("--data")
        .arg(data.path())
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("tessera coordinator");
    let deadline = Instant::now() + secs(10);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (code, out, err)
}

/// Tokens come from files (`CLIENT=TOKEN` or `TOKEN` lines, `#` comments), and
/// `--print-config` shows none of them, from files or flags.
#[test]
fn token_files_are_read_and_tokens_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let api = write(
        "api",
        "# studio's token, renewed\nstudio=studio-file-secret-0001\n\
         # rival=rival-old-secret-0000\nrival=rival-file-secret-0002\n\n",
    );
    let node = write("node", "node-file-secret-0003\n");
    let verifier = write("verifier", "# granted\nverifier-file-secret-0004\n");
    let admin = write("admin", "admin-file-secret-0005\n");
    let (code, out, err) = coordinator_exit(&[
        "--print-config",
        "--api-token-file",
        &api,
        "--node-token-file",
        &node,
        "--verifier-token-file",
        &verifier,
        "--admin-token-file",
        &admin,
    ]);
    assert_eq!(code, Some(0), "--print-config with token files: {err}");
    for shown in ["studio=***", "rival=***"] {
        assert!(out.contains(shown), "{shown} missing from {out}");
    }
    assert!(
        !out.contains("rival-old"),
        "a commented-out token was read: {out}"
    );
    assert!(
        !out.contains("secret") && !err.contains("secret"),
        "a token is printed: {out}{err}"
    );
    let (code, out, err) = coordinator_exit(&[
        "--print-config",
        "--api-token",
        "studio=studio-flag-secret-0006",
        "--api-token",
        "bare-flag-secret-0007",
    ]);
    assert_eq!(code, Some(0), "--print-config: {err}");
    assert!(out.contains("studio=***"), "{out}");
    assert!(
        !out.contains("secret") && !err.contains("secret"),
        "a token is printed: {out}{err}"
    );
}

/// One token for two clients, or a client token that is also the node, verifier or admin
/// token, stops the coordinator with status 2 and a message that names the clash but not
/// the token.
#[test]
fn clashing_tokens_stop_the_coordinator() {
    let same = "clash-secret-0123456789";
    let cases: Vec<(&str, Vec<String>, &[&str])> = vec![
        (
            "two clients",
            vec![
                "--api-token".into(),
                format!("alpha={same}"),
                "--api-token".into(),
                format!("beta={same}"),
            ],
            &["alpha", "beta"],
        ),
        (
            "client and node",
            vec![
                "--api-token".into(),
                format!("alpha={same}"),
                "--node-token".into(),
                same.into(),
            ],
            &["alpha", "node"],
        ),
        (
            "client and verifier",
            vec![
                "--api-token".into(),
                format!("alpha={same}"),
                "--verifier-token".into(),
                same.into(),
            ],
            &["alpha", "verifier"],
        ),
        (
            "client and admin",
            vec![
                "--api-token".into(),
                format!("alpha={same}"),
                "--admin-token".into(),
                same.into(),
            ],
            &["alpha", "admin"],
        ),
    ];
    // The four run at once: a build that does not check waits out its 10 s only once.
    let runs: Vec<_> = cases
        .into_iter()
        .map(|(what, args, names)| {
            std::thread::spawn(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                (what, names, coordinator_exit(&args))
            })
        })
        .collect();
    let mut wrong = Vec::new();
    for run in runs {
        let (what, names, (code, out, err)) = run.join().unwrap();
        let named = names.iter().all(|n| err.contains(n));
        if code != Some(2) || !named || err.contains(same) || out.contains(same) {
            wrong.push(format!(
                "{what}: exit {code:?} (expected 2), stderr naming {names:?}: {named}, \
                 token shown: {}\n  {}",
                err.contains(same) || out.contains(same),
                err.lines().last().unwrap_or_default()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

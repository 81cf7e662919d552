//! The farm under test: a coordinator, nodes and verifiers as separate `tessera` processes
//! on one RabbitMQ namespace, in one temporary folder, and the client commands that drive
//! and inspect them.
//!
//! Every daemon writes its stdout and stderr to `DIR/<name>.log`. When a test fails, the
//! [`Farm`] prints every log as it is dropped (that is how a failure is debugged), kills
//! whatever still runs (SIGKILL), and deletes the namespace's queues.
//!
//! Each daemon reaches the broker as its role's user (`tessera-test-coordinator`, `-node`,
//! `-verifier`: least privilege on the test namespaces, made by `.ci/broker-users`, which
//! the harness runs once when they do not work yet), as a real farm does.

#![allow(dead_code)] // each test uses a part

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use tessera_bus::{AmqpBus, AmqpConfig, Parked, Topology};
use tessera_protocol::bundle::ProofBundle;
use tessera_protocol::payments::{account, TransferKind};

/// Every test of the file holds this: some disrupt the broker, and the machine has two
/// cores.
static SERIAL: Mutex<()> = Mutex::new(());

/// Take the file's lock (a failed test poisons it; the next one goes on).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The client's API token (`studio=…`: the ledger account is `client:studio`).
pub const TOKEN: &str = "farm-test-token";
/// The token that grants the verifier role in test farms.
pub const VERIFIER_TOKEN: &str = "farm-verifier-token";
/// The operator's admin token in test farms (`tessera credit`).
pub const ADMIN_TOKEN: &str = "farm-admin-token-0";
/// What the operator deposits as each node's stake.
pub const NODE_STAKE: u64 = 1_000_000;
/// What the operator credits the client `studio` with.
pub const CLIENT_CREDIT: u64 = 1_000_000_000_000;

/// What the daemons log: the farm crates at info (bus reconnects included).
pub const LOG: &str = "warn,tessera=info,tessera_coordinator=info,tessera_node=info,\
tessera_verifier=info,tessera_bus=info,tessera_api=info";

/// The broker the tests use.
pub fn amqp_url() -> String {
    std::env::var("TESSERA_TEST_AMQP")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// The broker as the test user of `role` (`coordinator`, `node` or `verifier`), whose
/// password is its name (`.ci/broker-users`).
pub fn role_url(role: &str) -> String {
    let url = amqp_url();
    let (scheme, rest) = url.split_once("://").expect("an amqp:// url");
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://tessera-test-{role}:tessera-test-{role}@{host}")
}

/// Make sure the role users exist with their permissions (`.ci/broker-users`, once per
/// test run); false (after printing `SKIPPED`) if that cannot be done and no broker is
/// required.
fn role_users() -> bool {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    let done = DONE.get_or_init(|| {
        let script = root().join(".ci/broker-users");
        match Command::new("bash").arg(&script).output() {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(format!(
                "{} failed: {}{}",
                script.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )),
            Err(e) => Err(format!("cannot run {}: {e}", script.display())),
        }
    });
    match done {
        Ok(()) => true,
        Err(e) if broker_required() => panic!("TESSERA_REQUIRE_BROKER=1 but {e}"),
        Err(e) => {
            eprintln!("SKIPPED: {e}");
            false
        }
    }
}

/// CI sets `TESSERA_REQUIRE_BROKER=1`: no broker is then a failure, not a skip.
pub fn broker_required() -> bool {
    std::env::var("TESSERA_REQUIRE_BROKER").is_ok_and(|v| v == "1")
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Cornell box sample scene.
pub fn cornell_box() -> PathBuf {
    root().join("scenes/cornell-box.glb")
}

/// A small tokio runtime for the tests that use the bus or the API client directly.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A fresh namespace: `t` and 16 hex digits.
fn namespace() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mix = nanos
        ^ (u64::from(std::process::id()) << 40)
        ^ N.fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    format!("t{mix:016x}")
}

/// A TCP port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Connect to the broker on `namespace` as the coordinator's user, or `None` when there is
/// none (after printing `SKIPPED`), or panic when one is required.
pub fn connect_bus(rt: &tokio::runtime::Runtime, namespace: &str) -> Option<AmqpBus> {
    connect_bus_as(rt, namespace, "coordinator")
}

/// Connect to the broker on `namespace` as the user of `role` (`coordinator`, `node` or
/// `verifier`; passive, as the daemons of the role are, except the coordinator), or `None`
/// when there is none (after printing `SKIPPED`), or panic when one is required.
pub fn connect_bus_as(
    rt: &tokio::runtime::Runtime,
    namespace: &str,
    role: &str,
) -> Option<AmqpBus> {
    if !role_users() {
        return None;
    }
    let mut cfg = AmqpConfig::new(role_url(role));
    if role != "coordinator" {
        cfg.topology = Topology::Passive;
    }
    cfg.namespace = namespace.to_string();
    cfg.reconnect_max_backoff = Duration::from_millis(500);
    cfg.prefetch.insert("tasks".into(), 1);
    match rt.block_on(AmqpBus::connect(cfg)) {
        Ok(bus) => Some(bus),
        Err(e) if broker_required() => {
            panic!(
                "TESSERA_REQUIRE_BROKER=1 but no broker at {}: {e}",
                amqp_url()
            )
        }
        Err(e) => {
            eprintln!("SKIPPED: no broker at {}: {e}", amqp_url());
            None
        }
    }
}

/// `tessera` with no `TESSERA_*` variable inherited from the test's environment.
pub fn tessera() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tessera"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TESSERA_") {
            c.env_remove(k);
        }
    }
    c.env("TESSERA_LOG", LOG).env("NO_COLOR", "1");
    c
}

/// Run `cmd` to the end; panic with its output unless it succeeded.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run tessera");
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Poll `f` every 100 ms until it gives a value; panic naming `what` after `timeout`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Run `rabbitmqctl args`; false (the test is skipped) if it cannot run and no broker is
/// required, a panic if one is.
pub fn rabbitmqctl(args: &[&str]) -> bool {
    match Command::new("rabbitmqctl").args(args).output() {
        Ok(out) if out.status.success() => true,
        Ok(out) if broker_required() => panic!(
            "rabbitmqctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) if broker_required() => panic!("cannot run rabbitmqctl {args:?}: {e}"),
        Ok(out) => {
            eprintln!(
                "SKIPPED: rabbitmqctl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            false
        }
        Err(e) => {
            eprintln!("SKIPPED: cannot run rabbitmqctl {args:?}: {e}");
            false
        }
    }
}

/// Starts the broker app again if a test ends (fails) while it is stopped.
pub struct StartAppOnDrop {
    /// Whether the broker may still be stopped.
    pub armed: bool,
}

impl Drop for StartAppOnDrop {
    fn drop(&mut self) {
        if self.armed {
            let _ = Command::new("rabbitmqctl").arg("start_app").status();
        }
    }
}

/// One daemon process.
struct Daemon {
    name: String,
    child: Child,
    log: PathBuf,
    status: Option<ExitStatus>,
}

/// A daemon's start: subcommand, flags, extra environment.
#[derive(Clone, Debug)]
struct Spec {
    args: Vec<String>,
    env: Vec<(String, String)>,
}

/// The farm of one test.
pub struct Farm {
    /// The test's folder (data, keys, caches, logs, outputs).
    pub dir: tempfile::TempDir,
    /// The AMQP namespace of every daemon.
    pub ns: String,
    /// The coordinator's URL.
    pub url: String,
    port: u16,
    daemons: Vec<Daemon>,
    coordinator_flags: Vec<String>,
}

/// What a passed invariant check leaves for further assertions.
pub struct Checked {
    /// The fetched proof bundle.
    pub bundle: ProofBundle,
    /// Where `fetch` wrote the frames (`f-#.png`, `f-#.exr`) and `proof.json`.
    pub out: PathBuf,
    /// The ledger's balances.
    pub ledger: BTreeMap<String, i64>,
}

impl Farm {
    /// A farm with a coordinator started with `flags` (and `env`), or `None` (test
    /// skipped) without a broker.
    pub fn start(flags: &[&str], env: &[(&str, &str)]) -> Option<Farm> {
        let ns = namespace();
        {
            let rt = runtime();
            let bus = connect_bus(&rt, &ns)?;
            rt.block_on(bus.shutdown());
        }
        let port = free_port();
        let mut farm = Farm {
            dir: tempfile::tempdir().expect("temp dir"),
            ns,
            url: format!("http://127.0.0.1:{port}"),
            port,
            daemons: Vec::new(),
            coordinator_flags: flags.iter().map(|s| s.to_string()).collect(),
        };
        farm.start_coordinator("coordinator", env);
        Some(farm)
    }

    /// Start (or restart) the coordinator on the farm's port, data folder and namespace.
    pub fn start_coordinator(&mut self, name: &str, env: &[(&str, &str)]) {
        let mut args: Vec<String> = [
            "coordinator",
            "--amqp",
            &role_url("coordinator"),
            "--listen",
            &format!("127.0.0.1:{}", self.port),
            "--data",
            &self.path("coordinator-data").display().to_string(),
            "--api-token",
            &format!("studio={TOKEN}"),
            "--namespace",
            &self.ns,
            // Hold-backs are released as each job ends, so every test ends with them at 0.
            "--challenge-window",
            "0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(self.coordinator_flags.iter().cloned());
        // Verifiers are granted their role with a token; the operator credits accounts
        // with the admin token.
        args.extend(
            [
                "--verifier-token",
                VERIFIER_TOKEN,
                "--admin-token",
                ADMIN_TOKEN,
            ]
            .map(String::from),
        );
        self.spawn(name, &args, env);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(status) = self.exit_status(name) {
                panic!("{name} exited ({status}) before listening");
            }
            assert!(
                Instant::now() < deadline,
                "{name} is not listening after 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A path in the test's folder.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Make `DIR/<name>.key` unless it exists; its public key (hex).
    pub fn key(&self, name: &str) -> String {
        let path = self.path(&format!("{name}.key"));
        if !path.exists() {
            run_ok(tessera().arg("keygen").arg("-o").arg(&path));
        }
        let text = std::fs::read_to_string(&path).unwrap();
        tessera_protocol::keys::SecretKey::from_key_file(&text, "test key")
            .unwrap()
            .public()
            .to_string()
    }

    /// Start a node (`role` "node") or verifier named `name` with the key `key` (made if
    /// missing), the extra `flags` and `env`; `--name key` so that restarts keep the name.
    pub fn start_worker(
        &mut self,
        role: &str,
        name: &str,
        key: &str,
        flags: &[&str],
        env: &[(&str, &str)],
    ) {
        self.key(key);
        let mut args: Vec<String> = [
            role,
            "--amqp",
            &role_url(role),
            "--coordinator",
            &self.url,
            "--key",
            &self.path(&format!("{key}.key")).display().to_string(),
            "--name",
            key,
            "--cache",
            &self.path(&format!("{name}-cache")).display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(flags.iter().map(|s| s.to_string()));
        if role == "verifier" && !flags.contains(&"--token") {
            args.extend(["--token", VERIFIER_TOKEN].map(String::from));
        }
        self.spawn(name, &args, env);
    }

    /// Start a node and wait until it serves.
    pub fn node(&mut self, name: &str, flags: &[&str], env: &[(&str, &str)]) {
        self.node_with_key(name, name, flags, env);
    }

    /// Start a node named `name` with key `key` and wait until it serves; the operator
    /// deposits its stake ([`NODE_STAKE`], once per key).
    pub fn node_with_key(&mut self, name: &str, key: &str, flags: &[&str], env: &[(&str, &str)]) {
        self.start_worker("node", name, key, flags, env);
        self.wait_log(name, "node serving", Duration::from_secs(20));
        let stake = format!("--stake={}", self.key(key));
        self.credit(&[&stake], NODE_STAKE, &format!("stake-{}", self.key(key)));
    }

    /// `tessera credit` with the admin token: `target` is `["--client=NAME"]` or
    /// `["--stake=KEY"]`; the command's output.
    pub fn credit(&self, target: &[&str], amount: u64, reference: &str) -> String {
        let mut c = tessera();
        c.arg("credit")
            .args(target)
            .args(["--amount", &amount.to_string(), "--reference", reference])
            .args(["--coordinator", &self.url, "--token", ADMIN_TOKEN]);
        run_ok(&mut c)
    }

    /// Start a verifier and wait until it serves.
    pub fn verifier(&mut self, name: &str, key: &str, flags: &[&str], env: &[(&str, &str)]) {
        self.start_worker("verifier", name, key, flags, env);
        self.wait_log(name, "verifier serving", Duration::from_secs(20));
    }

    fn spawn(&mut self, name: &str, args: &[String], env: &[(&str, &str)]) {
        assert!(
            self.daemons.iter().all(|d| d.name != name),
            "daemon name {name} used twice"
        );
        let log = self.path(&format!("{name}.log"));
        let open = || {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .expect("log file")
        };
        let mut cmd = tessera();
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(open())
            .stderr(open());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        self.daemons.push(Daemon {
            name: name.to_string(),
            child,
            log,
            status: None,
        });
    }

    fn daemon(&mut self, name: &str) -> &mut Daemon {
        self.daemons
            .iter_mut()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("no daemon {name}"))
    }

    /// The exit status of a daemon that has exited.
    pub fn exit_status(&mut self, name: &str) -> Option<ExitStatus> {
        let d = self.daemon(name);
        if d.status.is_none() {
            d.status = d.child.try_wait().expect("try_wait");
        }
        d.status
    }

    /// Whether the daemon still runs.
    pub fn alive(&mut self, name: &str) -> bool {
        self.exit_status(name).is_none()
    }

    /// SIGKILL the daemon and reap it.
    pub fn kill(&mut self, name: &str) {
        let d = self.daemon(name);
        assert!(d.status.is_none(), "{name} had already exited");
        let _ = d.child.kill();
        d.status = Some(d.child.wait().expect("wait"));
    }

    /// Wait until the daemon exits by itself; its status.
    pub fn wait_exit(&mut self, name: &str, timeout: Duration) -> ExitStatus {
        wait_until(&format!("{name} exits"), timeout, || self.exit_status(name))
    }

    /// The daemon's log so far.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(&format!("{name}.log"))).unwrap_or_default()
    }

    /// How many lines of the daemon's log contain `needle`.
    pub fn count(&self, name: &str, needle: &str) -> usize {
        self.log(name)
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Wait until the daemon's log contains `needle`.
    pub fn wait_log(&mut self, name: &str, needle: &str, timeout: Duration) {
        self.wait_count(name, needle, 1, timeout);
    }

    /// Wait until `needle` is on `n` lines of the daemon's log (or more).
    pub fn wait_count(&mut self, name: &str, needle: &str, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let have = self.count(name, needle);
            if have >= n {
                return;
            }
            if let Some(status) = self.exit_status(name) {
                panic!("{name} exited ({status}) with {have} of {n} log lines {needle:?}");
            }
            assert!(
                Instant::now() < deadline,
                "{name}: {have} of {n} log lines {needle:?} after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A client command with the coordinator's URL and token.
    pub fn client(&self, args: &[&str]) -> Command {
        let mut c = tessera();
        c.args(args)
            .args(["--coordinator", &self.url, "--token", TOKEN]);
        c
    }

    /// Submit `scene` with `flags`; the job id. The operator credits the client first
    /// ([`CLIENT_CREDIT`], once).
    pub fn submit<S: AsRef<std::ffi::OsStr>>(&self, scene: &Path, flags: &[S]) -> String {
        self.credit(&["--client=studio"], CLIENT_CREDIT, "client-studio");
        let mut c = self.client(&["submit"]);
        c.arg(scene).args(flags);
        let out = run_ok(&mut c);
        let job = out.lines().last().unwrap_or_default().trim().to_string();
        assert_eq!(job.len(), 32, "submit printed {out:?}");
        job
    }

    /// `tessera status JOB --json`.
    pub fn status(&self, job: &str) -> Value {
        let out = run_ok(&mut self.client(&["status", job, "--json"]));
        serde_json::from_str(&out).expect("status --json prints JSON")
    }

    /// The job's state (`queued`, `rendering`, …).
    pub fn state(&self, job: &str) -> String {
        self.status(job)["state"].as_str().unwrap_or("").to_string()
    }

    /// Wait until the job is in one of `states`; panics if it failed.
    pub fn wait_state(&self, job: &str, states: &[&str], timeout: Duration) -> Value {
        wait_until(&format!("job {job} reaches {states:?}"), timeout, || {
            let s = self.status(job);
            let state = s["state"].as_str().unwrap_or("");
            assert!(
                state != "failed" || states.contains(&"failed"),
                "job {job} failed: {s}"
            );
            states.contains(&state).then_some(s)
        })
    }

    /// Wait until the job is done.
    pub fn wait_done(&self, job: &str, timeout: Duration) -> Value {
        self.wait_state(job, &["done"], timeout)
    }

    /// An operator command: the coordinator's URL and the admin token.
    pub fn operator(&self, args: &[&str]) -> Command {
        let mut c = tessera();
        c.args(args)
            .args(["--coordinator", &self.url, "--token", ADMIN_TOKEN]);
        c
    }

    /// Messages ready on the namespace's queue `queue` (`rabbitmqctl list_queues`).
    pub fn ready(&self, queue: &str) -> u64 {
        let out = Command::new("rabbitmqctl")
            .args([
                "list_queues",
                "-q",
                "--no-table-headers",
                "name",
                "messages_ready",
            ])
            .output()
            .expect("rabbitmqctl runs");
        assert!(out.status.success(), "rabbitmqctl list_queues failed");
        let name = format!("{}.{queue}", self.ns);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(char::is_whitespace))
            .find(|(n, _)| *n == name)
            .and_then(|(_, count)| count.trim().parse().ok())
            .unwrap_or(0)
    }

    /// `tessera nodes --json` (an operator's view).
    pub fn nodes(&self) -> Vec<Value> {
        let out = run_ok(&mut self.operator(&["nodes", "--json"]));
        serde_json::from_str(&out).expect("nodes --json prints JSON")
    }

    /// Tasks leased to the worker named `name` now.
    pub fn leased(&self, name: &str) -> u64 {
        self.nodes()
            .iter()
            .find(|n| n["name"] == name)
            .and_then(|n| n["leased_tasks"].as_u64())
            .unwrap_or(0)
    }

    /// `tessera ledger --json` (the operator's whole ledger) as account → balance;
    /// asserts its total is 0.
    pub fn ledger(&self) -> BTreeMap<String, i64> {
        let out = run_ok(&mut self.operator(&["ledger", "--json"]));
        let v: Value = serde_json::from_str(&out).expect("ledger --json prints JSON");
        assert_eq!(v["total"], 0, "the ledger's total is not 0: {v}");
        let accounts = v["accounts"].as_array().expect("ledger accounts");
        let map: BTreeMap<String, i64> = accounts
            .iter()
            .map(|a| {
                (
                    a["account"].as_str().unwrap().to_string(),
                    a["balance"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(map.values().sum::<i64>(), 0, "balances do not sum to 0");
        map
    }

    /// The invariants every test ends with, on a finished `job`: the fetched bundle and
    /// frames audit; the ledger sums to 0; no transfer key is used twice; every final
    /// tile is paid once (the pay-on-pass transfers cover exactly the final tiles); each
    /// node's balance is what the bundle paid it, which is the price of the final tiles
    /// it rendered; the job's escrow and hold-backs are empty; no slash, no refund.
    pub fn check_invariants(&self, job: &str) -> Checked {
        let status = self.status(job);
        assert_eq!(status["state"], "done", "{status}");
        let out = self.path(&format!("fetched-{}", &job[..8]));
        let pattern = out.join("f-#.png");
        let proof = out.join("proof.json");
        run_ok(
            self.client(&["fetch", job])
                .arg("-o")
                .arg(&pattern)
                .arg("--proof")
                .arg(&proof),
        );
        let bundle: ProofBundle =
            serde_json::from_slice(&std::fs::read(&proof).expect("fetched proof bundle"))
                .expect("the fetched bundle parses");
        let m = &bundle.manifest.statement;
        assert_eq!(hex::encode(m.job_id), job);
        let mut audit = tessera();
        audit.arg("audit").arg(&proof);
        for f in m.frame_start..=m.frame_end {
            audit.arg("--image").arg(out.join(format!("f-{f}.exr")));
        }
        run_ok(&mut audit);

        let ledger = self.ledger();
        let transfers = &bundle.payments.statement.transfers;
        let mut keys = BTreeSet::new();
        for t in transfers {
            assert!(keys.insert(&t.key), "transfer key {} appears twice", t.key);
            assert!(
                !matches!(t.kind, TransferKind::Slash | TransferKind::Refund),
                "no node cheated and the job finished, yet: {t:?}"
            );
        }
        let final_tiles: Vec<_> = bundle.frames.iter().flat_map(|f| &f.tiles).collect();
        assert_eq!(
            final_tiles.len() as u64,
            status["tiles_total"].as_u64().unwrap(),
            "final tiles vs the job's tiles"
        );
        let paid_tiles: u64 = transfers
            .iter()
            .filter(|t| t.kind == TransferKind::PayOnPass)
            .map(|t| u64::from(t.tiles))
            .sum();
        assert_eq!(
            paid_tiles,
            final_tiles.len() as u64,
            "pay-on-pass transfers cover {paid_tiles} tiles, the job has {} final tiles",
            final_tiles.len()
        );
        // What each node earned: the price of its final tiles.
        let mut earned: BTreeMap<String, i64> = BTreeMap::new();
        for t in &final_tiles {
            let price = m.pricing.tile_price(&m.tier, t.rect, m.settings.spp);
            *earned.entry(account::node(&t.node)).or_default() += price as i64;
        }
        let mut paid: BTreeMap<String, i64> = BTreeMap::new();
        for t in transfers {
            if matches!(t.kind, TransferKind::PayOnPass | TransferKind::Release) {
                *paid.entry(t.to.clone()).or_default() += t.amount as i64;
            }
        }
        let nodes: BTreeSet<&String> = earned
            .keys()
            .chain(paid.keys())
            .chain(ledger.keys().filter(|a| a.starts_with("node:")))
            .collect();
        for n in nodes {
            let e = earned.get(n).copied().unwrap_or(0);
            let p = paid.get(n).copied().unwrap_or(0);
            let l = ledger.get(n).copied().unwrap_or(0);
            assert!(
                e == p && p == l,
                "{n}: earned {e} for its final tiles, the bundle paid {p}, the ledger holds {l}"
            );
        }
        for (a, b) in &ledger {
            if a == &account::escrow(job) || a.starts_with(&format!("holdback:{job}:")) {
                assert_eq!(*b, 0, "{a} still holds {b} after the job is done");
            }
        }
        Checked {
            bundle,
            out,
            ledger,
        }
    }

    /// What is in the namespace's parking queue (read, left in place).
    pub fn parked(&self) -> Vec<Parked> {
        let rt = runtime();
        let bus = connect_bus(&rt, &self.ns).expect("the broker was there at the start");
        let parked = rt
            .block_on(bus.parked())
            .expect("reading the parking queue");
        rt.block_on(bus.shutdown());
        parked
    }

    /// Assert the parking queue holds exactly the messages `ids` (nothing a daemon sent).
    pub fn assert_parked(&self, ids: &[&str]) {
        let parked = self.parked();
        let got: BTreeSet<&str> = parked.iter().map(|p| p.message_id.as_str()).collect();
        let want: BTreeSet<&str> = ids.iter().copied().collect();
        assert_eq!(got, want, "parked: {parked:?}");
    }

    fn delete_queues(&self) {
        let Ok(out) = Command::new("rabbitmqctl")
            .args(["list_queues", "-q", "--no-table-headers", "name"])
            .output()
        else {
            return;
        };
        let prefix = format!("{}.", self.ns);
        let list = String::from_utf8_lossy(&out.stdout);
        let deletions: Vec<_> = list
            .lines()
            .map(str::trim)
            .filter(|q| q.starts_with(&prefix))
            .filter_map(|q| {
                Command::new("rabbitmqctl")
                    .args(["delete_queue", q])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .ok()
            })
            .collect();
        for mut d in deletions {
            let _ = d.wait();
        }
    }
}

impl Drop for Farm {
    fn drop(&mut self) {
        for d in &mut self.daemons {
            if d.status.is_none() {
                let _ = d.child.kill();
                d.status = d.child.wait().ok();
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "==== farm logs (namespace {}, folder {})",
                self.ns,
                self.dir.path().display()
            );
            for d in &self.daemons {
                let text = std::fs::read_to_string(&d.log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let skip = lines.len().saturating_sub(400);
                eprintln!(
                    "==== {} ({}; {} lines{}) ====",
                    d.name,
                    d.status.map_or("running".into(), |s| s.to_string()),
                    lines.len(),
                    if skip > 0 { ", the last 400" } else { "" }
                );
                for l in &lines[skip..] {
                    eprintln!("{l}");
                }
            }
        }
        self.delete_queues();
    }
}

/// Submit flags of a job for the stand-in renderer: `width`×`height` in 16-pixel tiles,
/// `batch` tiles per task. 16 spp, so that every tile costs more than 1 µcr (a node's
/// pay-on-pass is never 0).
pub fn job_flags(width: u32, height: u32, batch: u32) -> Vec<String> {
    [
        "--width",
        &width.to_string(),
        "--height",
        &height.to_string(),
        "--spp",
        "16",
        "--bounces",
        "1",
        "--tile-size",
        "16",
        "--batch-size",
        &batch.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// 4 tiles in 2 tasks.
pub fn small_job() -> Vec<String> {
    job_flags(32, 32, 2)
}

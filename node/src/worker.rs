//! What the node and verifier daemons share: the [`RendererFactory`] that turns a
//! downloaded scene into a [`TileRenderer`], the [`SceneCache`] of loaded scenes, the
//! start-up ([`start`]: registration with the coordinator, then the bus), the bounded
//! consumer loop, and the test-only fault hooks.
//!
//! Fault hooks are read once from the environment when a daemon starts (tests set them on
//! a child process; nothing else should):
//!
//! - `TESSERA_FAULT_EXIT_AFTER_PUBLISH=1`: after publishing its first result (node) or
//!   verdict (verifier), the process exits at once with status [`Faults::EXIT_CODE`] (77),
//!   before acking the message it answered: "killed after publishing, before its ack".
//! - `TESSERA_FAULT_DUPLICATE_RESULTS=1` (node): every result is published twice. The
//!   second copy is held back and published right after the node's next result, or once
//!   it has waited [`Faults::DUPLICATE_HOLD`] with no next result, or at shutdown, so the
//!   coordinator sees each result again, out of order.

use std::collections::VecDeque;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tessera_api::client::{ApiClient, ApiClientError};
use tessera_api::RegisterResponse;
use tessera_bus::{Bus, BusError, Delivery};
use tessera_protocol::keys::SecretKey;
use tessera_protocol::statements::Role;
use tessera_protocol::wire::{Capabilities, WIRE_VERSION};
use tessera_protocol::{Digest, TileRenderer};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::stub::HashRenderer;

/// Turns scenes into renderers for a daemon; the GPU renderer in the binary, the stub in
/// tests.
pub trait RendererFactory: Send + Sync + 'static {
    /// What this renderer reports when it registers (class, memory, slots, software).
    fn capabilities(&self, slots: u32) -> Capabilities;
    /// Load the scene whose entry file is `entry` (already downloaded) and check its
    /// content hash equals `expected`. Runs on a blocking thread; may be slow.
    fn load(&self, entry: &Path, expected: &Digest) -> Result<Arc<dyn TileRenderer>, LoadError>;
}

/// The error of a factory's own code (the renderer's scene or GPU error): a
/// [`RendererFactory`] may not be in a crate this one knows.
pub type FactoryError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a [`RendererFactory`] could not turn a downloaded scene into a renderer.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The scene's entry file could not be read or parsed.
    #[error("loading {}: {source}", entry.display())]
    Read {
        /// The scene's entry file.
        entry: PathBuf,
        /// The loader's error.
        source: FactoryError,
    },
    /// The loaded scene's content hash is not the one the job names.
    #[error(
        "{}: content hash {} differs from the job's scene hash {}",
        entry.display(),
        hex::encode(actual),
        hex::encode(expected)
    )]
    HashMismatch {
        /// The scene's entry file.
        entry: PathBuf,
        /// The content hash of what was loaded.
        actual: Digest,
        /// The job's scene hash.
        expected: Digest,
    },
    /// The scene could not be uploaded to the GPU.
    #[error("uploading {} to the gpu: {source}", entry.display())]
    Upload {
        /// The scene's entry file.
        entry: PathBuf,
        /// The renderer's error.
        source: FactoryError,
    },
    /// The factory serves one scene only (a farm of one machine), and not this one.
    #[error(
        "this farm renders scene {} only, not {}",
        hex::encode(served),
        hex::encode(requested)
    )]
    OtherScene {
        /// The scene it serves.
        served: Digest,
        /// The scene asked for.
        requested: Digest,
    },
}

/// Why [`SceneCache::get`] could not give a scene: every variant names the scene.
#[derive(Debug, thiserror::Error)]
pub enum SceneUnavailable {
    /// Downloading the scene's files from the coordinator failed.
    #[error("scene {}: download failed: {source}", hex::encode(scene))]
    Download {
        /// The scene hash.
        scene: Digest,
        /// The client's error.
        source: ApiClientError,
    },
    /// The blocking task that loads the scene panicked or was cancelled.
    #[error("scene {}: loading task failed: {source}", hex::encode(scene))]
    Task {
        /// The scene hash.
        scene: Digest,
        /// The task's end.
        source: tokio::task::JoinError,
    },
    /// The factory could not load the scene.
    #[error("scene {}: {source}", hex::encode(scene))]
    Load {
        /// The scene hash.
        scene: Digest,
        /// The factory's error.
        source: LoadError,
    },
}

/// What [`check_wire`] finds wrong with a delivered message: the reason to park it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The message speaks another wire version.
    #[error(
        "{what} {id}: wire version {version}, this {role} speaks {}",
        WIRE_VERSION
    )]
    Version {
        /// The message kind (`task`, `request`).
        what: &'static str,
        /// The message's id.
        id: String,
        /// The version it carries.
        version: u32,
        /// The daemon reading it (`node`, `verifier`).
        role: &'static str,
    },
    /// The message's id is empty.
    #[error("empty {what} id")]
    EmptyId {
        /// The message kind (`task`, `request`).
        what: &'static str,
    },
}

/// A factory of [`HashRenderer`]s: ignores the scene's content (the daemon still
/// downloads it) and sleeps `delay_per_tile` per tile.
#[derive(Clone, Debug, Default)]
pub struct StubFactory {
    /// Sleep before each tile.
    pub delay_per_tile: Duration,
}

impl RendererFactory for StubFactory {
    fn capabilities(&self, slots: u32) -> Capabilities {
        Capabilities {
            class: HashRenderer::stub_class(),
            memory_bytes: 0,
            slots,
            software: software_version(),
        }
    }

    fn load(&self, _entry: &Path, _expected: &Digest) -> Result<Arc<dyn TileRenderer>, LoadError> {
        Ok(Arc::new(HashRenderer::new(self.delay_per_tile)))
    }
}

/// The software string daemons report: `tessera <version>`.
pub fn software_version() -> String {
    format!("tessera {}", env!("CARGO_PKG_VERSION"))
}

/// Where a daemon gets a scene's files from.
#[derive(Clone, Debug)]
pub enum SceneSource {
    /// Download from the coordinator into `cache_dir/<scene hash>/`.
    Coordinator {
        /// A client holding the daemon's session token.
        client: ApiClient,
        /// Root of the scene cache.
        cache_dir: PathBuf,
    },
    /// Every scene's entry file is this path, nothing is downloaded (tests, stubs).
    Fixed(PathBuf),
}

/// How many loaded scenes a daemon keeps (the oldest loaded is dropped first; renders in
/// progress keep theirs alive).
pub const MAX_LOADED_SCENES: usize = 4;

type MakeFn<T> = dyn Fn(&Digest, Arc<dyn TileRenderer>) -> T + Send + Sync;

/// Loaded scenes by content hash, each turned into a `T` (a [`crate::Node`], a
/// verifier) once. Loads one scene at a time; lookups of loaded scenes never wait for a
/// load.
pub struct SceneCache<T> {
    source: SceneSource,
    factory: Arc<dyn RendererFactory>,
    make: Box<MakeFn<T>>,
    loaded: Mutex<VecDeque<(Digest, T)>>,
    loading: tokio::sync::Mutex<()>,
    loads: prometheus_client::metrics::counter::Counter,
}

impl<T: Clone + Send + 'static> SceneCache<T> {
    /// A cache that fetches from `source`, loads with `factory`, and wraps each renderer
    /// with `make`.
    pub fn new(
        source: SceneSource,
        factory: Arc<dyn RendererFactory>,
        make: impl Fn(&Digest, Arc<dyn TileRenderer>) -> T + Send + Sync + 'static,
    ) -> Self {
        Self {
            source,
            factory,
            make: Box::new(make),
            loaded: Mutex::new(VecDeque::new()),
            loading: tokio::sync::Mutex::new(()),
            loads: Default::default(),
        }
    }

    fn lookup(&self, scene_hash: &Digest) -> Option<T> {
        let loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        loaded
            .iter()
            .find(|(h, _)| h == scene_hash)
            .map(|(_, t)| t.clone())
    }

    /// The counter of scenes this cache loaded (shared: each clone counts the same loads),
    /// for the daemons' metrics.
    pub fn load_counter(&self) -> prometheus_client::metrics::counter::Counter {
        self.loads.clone()
    }

    /// Whether the coordinator still wants this worker to render task `task_id` (a fixed
    /// source has nobody to ask: yes). A question that finds no answer counts as yes: the
    /// coordinator ignores results it does not want, so asking only saves work.
    pub async fn wanted(&self, task_id: &str) -> bool {
        match &self.source {
            SceneSource::Coordinator { client, .. } => match client.task_wanted(task_id).await {
                Ok(wanted) => wanted,
                Err(e) => {
                    tracing::debug!(task = %task_id, error = %e, "could not ask whether the task is still wanted: rendering it");
                    true
                }
            },
            SceneSource::Fixed(_) => true,
        }
    }

    /// The scene `scene_hash`, downloaded and loaded if it is not yet. The error names
    /// the scene and what failed.
    pub async fn get(&self, scene_hash: &Digest) -> Result<T, SceneUnavailable> {
        if let Some(t) = self.lookup(scene_hash) {
            return Ok(t);
        }
        let _one_load_at_a_time = self.loading.lock().await;
        if let Some(t) = self.lookup(scene_hash) {
            return Ok(t);
        }
        let scene = hex::encode(scene_hash);
        let entry = match &self.source {
            SceneSource::Coordinator { client, cache_dir } => client
                .download_scene(&scene, cache_dir)
                .await
                .map_err(|source| SceneUnavailable::Download {
                    scene: *scene_hash,
                    source,
                })?,
            SceneSource::Fixed(path) => path.clone(),
        };
        let factory = self.factory.clone();
        let expected = *scene_hash;
        let started = std::time::Instant::now();
        let renderer = tokio::task::spawn_blocking(move || factory.load(&entry, &expected))
            .await
            .map_err(|source| SceneUnavailable::Task {
                scene: *scene_hash,
                source,
            })?
            .map_err(|source| SceneUnavailable::Load {
                scene: *scene_hash,
                source,
            })?;
        tracing::info!(scene = %scene, class = %renderer.class(), ms = started.elapsed().as_millis() as u64, "scene loaded");
        self.loads.inc();
        let t = (self.make)(scene_hash, renderer);
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        loaded.push_back((*scene_hash, t.clone()));
        while loaded.len() > MAX_LOADED_SCENES {
            loaded.pop_front();
        }
        Ok(t)
    }
}

/// Test-only fault hooks (see the module doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// `TESSERA_FAULT_EXIT_AFTER_PUBLISH=1`.
    pub exit_after_publish: bool,
    /// `TESSERA_FAULT_DUPLICATE_RESULTS=1` (node only).
    pub duplicate_results: bool,
}

impl Faults {
    /// Status the process exits with when a fault hook fires.
    pub const EXIT_CODE: i32 = 77;

    /// How long a held-back duplicate result waits for the node's next result before it is
    /// published on its own.
    pub const DUPLICATE_HOLD: Duration = Duration::from_secs(1);

    /// The hooks set in the environment.
    pub fn from_env() -> Self {
        let on = |name: &str| std::env::var(name).is_ok_and(|v| v == "1");
        Self {
            exit_after_publish: on("TESSERA_FAULT_EXIT_AFTER_PUBLISH"),
            duplicate_results: on("TESSERA_FAULT_DUPLICATE_RESULTS"),
        }
    }

    /// Call right after a result or verdict is published, before it is acked.
    pub fn after_publish(&self, message_id: &str) {
        if self.exit_after_publish {
            tracing::warn!(
                message = message_id,
                "fault hook: exiting after publish, before ack"
            );
            std::process::exit(Self::EXIT_CODE);
        }
    }
}

/// Register with the coordinator at `url` as `role`, proving `key`: challenge, signed
/// registration, session token. Returns the coordinator's answer and a client that
/// carries the session token.
pub async fn register(
    url: &str,
    farm_token: Option<String>,
    role: Role,
    name: &str,
    key: &SecretKey,
    capabilities: Capabilities,
) -> Result<(RegisterResponse, ApiClient), ApiClientError> {
    let client = ApiClient::new(url, None)?;
    // The key, owned, for registering again later (a key is not `Clone`: it is read
    // back from its own key-file text once).
    let key = Arc::new(
        SecretKey::from_key_file(&key.to_key_file(), "worker key").map_err(|e| {
            ApiClientError::Body {
                method: "POST".into(),
                url: client.base_url().to_string(),
                reason: e.to_string(),
            }
        })?,
    );
    let name = name.to_string();
    let registration = {
        let client = client.clone();
        move || {
            let (client, key, name) = (client.clone(), key.clone(), name.clone());
            let (capabilities, farm_token) = (capabilities.clone(), farm_token.clone());
            async move {
                client
                    .register_worker(role, &name, &key, capabilities, farm_token)
                    .await
            }
        }
    };
    let resp = registration().await?;
    // Sessions expire when the coordinator has not heard from the worker for a while
    // (a verifier with nothing to check): the client then registers again by itself.
    let renew: tessera_api::client::Renew = Box::new(move || {
        let registering = registration();
        Box::pin(async move { Ok(registering.await?.session) })
    });
    let session = client.with_session(resp.session.clone(), renew);
    Ok((resp, session))
}

/// Who a daemon is and where it registers: what [`start`] needs of its config.
#[derive(Clone, Copy)]
pub struct Enrolment<'a> {
    /// What it registers as (and the word errors use).
    pub role: Role,
    /// Base URL of the coordinator's HTTP API.
    pub coordinator: &'a str,
    /// The farm's worker token, when the coordinator requires one.
    pub token: Option<&'a str>,
    /// Display name.
    pub name: &'a str,
    /// The signing key (its identity).
    pub key: &'a SecretKey,
    /// Deliveries handled at once (at least 1).
    pub slots: u32,
    /// Root of the scene cache.
    pub cache_dir: &'a Path,
}

impl Enrolment<'_> {
    /// A `Debug` of the daemon config `name` with these fields (the token hidden, the role
    /// left out); the caller adds its own fields and finishes it.
    pub fn debug_struct<'a, 'b: 'a>(
        &self,
        f: &'a mut std::fmt::Formatter<'b>,
        name: &str,
    ) -> std::fmt::DebugStruct<'a, 'b> {
        let mut d = f.debug_struct(name);
        d.field("coordinator", &self.coordinator)
            .field("token", &self.token.map(|_| "***"))
            .field("key", self.key)
            .field("name", &self.name)
            .field("slots", &self.slots)
            .field("cache_dir", &self.cache_dir);
        d
    }
}

/// A registered daemon with its bus connected (what [`start`] gives).
pub struct Started<B> {
    /// The connected bus.
    pub bus: B,
    /// Where scenes come from: the coordinator, with the session token.
    pub scenes: SceneSource,
    /// What it registered with.
    pub capabilities: Capabilities,
    /// The fault hooks set in the environment.
    pub faults: Faults,
}

/// Why a daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration cannot work.
    #[error("{role} config: {reason}")]
    Config {
        /// `node` or `verifier`.
        role: Role,
        /// What is wrong.
        reason: String,
    },
    /// Registration with the coordinator failed.
    #[error("registering {role} {name:?} with the coordinator: {source}")]
    Register {
        /// `node` or `verifier`.
        role: Role,
        /// The daemon's name.
        name: String,
        /// What failed.
        source: ApiClientError,
    },
    /// The bus could not be connected or a queue declared.
    #[error("bus: {what}: {source}")]
    Bus {
        /// What was being done.
        what: String,
        /// The bus error.
        source: BusError,
    },
}

/// The start-up of a daemon: check the config, read the fault hooks, register with the
/// coordinator as `who.role` (the factory's capabilities), then connect the bus with
/// `connect` (given the registration answer, for the AMQP namespace). `Ok(None)` when
/// `shutdown` comes first.
pub async fn start<B, C, F>(
    who: Enrolment<'_>,
    factory: &dyn RendererFactory,
    connect: C,
    shutdown: &CancellationToken,
) -> Result<Option<Started<B>>, StartError>
where
    B: Bus,
    C: FnOnce(RegisterResponse) -> F,
    F: Future<Output = Result<B, BusError>>,
{
    if who.slots == 0 {
        return Err(StartError::Config {
            role: who.role,
            reason: "slots must be at least 1".into(),
        });
    }
    let faults = Faults::from_env();
    if faults != Faults::default() {
        tracing::warn!(?faults, "test fault hooks are on");
    }
    let capabilities = factory.capabilities(who.slots);
    tracing::info!(role = %who.role, key = %who.key.public().short(), name = %who.name, class = %capabilities.class, coordinator = %who.coordinator, "registering");
    let registering = register(
        who.coordinator,
        who.token.map(str::to_string),
        who.role,
        who.name,
        who.key,
        capabilities.clone(),
    );
    let (registered, client) = tokio::select! {
        _ = shutdown.cancelled() => return Ok(None),
        r = registering => r.map_err(|source| StartError::Register {
            role: who.role,
            name: who.name.to_string(),
            source,
        })?,
    };
    let namespace = registered.amqp_namespace.clone();
    let bus = tokio::select! {
        _ = shutdown.cancelled() => return Ok(None),
        b = connect(registered) => b.map_err(|source| StartError::Bus {
            what: format!("connecting (namespace {namespace})"),
            source,
        })?,
    };
    Ok(Some(Started {
        bus,
        scenes: SceneSource::Coordinator {
            client,
            cache_dir: who.cache_dir.to_path_buf(),
        },
        capabilities,
        faults,
    }))
}

/// Check what decoding a delivered message cannot: its wire `version` and its `id`.
/// `what` names the message (`task`, `request`), `role` the daemon reading it; the error
/// is the reason to park it.
pub fn check_wire(
    version: u32,
    id: &str,
    what: &'static str,
    role: &'static str,
) -> Result<(), WireError> {
    if version != WIRE_VERSION {
        return Err(WireError::Version {
            what,
            id: id.to_string(),
            version,
            role,
        });
    }
    if id.is_empty() {
        return Err(WireError::EmptyId { what });
    }
    Ok(())
}

/// A copy of a secret key (the type is deliberately not `Clone`; daemons need one per
/// loaded scene).
pub fn copy_key(key: &SecretKey) -> SecretKey {
    SecretKey::from_key_file(&key.to_key_file(), "in-memory key")
        .expect("a key's own key file always parses")
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Why a consumer loop ended.
#[derive(Debug, PartialEq, Eq)]
pub enum LoopEnd {
    /// The daemon is shutting down.
    Shutdown,
    /// The bus was closed under it.
    BusClosed,
}

/// Take deliveries from `queue` until `shutdown`, handling each on `tracker` with one of
/// the `slots` permits held for its whole duration. `handle` is called as soon as a
/// delivery arrives (its synchronous part runs then, e.g. to mark the task as held); the
/// future it returns runs once a permit is free. At most one delivery per queue waits for
/// a permit (the broker's prefetch holds the rest), so nothing here is unbounded. A
/// delivery taken but not started when shutdown comes is handed back (requeued).
pub async fn consume<B, H, F>(
    bus: B,
    queue: String,
    slots: Arc<Semaphore>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    handle: H,
) -> LoopEnd
where
    B: Bus,
    H: Fn(Delivery) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    loop {
        let delivery = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return LoopEnd::Shutdown,
            d = bus.next(&queue) => match d {
                Some(d) => d,
                None => return LoopEnd::BusClosed,
            },
        };
        let work = handle(delivery.clone());
        let permit = tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                if let Err(e) = bus.nack(&delivery, true).await {
                    tracing::debug!(queue = %queue, message = %delivery.message_id, error = %e, "hand-back at shutdown failed; the broker redelivers it");
                }
                return LoopEnd::Shutdown;
            }
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return LoopEnd::Shutdown,
            },
        };
        tracker.spawn(async move {
            work.await;
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting(AtomicUsize);

    impl RendererFactory for Counting {
        fn capabilities(&self, slots: u32) -> Capabilities {
            StubFactory::default().capabilities(slots)
        }
        fn load(&self, e: &Path, x: &Digest) -> Result<Arc<dyn TileRenderer>, LoadError> {
            if x == &[0xee; 32] {
                return Err(LoadError::HashMismatch {
                    entry: e.to_path_buf(),
                    actual: [0xaa; 32],
                    expected: *x,
                });
            }
            self.0.fetch_add(1, Ordering::SeqCst);
            StubFactory::default().load(e, x)
        }
    }

    #[tokio::test]
    async fn scenes_are_loaded_once_and_the_oldest_is_dropped() {
        let factory = Arc::new(Counting(AtomicUsize::new(0)));
        let cache = SceneCache::new(
            SceneSource::Fixed("x.glb".into()),
            factory.clone(),
            |h, _| *h,
        );
        for i in 0..3u8 {
            assert_eq!(cache.get(&[i; 32]).await.unwrap(), [i; 32]);
            assert_eq!(cache.get(&[i; 32]).await.unwrap(), [i; 32]);
        }
        assert_eq!(factory.0.load(Ordering::SeqCst), 3);
        for i in 3..(MAX_LOADED_SCENES as u8 + 2) {
            cache.get(&[i; 32]).await.unwrap();
        }
        let before = factory.0.load(Ordering::SeqCst);
        cache.get(&[0; 32]).await.unwrap();
        assert_eq!(
            factory.0.load(Ordering::SeqCst),
            before + 1,
            "scene 0 was evicted"
        );
        let err = cache.get(&[0xee; 32]).await.unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(
                err,
                SceneUnavailable::Load {
                    scene: [0xee, ..],
                    source: LoadError::HashMismatch { .. },
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            text,
            format!(
                "scene {ee}: x.glb: content hash {aa} differs from the job's scene hash {ee}",
                ee = hex::encode([0xee; 32]),
                aa = hex::encode([0xaa; 32])
            )
        );
    }

    #[tokio::test]
    async fn start_names_the_role_and_stops_at_shutdown() {
        // Takes connections and never answers: registration would wait for ever.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", silent.local_addr().unwrap());
        let key = SecretKey::generate();
        let who = Enrolment {
            role: Role::Verifier,
            coordinator: &url,
            token: None,
            name: "v1",
            key: &key,
            slots: 0,
            cache_dir: Path::new("."),
        };
        let connect = |_| async { Ok(tessera_bus::InProcessBus::new()) };
        let shutdown = CancellationToken::new();
        let err = start(who, &StubFactory::default(), connect, &shutdown)
            .await
            .err()
            .expect("0 slots is refused");
        assert_eq!(err.to_string(), "verifier config: slots must be at least 1");
        shutdown.cancel();
        let who = Enrolment { slots: 1, ..who };
        let started = start(who, &StubFactory::default(), connect, &shutdown).await;
        assert!(matches!(started, Ok(None)), "shutdown comes first");
    }

    #[test]
    fn wire_checks_name_the_message() {
        assert_eq!(check_wire(WIRE_VERSION, "t-1", "task", "node"), Ok(()));
        let old = check_wire(99, "t-1", "task", "node").unwrap_err();
        assert!(
            matches!(&old, WireError::Version { id, version: 99, .. } if id == "t-1"),
            "{old:?}"
        );
        assert_eq!(
            old.to_string(),
            format!("task t-1: wire version 99, this node speaks {WIRE_VERSION}")
        );
        let empty = check_wire(WIRE_VERSION, "", "request", "verifier").unwrap_err();
        assert_eq!(empty, WireError::EmptyId { what: "request" });
        assert_eq!(empty.to_string(), "empty request id");
    }

    #[test]
    fn copied_keys_sign_alike() {
        let k = SecretKey::generate();
        assert_eq!(copy_key(&k).public(), k.public());
        assert_eq!(copy_key(&k).sign(b"x"), k.sign(b"x"));
    }
}

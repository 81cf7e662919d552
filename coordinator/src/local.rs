//! `tessera render`'s farm of one machine around [`EmbeddedFarm`]: the coordinator's,
//! nodes' and verifier's keys kept in a data directory (created on first use), the drill's
//! cheating nodes (both counts checked), and the coordinator's store in a private folder
//! of that directory, removed when the job ends; and the summary `tessera render`
//! prints. It adds no job rule: [`EmbeddedFarm::run_job`] runs the job.

use crate::embedded::{EmbeddedFarm, JobConfig, JobOutcome, LocalNode, PipelineError, RenderTimes};
use crate::machine::Progress;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera_node::keyfile::{load_or_create_key, KeyFileError};
use tessera_node::DishonestMode;
use tessera_protocol::payments::{SamplingPolicy, TransferKind};
use tessera_protocol::statements::Decision;
use tessera_protocol::{
    DeterminismClass, Digest, RenderFailure, RenderSettings, TileRect, TileRenderer,
};

/// A renderer that adds up the wall time spent in it: `render` reports the nodes' and the
/// verifier's apart. It renders exactly what the renderer it wraps renders.
struct Timed {
    inner: Arc<dyn TileRenderer>,
    nanos: AtomicU64,
}

impl Timed {
    fn new(inner: Arc<dyn TileRenderer>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            nanos: AtomicU64::new(0),
        })
    }

    fn seconds(&self) -> f64 {
        self.nanos.load(Ordering::Relaxed) as f64 / 1e9
    }

    fn timed<T>(&self, f: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let out = f();
        let spent = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(spent, Ordering::Relaxed);
        out
    }
}

impl TileRenderer for Timed {
    fn class(&self) -> &DeterminismClass {
        self.inner.class()
    }

    fn render_tile(
        &self,
        settings: &RenderSettings,
        frame: u32,
        rect: TileRect,
    ) -> Result<Vec<u8>, RenderFailure> {
        self.timed(|| self.inner.render_tile(settings, frame, rect))
    }

    fn render_tiles(
        &self,
        settings: &RenderSettings,
        frame: u32,
        rects: &[TileRect],
    ) -> Result<Vec<Vec<u8>>, (usize, RenderFailure)> {
        self.timed(|| self.inner.render_tiles(settings, frame, rects))
    }
}

/// The machine's farm: where its keys are, how many nodes, which of them cheat.
pub struct LocalFarm {
    /// Data directory: `keys/` holds the keys; the store's private folder goes here too.
    pub data_dir: PathBuf,
    /// Renderer nodes, each with its own key (`keys/node-I.key`).
    pub nodes: u32,
    /// Drill: how many of them cheat (the last ones; `keys/drill-node-I.key`).
    pub dishonest_nodes: u32,
    /// Drill: how they cheat.
    pub dishonest_mode: DishonestMode,
    /// What every node and the verifier render with.
    pub renderer: Arc<dyn TileRenderer>,
}

/// Why a local render failed.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The data directory or the store's folder in it cannot be created.
    #[error("creating {what} {path}: {source}")]
    Folder {
        /// What it is for.
        what: &'static str,
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key file cannot be read or created.
    #[error(transparent)]
    Key(#[from] KeyFileError),
    /// The async runtime cannot start.
    #[error(transparent)]
    Runtime(std::io::Error),
    /// The job failed.
    #[error(transparent)]
    Job(#[from] PipelineError),
    /// No nodes, or more than [`MAX_NODES`].
    #[error("--nodes {0}: must be 1..={MAX_NODES}")]
    Nodes(u32),
    /// More cheating nodes than nodes.
    #[error("--dishonest-nodes {dishonest} is more than --nodes {nodes}")]
    Dishonest {
        /// Nodes.
        nodes: u32,
        /// Cheating nodes.
        dishonest: u32,
    },
}

/// Most nodes a farm of one machine runs.
pub const MAX_NODES: u32 = 64;

/// That a farm of one machine can run `nodes` nodes, `dishonest` of which cheat.
pub fn check_nodes(nodes: u32, dishonest: u32) -> Result<(), LocalError> {
    if nodes == 0 || nodes > MAX_NODES {
        return Err(LocalError::Nodes(nodes));
    }
    if dishonest > nodes {
        return Err(LocalError::Dishonest { nodes, dishonest });
    }
    Ok(())
}

impl LocalFarm {
    /// Set the farm up and run `job` on it to its end.
    pub fn run(&self, job: &JobConfig) -> Result<JobOutcome, LocalError> {
        self.run_with_progress(job, &mut |_, _| {})
    }

    /// [`Self::run`], telling `progress` where the job is as it runs
    /// ([`EmbeddedFarm::run_job_with_progress`]); nothing is printed here.
    pub fn run_with_progress(
        &self,
        job: &JobConfig,
        progress: &mut (dyn FnMut(&str, &Progress) + Send),
    ) -> Result<JobOutcome, LocalError> {
        let data = &self.data_dir;
        std::fs::create_dir_all(data).map_err(|source| LocalError::Folder {
            what: "data directory",
            path: data.clone(),
            source,
        })?;
        let keys = data.join("keys");
        let coordinator_key = load_or_create_key(&keys.join("coordinator.key"))?;
        let verifier_key = load_or_create_key(&keys.join("verifier.key"))?;
        let mut nodes = Vec::new();
        let rendering = Timed::new(self.renderer.clone());
        let verifying = Timed::new(self.renderer.clone());
        let honest = self.nodes.saturating_sub(self.dishonest_nodes);
        for i in 0..self.nodes {
            let dishonest = (i >= honest).then_some(self.dishonest_mode);
            let file = match dishonest {
                None => format!("node-{i}.key"),
                Some(_) => format!("drill-node-{i}.key"),
            };
            nodes.push(LocalNode {
                name: format!("node-{i}"),
                key: load_or_create_key(&keys.join(file))?,
                renderer: rendering.clone(),
                dishonest,
            });
        }
        // The coordinator's store is private to this run: the farm's service runs the job
        // on it and it is removed when the job ends (the keys above are kept). It holds
        // every delivered tile, so it goes where the user put the data, not in /tmp.
        let store_dir = tempfile::Builder::new()
            .prefix("render-")
            .tempdir_in(data)
            .map_err(|source| LocalError::Folder {
                what: "a temporary folder in",
                path: data.clone(),
                source,
            })?;
        let farm = EmbeddedFarm {
            coordinator_key,
            nodes,
            verifier_key,
            verifier_renderer: verifying.clone(),
            data_dir: store_dir.path().to_path_buf(),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(LocalError::Runtime)?;
        let mut outcome = runtime.block_on(farm.run_job_with_progress(job, progress))?;
        outcome.times = RenderTimes {
            rendering: rendering.seconds(),
            verifying: verifying.seconds(),
        };
        Ok(outcome)
    }
}

/// The job `tessera render` submits: the settings from its flags, the rest fixed for a
/// farm of one machine (client `local`, default sampling, 50 % slash, a stake of 1 cr per
/// node, 10 % dispute deposit, default tolerance, an hour per message).
pub struct LocalJob<'a> {
    /// The scene file (its name goes into the manifest; its full path into the bundle as
    /// the hint `audit --rerender` looks for).
    pub scene: &'a Path,
    /// The scene's content hash.
    pub scene_hash: Digest,
    /// Render settings.
    pub settings: RenderSettings,
    /// First and last frame (inclusive).
    pub frames: (u32, u32),
    /// Tile edge.
    pub tile_size: u32,
    /// Tiles per task.
    pub batch_size: u32,
    /// Tier name.
    pub tier: String,
    /// Challenge window signed into the manifest.
    pub challenge_window_secs: u64,
}

impl LocalJob<'_> {
    /// The job's configuration.
    pub fn config(self) -> JobConfig {
        let scene = self.scene;
        JobConfig {
            client: "local".into(),
            scene_name: scene.file_name().map_or_else(
                || scene.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            scene_hash: self.scene_hash,
            scene_hint: std::fs::canonicalize(scene)
                .ok()
                .map(|p| p.display().to_string()),
            settings: self.settings,
            frame_start: self.frames.0,
            frame_end: self.frames.1,
            tile_size: self.tile_size,
            batch_size: self.batch_size,
            tier: self.tier,
            sampling: SamplingPolicy::default(),
            slash_pct: 50,
            challenge_window_secs: self.challenge_window_secs,
            node_stake: 1_000_000,
            tolerance: Default::default(),
            dispute_deposit_pct: 10,
            message_timeout: Duration::from_secs(3600),
        }
    }
}

/// What the client paid into escrow and what of the hold-backs was released, from the
/// job's signed receipt.
pub fn escrow_and_released(outcome: &JobOutcome) -> (u64, u64) {
    let transfers = outcome.transfers();
    let released = transfers
        .iter()
        .filter(|t| t.kind == TransferKind::Release)
        .map(|t| t.amount)
        .sum();
    let escrow = transfers
        .iter()
        .find(|t| t.kind == TransferKind::Escrow)
        .map_or(0, |t| t.amount);
    (escrow, released)
}

/// Write what `tessera render` prints when the job is done: with `json`, one JSON object
/// (job id, `written` outputs, `seconds`, per node and round its tiles, samples,
/// decision and pay, and the job root); otherwise a line for the job, one per node and
/// round, the client's payments, the job root and a line per written file.
pub fn write_summary(
    w: &mut impl Write,
    outcome: &JobOutcome,
    seconds: f64,
    written: &[PathBuf],
    json: bool,
) -> io::Result<()> {
    let job_root = hex::encode(outcome.bundle.roots.statement.job_root);
    let work = outcome.bundle.work();
    if json {
        let reports: Vec<_> = outcome
            .reports
            .iter()
            .map(|r| {
                serde_json::json!({"node": r.name, "key": r.key.to_string(), "round": r.round,
                    "tiles": r.tiles, "sampled": r.sampled, "pixels": r.pixels,
                    "sampled_pixels": r.sampled_pixels,
                    "decision": format!("{:?}", r.decision).to_lowercase(), "paid": r.paid,
                    "held_back": r.held, "slashed": r.slashed})
            })
            .collect();
        let summary = serde_json::json!({"job": outcome.job_id, "outputs": written,
            "seconds": seconds, "rendering_seconds": outcome.times.rendering,
            "verifying_seconds": outcome.times.verifying,
            "rendered_pixel_samples": work.rendered,
            "rerendered_pixel_samples": work.rerendered,
            "rerendered_fraction": work.fraction(),
            "nodes": reports, "job_root": job_root});
        return writeln!(w, "{summary}");
    }
    let m = &outcome.bundle.manifest.statement;
    writeln!(
        w,
        "job {} rendered in {:.1} s ({}x{}, {} spp, {} frame(s), tier {})",
        outcome.job_id,
        seconds,
        m.settings.width,
        m.settings.height,
        m.settings.spp,
        m.frame_end - m.frame_start + 1,
        m.tier.name
    )?;
    writeln!(
        w,
        "  rendering {:.1} s, verifying {:.1} s: the verifier re-rendered {:.2} % of the pixel-samples the nodes rendered ({} of {})",
        outcome.times.rendering,
        outcome.times.verifying,
        100.0 * work.fraction(),
        work.rerendered,
        work.rendered
    )?;
    for r in &outcome.reports {
        match r.decision {
            Decision::Pass => writeln!(
                w,
                "  round {}: {}: verified {} blocks re-rendered of {} tiles ({:.2} % of its pixels), PASS, paid {} µcr now, {} held back",
                r.round, r.name, r.sampled, r.tiles, pct(r.sampled_pixels, r.pixels), r.paid, r.held
            )?,
            Decision::Fail => writeln!(
                w,
                "  round {}: {} [{}]: CAUGHT CHEATING ({} blocks sampled of {} tiles): unpaid, slashed {} µcr of stake, its tiles re-rendered by others",
                r.round, r.name, r.key.short(), r.sampled, r.tiles, r.slashed
            )?,
            Decision::Inconclusive | Decision::Escalate => writeln!(
                w,
                "  round {}: {} [{}]: INCONCLUSIVE after escalation ({} blocks sampled of {} tiles): neither paid nor slashed, its tiles re-rendered by others",
                r.round, r.name, r.key.short(), r.sampled, r.tiles
            )?,
        }
    }
    let (escrow, released) = escrow_and_released(outcome);
    writeln!(
        w,
        "  client paid {escrow} µcr from escrow; hold-backs released: {released} µcr"
    )?;
    writeln!(w, "  job root {job_root}")?;
    for path in written {
        writeln!(w, "wrote {}", path.display())?;
    }
    Ok(())
}

/// `part` in percent of `whole` (0 when `whole` is 0).
fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_farm_has_1_to_64_nodes_and_no_more_cheats() {
        check_nodes(1, 1).unwrap();
        check_nodes(MAX_NODES, 0).unwrap();
        assert_eq!(
            check_nodes(0, 0).unwrap_err().to_string(),
            "--nodes 0: must be 1..=64"
        );
        assert!(matches!(check_nodes(65, 0), Err(LocalError::Nodes(65))));
        assert_eq!(
            check_nodes(2, 3).unwrap_err().to_string(),
            "--dishonest-nodes 3 is more than --nodes 2"
        );
    }
}

//! A renderer node: takes a render task, renders its tiles through a [`TileRenderer`],
//! computes the leaves and batch root, and signs the batch commitment.
//!
//! For drills, a node can be made dishonest ([`DishonestMode`]): it then commits to tiles it
//! did not honestly render, and the verifier must catch it.

#![warn(missing_docs)]

pub mod broker;
pub mod cheats;
pub mod daemon;
pub mod keyfile;
pub mod metrics;
pub mod metrics_http;
pub mod settings;
pub mod stub;
pub mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tessera_protocol::blocks::tile_hash;
use tessera_protocol::bundle::{BatchRecord, LeafRecord};
use tessera_protocol::canonical::LeafInput;
use tessera_protocol::keys::{PublicKey, SecretKey};
use tessera_protocol::statements::{BatchCommitment, Signed};
use tessera_protocol::wire::{BatchResult, DeliveredTile, RenderTask, WIRE_VERSION};
use tessera_protocol::{merkle, RenderFailure, TileRenderer};

/// What the copy cheat serves for every tile of one size: where it came from, and its bytes.
type CopiedTile = (tessera_protocol::TileRect, Vec<u8>);

/// Ways a drill node cheats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DishonestMode {
    /// Renders a quarter of the samples and claims the full count.
    LowSpp,
    /// Renders honestly, then adds noise.
    Noise,
    /// Returns black tiles without rendering.
    Black,
    /// Never renders the tile it was asked for: serves a neighbouring tile of the same
    /// size, rendered once and reused for every later tile of that size.
    Copy,
    /// Forges 1 tile in 20 of the tiles it renders (its 1st, 21st, 41st, …), renders the
    /// rest honestly.
    Partial,
}

impl DishonestMode {
    /// All modes, for drills and tests.
    pub const ALL: [DishonestMode; 5] = [
        Self::LowSpp,
        Self::Noise,
        Self::Black,
        Self::Copy,
        Self::Partial,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Self::LowSpp => "low-spp",
            Self::Noise => "noise",
            Self::Black => "black",
            Self::Copy => "copy",
            Self::Partial => "partial",
        }
    }
}

impl std::str::FromStr for DishonestMode {
    type Err = UnknownDishonestMode;
    fn from_str(s: &str) -> Result<Self, UnknownDishonestMode> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| UnknownDishonestMode {
                name: s.to_string(),
            })
    }
}

/// A name that is not one of [`DishonestMode::ALL`] (parsing a `--dishonest-mode`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown dishonest mode {name:?}; expected one of {}", DishonestMode::ALL.map(DishonestMode::name).join(", "))]
pub struct UnknownDishonestMode {
    /// The name given.
    pub name: String,
}

/// Why a task failed on the node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The task is for a scene this node does not have.
    #[error("task {task}: scene {scene} is not loaded on this node")]
    WrongScene {
        /// Task id.
        task: String,
        /// Scene hash (hex).
        scene: String,
    },
    /// The task is malformed.
    #[error("task {task}: {reason}")]
    BadTask {
        /// Task id.
        task: String,
        /// What is wrong.
        reason: String,
    },
    /// Rendering failed.
    #[error("task {task}: tile {tile}: render failed: {source}")]
    Render {
        /// Task id.
        task: String,
        /// Tile index.
        tile: u32,
        /// The renderer's error.
        source: RenderFailure,
    },
}

/// A renderer node: its key, its renderer, and (for drills) how it cheats.
pub struct Node {
    name: String,
    key: SecretKey,
    scene_hash: [u8; 32],
    renderer: Arc<dyn TileRenderer>,
    dishonest: Option<DishonestMode>,
    /// Last honestly rendered tile per size, for the `copy` cheat.
    copy_cache: Mutex<HashMap<(u32, u32), CopiedTile>>,
    /// Tiles forged so far, for the `partial` cheat.
    produced: std::sync::atomic::AtomicU64,
}

impl Node {
    /// A node that renders `scene_hash` with `renderer`, signing with `key`.
    pub fn new(
        name: impl Into<String>,
        key: SecretKey,
        scene_hash: [u8; 32],
        renderer: Arc<dyn TileRenderer>,
        dishonest: Option<DishonestMode>,
    ) -> Self {
        Self {
            name: name.into(),
            key,
            scene_hash,
            renderer,
            dishonest,
            copy_cache: Mutex::new(HashMap::new()),
            produced: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Display name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Public key.
    pub fn public(&self) -> PublicKey {
        self.key.public()
    }

    /// How this node cheats, if it does.
    pub fn dishonest(&self) -> Option<DishonestMode> {
        self.dishonest
    }

    /// The renderer's determinism class.
    pub fn class(&self) -> &tessera_protocol::DeterminismClass {
        self.renderer.class()
    }

    /// Render every tile of `task`, commit to them, and sign the batch.
    pub fn handle_task(&self, task: &RenderTask) -> Result<BatchResult, NodeError> {
        if task.scene_hash != self.scene_hash {
            return Err(NodeError::WrongScene {
                task: task.task_id.clone(),
                scene: hex::encode(task.scene_hash),
            });
        }
        if task.tiles.is_empty() {
            return Err(NodeError::BadTask {
                task: task.task_id.clone(),
                reason: "no tiles".into(),
            });
        }
        let class = self.renderer.class().clone();
        let class_id = class.id();
        let mut leaves = Vec::with_capacity(task.tiles.len());
        let mut records = Vec::with_capacity(task.tiles.len());
        let mut delivered = Vec::with_capacity(task.tiles.len());
        if let Some(t) = task
            .tiles
            .iter()
            .find(|t| !t.rect.fits_in(task.settings.width, task.settings.height))
        {
            return Err(NodeError::BadTask {
                task: task.task_id.clone(),
                reason: format!(
                    "tile {} rect {} is outside the {}x{} frame",
                    t.tile_index, t.rect, task.settings.width, task.settings.height
                ),
            });
        }
        let render_error = |tile: u32, source| NodeError::Render {
            task: task.task_id.clone(),
            tile,
            source,
        };
        // An honest node renders the task's tiles together (neighbours in one dispatch);
        // a drill forges them one by one.
        let claimed: Vec<Vec<u8>> = match self.dishonest {
            None => {
                let rects: Vec<_> = task.tiles.iter().map(|t| t.rect).collect();
                self.renderer
                    .render_tiles(&task.settings, task.frame, &rects)
                    .map_err(|(i, source)| render_error(task.tiles[i].tile_index, source))?
            }
            Some(mode) => task
                .tiles
                .iter()
                .map(|t| {
                    self.forge_tile(mode, task, t.tile_index, t.rect)
                        .map_err(|source| render_error(t.tile_index, source))
                })
                .collect::<Result<_, _>>()?,
        };
        for (t, bytes) in task.tiles.iter().zip(claimed) {
            let hash = tile_hash(&bytes, t.rect).ok_or_else(|| {
                render_error(
                    t.tile_index,
                    RenderFailure(format!(
                        "{} bytes rendered for a {} tile of {} bytes",
                        bytes.len(),
                        t.rect,
                        t.rect.canonical_len()
                    )),
                )
            })?;
            let leaf = LeafInput {
                job_id: task.job_id,
                frame: task.frame,
                rect: t.rect,
                spp: task.settings.spp,
                class_id,
                tile_hash: hash,
            }
            .leaf();
            leaves.push(leaf);
            records.push(LeafRecord {
                tile_index: t.tile_index,
                rect: t.rect,
                tile_hash: hash,
                leaf,
            });
            delivered.push(DeliveredTile {
                tile_index: t.tile_index,
                bytes,
            });
        }
        let commitment = BatchCommitment {
            job_id: task.job_id,
            frame: task.frame,
            batch_id: task.batch_id,
            tile_ids: task.tiles.iter().map(|t| t.tile_index).collect(),
            batch_root: merkle::root(&leaves).expect("batch has tiles"),
            leaf_count: leaves.len() as u32,
            class_id,
            node: self.key.public(),
        };
        Ok(BatchResult {
            version: WIRE_VERSION,
            task_id: task.task_id.clone(),
            round: task.round,
            class,
            batch: BatchRecord {
                signed: Signed::sign(commitment, &self.key),
                tiles: records,
            },
            tiles: delivered,
        })
    }

    /// The bytes a drill node claims for a tile, forged as `mode` says (some modes
    /// render part of their tiles honestly).
    fn forge_tile(
        &self,
        mode: DishonestMode,
        task: &RenderTask,
        tile_index: u32,
        rect: tessera_protocol::TileRect,
    ) -> Result<Vec<u8>, RenderFailure> {
        let nth = self
            .produced
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let honest = |settings: &tessera_protocol::RenderSettings| {
            self.renderer.render_tile(settings, task.frame, rect)
        };
        match mode {
            DishonestMode::LowSpp => honest(&cheats::quarter_spp(&task.settings)),
            DishonestMode::Noise => Ok(cheats::hash_noise(&honest(&task.settings)?, tile_index)),
            DishonestMode::Black => Ok(cheats::black_tile(rect)),
            DishonestMode::Copy => {
                let mut cache = self.copy_cache.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((source, bytes)) = cache.get(&(rect.w, rect.h)) {
                    if *source != rect {
                        return Ok(bytes.clone());
                    }
                }
                let Some(source) =
                    cheats::neighbour(rect, task.settings.width, task.settings.height)
                else {
                    return Ok(cheats::black_tile(rect));
                };
                let bytes = self
                    .renderer
                    .render_tile(&task.settings, task.frame, source)?;
                cache.insert((rect.w, rect.h), (source, bytes.clone()));
                Ok(bytes)
            }
            DishonestMode::Partial => {
                if nth.is_multiple_of(cheats::PARTIAL_EVERY) {
                    Ok(cheats::black_tile(rect))
                } else {
                    honest(&task.settings)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dishonest_modes_parse_by_name() {
        for mode in DishonestMode::ALL {
            assert_eq!(mode.name().parse::<DishonestMode>(), Ok(mode));
        }
        let err = "honest".parse::<DishonestMode>().unwrap_err();
        assert_eq!(err.name, "honest");
        assert_eq!(
            err.to_string(),
            "unknown dishonest mode \"honest\"; expected one of low-spp, noise, black, copy, partial"
        );
    }
}

//! The values of docs/PROTOCOL.md's Appendix A ("Worked example with real values"),
//! computed with `tessera-protocol`'s public API. `examples/worked_example.rs` prints them;
//! `tests/worked_example.rs` checks that the appendix (and the JSON examples that cite it)
//! show each of them, and no value that is not one of them.
//!
//! Every value is computed, never typed in: where the appendix spells something out by
//! hand (a Merkle tree node by node, signing bytes field by field, the draws of the
//! sampling stream), the spelled-out form is computed from its parts and checked here
//! against what the crate gives, so an implementation in another language can follow it
//! step by step.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::Serialize;
use std::fmt;
use tessera_protocol::blocks::{self, BlockRef, BLOCK_NODE_CONTEXT};
use tessera_protocol::bundle::{BatchRecord, LeafRecord, SampleProof};
use tessera_protocol::canonical::{f32_to_tile, FieldWriter, JobId, LeafInput, LEAF_CONTEXT};
use tessera_protocol::keys::SecretKey;
use tessera_protocol::merkle::{self, NODE_CONTEXT};
use tessera_protocol::payments::{default_tiers, Pricing, SamplingPolicy};
use tessera_protocol::sampling::{committed_blocks, nonce_commitment, sample_blocks, sample_seed};
use tessera_protocol::statements::{
    BatchCommitment, CheckKind, Decision, DisputeCommitment, JobManifest, NodeSignal, NodeSnapshot,
    Registration, Role, SampleCheck, Signed, Statement, TaskNote, Verdict, MANIFEST_VERSION,
};
use tessera_protocol::tolerance::{Limits, TileMetrics, Tolerance};
use tessera_protocol::wire::{
    BatchResult, Capabilities, DeliveredTile, RenderTask, Requirements, TaskTile, VerdictMessage,
    WIRE_VERSION,
};
use tessera_protocol::{
    tile_layout, DeterminismClass, Digest, FrameRate, RenderSettings, TileRect,
};

/// The job id: bytes 0x00 to 0x0f.
const JOB_ID: JobId = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
const FRAME: u32 = 7;
const SPP: u32 = 16;
/// 48 × 8 pixels cut into tiles of 20: two tiles of 20 × 8 (three blocks each, the last
/// one clipped to 4 × 8) and one of 8 × 8 (one block).
const WIDTH: u32 = 48;
const HEIGHT: u32 = 8;
const TILE_SIZE: u32 = 20;
/// The round nonces (rounds 0 to 3) and the dispute nonce, each 32 equal bytes.
const ROUND_NONCES: [u8; 4] = [0x42, 0x43, 0x44, 0x45];
const DISPUTE_NONCE: u8 = 0x46;
/// The node's trust in the round commitment (economy k = 135 × 3 = 405 from 10 up).
const TRUST: u32 = 10;
const STAKE: u64 = 1_000_000;

/// One thing the example prints and the appendix shows.
pub enum Item {
    /// A heading of the printed output (the appendix's paragraph it belongs to).
    Heading(String),
    /// A value the appendix shows in its text as `text` (white space aside: prose is
    /// reflowed).
    Value {
        /// What it is.
        label: String,
        /// How the appendix writes it.
        text: String,
    },
    /// A fenced code block of the appendix, line by line.
    Block {
        /// What it is.
        label: String,
        /// Its lines.
        lines: Vec<String>,
    },
    /// A JSON example outside the appendix that says it shows Appendix A's values: the
    /// first ```json block after the heading that starts with `section`. A string of
    /// the document's example that ends in `…` stands for any string it begins.
    Json {
        /// What it is.
        label: String,
        /// The start of the heading of the section that holds the example.
        section: String,
        /// The message as `serde_json::to_string_pretty` writes it.
        pretty: String,
    },
}

/// Everything Appendix A shows, in its order.
#[derive(Default)]
pub struct Worked {
    /// The items, in the appendix's order.
    pub items: Vec<Item>,
}

impl Worked {
    fn heading(&mut self, h: &str) {
        self.items.push(Item::Heading(h.to_string()));
    }

    fn value(&mut self, label: &str, text: impl Into<String>) {
        self.items.push(Item::Value {
            label: label.to_string(),
            text: text.into(),
        });
    }

    fn hex(&mut self, label: &str, bytes: &[u8]) {
        self.value(label, hex::encode(bytes));
    }

    fn block(&mut self, label: &str, lines: Vec<String>) {
        self.items.push(Item::Block {
            label: label.to_string(),
            lines,
        });
    }

    fn json(&mut self, label: &str, section: &str, value: &impl Serialize) {
        self.items.push(Item::Json {
            label: label.to_string(),
            section: section.to_string(),
            pretty: serde_json::to_string_pretty(value).expect("every message serializes"),
        });
    }
}

impl fmt::Display for Worked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for item in &self.items {
            match item {
                Item::Heading(h) => writeln!(f, "\n== {h}")?,
                Item::Value { label, text } => writeln!(f, "{label}: {text}")?,
                Item::Block { label, lines } => {
                    writeln!(f, "{label}:\n```")?;
                    for l in lines {
                        writeln!(f, "{l}")?;
                    }
                    writeln!(f, "```")?;
                }
                Item::Json {
                    label,
                    section,
                    pretty,
                } => writeln!(f, "{label} (the example of {}):\n{pretty}", section.trim())?,
            }
        }
        Ok(())
    }
}

/// Signing bytes laid out field by field, one line per field or group: the hex (or an
/// abbreviation of it) and a label. The bytes behind every line are kept, and
/// [`Layout::finish`] checks that together they are exactly the statement's bytes.
struct Layout {
    lines: Vec<String>,
    bytes: Vec<u8>,
}

impl Layout {
    fn new() -> Self {
        Self {
            lines: Vec::new(),
            bytes: Vec::new(),
        }
    }

    /// Words of bytes, each shown in hex, on one line.
    fn words(&mut self, words: &[&[u8]], label: &str) -> &mut Self {
        let shown: Vec<String> = words.iter().map(hex::encode).collect();
        for w in words {
            self.bytes.extend_from_slice(w);
        }
        self.push(&shown.join(" "), label)
    }

    /// `str(s)`: its length and its UTF-8, as two words.
    fn string(&mut self, s: &str, label: &str) -> &mut Self {
        let [len, utf8] = str_words(s);
        self.words(&[&len, &utf8], label)
    }

    /// A statement's domain tag and the zero byte after it, as one word.
    fn domain(&mut self, domain: &str) -> &mut Self {
        let bytes = [domain.as_bytes(), &[0]].concat();
        self.words(&[&bytes], &format!("\"{domain}\" ‖ 00"))
    }

    /// Bytes shown as `shown` (an abbreviation of their hex).
    fn shown(&mut self, bytes: &[u8], shown: &str, label: &str) -> &mut Self {
        self.bytes.extend_from_slice(bytes);
        self.push(shown, label)
    }

    /// A line: the hex, then the label from column 68 (or three spaces after a longer
    /// hex).
    fn push(&mut self, shown: &str, label: &str) -> &mut Self {
        let width = shown.chars().count().max(64) + 3;
        self.lines
            .push(format!("{shown:<width$}{label}").trim_end().to_string());
        self
    }

    fn finish(&self, signing_bytes: &[u8]) -> Vec<String> {
        assert_eq!(
            hex::encode(&self.bytes),
            hex::encode(signing_bytes),
            "the layout's fields are not the signing bytes"
        );
        self.lines.clone()
    }
}

fn u32le(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}

fn u64le(v: u64) -> [u8; 8] {
    v.to_le_bytes()
}

/// `str(s)` of the field encoding: u32 LE length, then the UTF-8.
fn str_field(s: &str) -> Vec<u8> {
    let mut w = FieldWriter::new();
    w.str(s);
    w.finish()
}

/// `str(s)` as two words: its length, then its bytes.
fn str_words(s: &str) -> [Vec<u8>; 2] {
    let f = str_field(s);
    [f[..4].to_vec(), f[4..].to_vec()]
}

/// The first 8 and last 4 hex characters of `bytes`, as the appendix abbreviates a digest
/// it has shown in full before.
fn short(bytes: &[u8]) -> String {
    let h = hex::encode(bytes);
    format!("{}…{}", &h[..8], &h[h.len() - 4..])
}

/// `x` of 32 equal bytes.
fn filled(x: u8) -> Digest {
    [x; 32]
}

/// The name of `d` among `names`, for proofs written by name (`[leaf1, leaf2]`).
fn name_of(d: &Digest, names: &[(&str, Digest)]) -> String {
    names
        .iter()
        .find(|(_, v)| v == d)
        .map(|(n, _)| n.to_string())
        .expect("every proof hash is a named node")
}

fn names_of(ds: &[Digest], names: &[(&str, Digest)]) -> String {
    let inner: Vec<String> = ds.iter().map(|d| name_of(d, names)).collect();
    format!("[{}]", inner.join(", "))
}

fn node_hash(context: &str, left: &Digest, right: &Digest) -> Digest {
    let mut cat = left.to_vec();
    cat.extend_from_slice(right);
    blake3::derive_key(context, &cat)
}

/// The pixel at `(x, y)` of the frame, in tile `tile`: (0.25 · tile, x / 64, y / 8, 1.0),
/// every value exact in binary16.
fn pixel(tile: u32, x: u32, y: u32) -> [f32; 4] {
    [0.25 * tile as f32, x as f32 / 64.0, y as f32 / 8.0, 1.0]
}

fn tile_bytes(tile: u32, rect: TileRect) -> Vec<u8> {
    let values: Vec<f32> = (rect.y..rect.y + rect.h)
        .flat_map(|y| (rect.x..rect.x + rect.w).flat_map(move |x| pixel(tile, x, y)))
        .collect();
    f32_to_tile(&values)
}

fn blocks_text(bs: &[BlockRef]) -> String {
    let inner: Vec<String> = bs
        .iter()
        .map(|b| format!("{{{}, {}}}", b.leaf, b.block))
        .collect();
    format!("[{}]", inner.join(", "))
}

/// A uniform draw in `0..m` exactly as Appendix B describes it: `x = next_u64()`,
/// rejected while `x ≥ 2^64 − (2^64 mod m)`, then `x mod m`.
fn uniform(rng: &mut ChaCha20Rng, m: u64) -> u64 {
    let zone = u128::from(u64::MAX) + 1 - (1u128 << 64) % u128::from(m);
    loop {
        let x = rng.next_u64();
        if u128::from(x) < zone {
            return x % m;
        }
    }
}

/// The draws of `sample_blocks(seed, tiles, k)` done by hand as Appendix B describes
/// them, one line each (and checked against `sampling::sample_blocks`).
fn draws(seed: &Digest, tiles: &[TileRect], k: u32) -> Vec<String> {
    let total: u64 = tiles.iter().map(|t| t.pixels()).sum();
    let mut rng = ChaCha20Rng::from_seed(*seed);
    let mut picked = std::collections::BTreeSet::new();
    let mut lines = Vec::new();
    for _ in 0..k {
        let p = uniform(&mut rng, total);
        // The leaf holding pixel p, and the pixels of the leaves before it.
        let (mut leaf, mut start) = (0, 0);
        while p >= start + tiles[leaf].pixels() {
            start += tiles[leaf].pixels();
            leaf += 1;
        }
        let t = tiles[leaf];
        let local = p - start;
        let (x, y) = (local % u64::from(t.w), local / u64::from(t.w));
        let block = (y / 8) * u64::from(t.w.div_ceil(8)) + x / 8;
        picked.insert(BlockRef {
            leaf: leaf as u32,
            block: block as u32,
        });
        lines.push(format!(
            "p = {p:<4} leaf {leaf}, x {x:<2} y {y}, block {block}"
        ));
    }
    let picked: Vec<BlockRef> = picked.into_iter().collect();
    assert_eq!(
        picked,
        sample_blocks(seed, tiles, k),
        "Appendix B's description disagrees with sampling::sample_blocks"
    );
    lines
}

/// Computes every value of Appendix A.
pub fn compute() -> Worked {
    let mut out = Worked::default();

    // --- Determinism class.
    let class = DeterminismClass {
        backend: "vulkan".into(),
        adapter: "llvmpipe (LLVM 15.0.6, 256 bits)".into(),
        driver: "llvmpipe".into(),
        driver_info: "Mesa 22.3.6 (LLVM 15.0.6)".into(),
        renderer_build: "tessera-renderer 0.1.0".into(),
        shader_hash: "00".into(),
    };
    let class_id = class.id();
    out.heading("Determinism class");
    out.hex("class id", &class_id);

    // --- A 2 × 1 tile: one block, so its tile hash is its block hash.
    let small = TileRect {
        x: 0,
        y: 0,
        w: 2,
        h: 1,
    };
    let small_bytes = f32_to_tile(&[1.0, 0.5, 0.25, 1.0, 0.0, 0.0, 0.0, 1.0]);
    let small_hash = blocks::tile_hash(&small_bytes, small).expect("2 × 1 bytes");
    assert_eq!(small_hash, blocks::block_hash(&small_bytes));
    out.heading("A 2 × 1 tile");
    out.hex("bytes", &small_bytes);
    out.hex("tile hash", &small_hash);

    // --- The job's tiles.
    let layout = tile_layout(WIDTH, HEIGHT, TILE_SIZE);
    assert_eq!(layout.len(), 3);
    let tiles: Vec<Vec<u8>> = layout
        .iter()
        .enumerate()
        .map(|(i, &r)| tile_bytes(i as u32, r))
        .collect();
    out.heading("The job");
    out.value(
        "layout",
        layout
            .iter()
            .map(|r| format!("`{{{},{},{},{}}}`", r.x, r.y, r.w, r.h))
            .collect::<Vec<_>>()
            .join(", "),
    );
    for (i, b) in tiles.iter().enumerate() {
        out.value(
            &format!("tile {i}'s bytes begin (pixels (0, 0), (1, 0) of the tile)"),
            format!("`{}…`", hex::encode(&b[..16])),
        );
    }
    let hashes: Vec<Vec<Digest>> = layout
        .iter()
        .zip(&tiles)
        .map(|(&r, b)| blocks::block_hashes(b, r).expect("tile bytes"))
        .collect();
    let tile_hashes: Vec<Digest> = layout
        .iter()
        .zip(&tiles)
        .map(|(&r, b)| blocks::tile_hash(b, r).expect("tile bytes"))
        .collect();
    let leaf_inputs: Vec<LeafInput> = layout
        .iter()
        .zip(&tile_hashes)
        .map(|(&rect, &tile_hash)| LeafInput {
            job_id: JOB_ID,
            frame: FRAME,
            rect,
            spp: SPP,
            class_id,
            tile_hash,
        })
        .collect();
    let leaves: Vec<Digest> = leaf_inputs.iter().map(LeafInput::leaf).collect();

    // Block 2 of tile 1: a clipped block (4 × 8), its bytes row by row.
    let (clip_tile, clip_block) = (1usize, 2u32);
    let clip_rect = blocks::block_rect(layout[clip_tile], clip_block).expect("block 2");
    let clip_bytes =
        blocks::block_bytes(&tiles[clip_tile], layout[clip_tile], clip_block).expect("block 2");
    assert_eq!(
        clip_bytes,
        tile_bytes(clip_tile as u32, clip_rect),
        "a block's bytes are the frame's pixels of its rectangle"
    );
    out.value(
        "block 2 of tile 1 (frame rect)",
        format!(
            "`{{{},{},{},{}}}`",
            clip_rect.x, clip_rect.y, clip_rect.w, clip_rect.h
        ),
    );
    let row_len = clip_rect.w as usize * 8;
    out.block(
        "block 2 of tile 1, bytes row by row",
        clip_bytes
            .chunks(row_len)
            .enumerate()
            .map(|(y, row)| format!("{}   row y = {y}", hex::encode(row)))
            .collect(),
    );

    out.heading("Block hashes, tile hashes and leaves");
    for (t, hs) in hashes.iter().enumerate() {
        for (b, h) in hs.iter().enumerate() {
            let r = blocks::block_rect(layout[t], b as u32).expect("block");
            out.value(
                &format!("tile {t} block {b}"),
                format!(
                    "| {t} | {b} | `{{{},{},{},{}}}` | `{}` |",
                    r.x,
                    r.y,
                    r.w,
                    r.h,
                    hex::encode(h)
                ),
            );
        }
    }
    for t in 0..layout.len() {
        out.value(
            &format!("tile {t}"),
            format!(
                "| {t} | `{}` | `{}` |",
                hex::encode(tile_hashes[t]),
                hex::encode(leaves[t])
            ),
        );
    }
    assert_eq!(
        tile_hashes[2], hashes[2][0],
        "one block: tile hash = block hash"
    );

    // --- Tile 1's block tree (three blocks: the odd level promotes block 2).
    let b = &hashes[1];
    let bn01 = node_hash(BLOCK_NODE_CONTEXT, &b[0], &b[1]);
    let broot = node_hash(BLOCK_NODE_CONTEXT, &bn01, &b[2]);
    assert_eq!(broot, tile_hashes[1]);
    assert_eq!(blocks::block_root(b), Some(broot));
    out.heading("Tile 1's block tree");
    out.block(
        "block tree of tile 1",
        vec![
            "n01  = derive-key(\"tessera v3 block node\", block0 ‖ block1)".to_string(),
            format!("     = {}", hex::encode(bn01)),
            "hash = derive-key(\"tessera v3 block node\", n01 ‖ block2)".to_string(),
            format!("     = {}   = tile 1's tile hash", hex::encode(broot)),
        ],
    );
    let bnames = [
        ("block0", b[0]),
        ("block1", b[1]),
        ("block2", b[2]),
        ("n01", bn01),
    ];
    let bproofs: Vec<String> = (0..3u32)
        .map(|i| {
            let p = blocks::prove_block(b, i).unwrap();
            assert!(blocks::verify_block(&broot, i, &b[i as usize], 3, &p));
            format!("block {i} → `{}`", names_of(&p, &bnames))
        })
        .collect();
    out.value("block proofs in tile 1", bproofs.join("; "));

    // --- Leaf key material of tile 1.
    let l1 = &leaf_inputs[1];
    let mut material = Layout::new();
    material
        .words(&[&JOB_ID], "job id")
        .words(&[&u32le(FRAME)], "frame 7")
        .words(
            &[
                &u32le(l1.rect.x),
                &u32le(l1.rect.y),
                &u32le(l1.rect.w),
                &u32le(l1.rect.h),
            ],
            &format!(
                "x {}, y {}, w {}, h {}",
                l1.rect.x, l1.rect.y, l1.rect.w, l1.rect.h
            ),
        )
        .words(&[&u32le(SPP)], "spp 16")
        .words(&[&class_id], "class id")
        .words(&[&l1.tile_hash], "tile hash");
    assert_eq!(
        blake3::derive_key(LEAF_CONTEXT, &material.bytes),
        leaves[1],
        "the leaf is derive-key over this material"
    );
    out.heading("Leaf key material of tile 1");
    out.block("leaf key material of tile 1", material.lines.clone());

    // --- Batch root.
    let n01 = node_hash(NODE_CONTEXT, &leaves[0], &leaves[1]);
    let batch_root = node_hash(NODE_CONTEXT, &n01, &leaves[2]);
    assert_eq!(merkle::root(&leaves), Some(batch_root));
    out.heading("Batch root");
    out.block(
        "batch root",
        vec![
            "n01  = derive-key(\"tessera v1 merkle node\", leaf0 ‖ leaf1)".to_string(),
            format!("     = {}", hex::encode(n01)),
            "root = derive-key(\"tessera v1 merkle node\", n01 ‖ leaf2)".to_string(),
            format!("     = {}", hex::encode(batch_root)),
        ],
    );
    let lnames = [
        ("leaf0", leaves[0]),
        ("leaf1", leaves[1]),
        ("leaf2", leaves[2]),
        ("n01", n01),
    ];
    let lproofs: Vec<Vec<Digest>> = (0..3).map(|p| merkle::prove(&leaves, &[p])).collect();
    for (p, proof) in lproofs.iter().enumerate() {
        assert!(merkle::verify(&batch_root, &[p], &[leaves[p]], 3, proof));
    }
    out.value(
        "inclusion proofs",
        (0..3)
            .map(|p| format!("position {p} → `{}`", names_of(&lproofs[p], &lnames)))
            .collect::<Vec<_>>()
            .join("; "),
    );

    // --- Keys.
    let node_key = SecretKey::from_seed(&filled(1));
    let verifier_key = SecretKey::from_seed(&filled(2));
    let coordinator_key = SecretKey::from_seed(&filled(3));
    let node = node_key.public();
    out.heading("Keys");
    out.value(
        "node key file",
        node_key
            .to_key_file()
            .trim_end()
            .replace(&"01".repeat(32), "0101…01"),
    );
    out.hex("node", &node.0);
    out.hex("verifier", &verifier_key.public().0);
    out.hex("coordinator", &coordinator_key.public().0);

    // --- BatchCommitment.
    let batch = BatchCommitment {
        job_id: JOB_ID,
        frame: FRAME,
        batch_id: 0,
        tile_ids: vec![0, 1, 2],
        batch_root,
        leaf_count: 3,
        class_id,
        node,
    };
    let signed_batch = Signed::sign(batch.clone(), &node_key);
    let bytes = batch.signing_bytes();
    let mut l = Layout::new();
    l.domain(BatchCommitment::DOMAIN)
        .words(&[&JOB_ID], "job id")
        .words(&[&u32le(FRAME), &u32le(0)], "frame 7, batch id 0")
        .words(
            &[&u32le(3), &u32le(0), &u32le(1), &u32le(2)],
            "tile ids: count 3; 0, 1, 2",
        )
        .words(&[&batch_root], "batch root")
        .words(&[&u32le(3)], "leaf count")
        .words(&[&class_id], "class id")
        .words(&[&node.0], "node");
    out.heading("BatchCommitment");
    out.block(
        &format!("signing bytes ({} bytes)", bytes.len()),
        l.finish(&bytes),
    );
    out.value("signing bytes length", format!("({} bytes)", bytes.len()));
    out.hex("signature", &signed_batch.signature);
    let digest = signed_batch.digest();
    out.hex("signed-statement digest", &digest);

    // --- Round root: one batch, so the digest itself.
    let round_root = merkle::root(&[digest]).expect("one leaf");
    assert_eq!(round_root, digest);
    out.hex("round root", &round_root);

    // --- Sampling.
    let nonce = filled(ROUND_NONCES[0]);
    let seed = sample_seed(&round_root, &nonce, &JOB_ID, &node);
    out.heading("Sampling");
    out.hex("nonce commitment", &nonce_commitment(&nonce));
    out.hex("sample seed", &seed);
    let mut rng = ChaCha20Rng::from_seed(seed);
    let stream: Vec<String> = (0..4)
        .map(|_| format!("`0x{:016x}`", rng.next_u64()))
        .collect();
    out.value("ChaCha20 stream", stream.join(", "));
    let economy = default_tiers()
        .into_iter()
        .find(|t| t.name == "economy")
        .expect("economy tier");
    let sampling = SamplingPolicy::default();
    let tolerance = Tolerance::default();
    let k = sampling
        .node_k(&economy, TRUST)
        .saturating_mul(CheckKind::FIRST.k_multiplier(tolerance.escalation_multiplier));
    let n_committed = committed_blocks(&layout);
    let sampled = sample_blocks(&seed, &layout, k);
    out.value(
        "first check",
        format!(
            "`sample_blocks(seed, tiles, {k})` = `{}`",
            blocks_text(&sampled)
        ),
    );
    out.value("n committed", format!("{n_committed} blocks"));
    out.value("pixels", format!("{} pixels", pixels_of(&layout)));
    let (k_small, k_more) = (3, 3 * tolerance.escalation_multiplier);
    out.block(
        &format!("draws of sample_blocks(seed, tiles, {k_small})"),
        draws(&seed, &layout, k_small),
    );
    out.value(
        "small k",
        format!(
            "`sample_blocks(seed, tiles, {k_small})` = `{}`",
            blocks_text(&sample_blocks(&seed, &layout, k_small))
        ),
    );
    out.value(
        "small k, escalated",
        format!(
            "`sample_blocks(seed, tiles, {k_more})` = `{}`",
            blocks_text(&sample_blocks(&seed, &layout, k_more))
        ),
    );
    let big = tile_layout(130, 70, 64);
    out.value(
        "130 × 70 layout",
        format!(
            "{} blocks, {} pixels",
            committed_blocks(&big),
            pixels_of(&big)
        ),
    );
    for k in [5, 10] {
        out.value(
            &format!("130 × 70 layout, k {k}"),
            format!(
                "`sample_blocks(seed, layout, {k})` = `{}`",
                blocks_text(&sample_blocks(&seed, &big, k))
            ),
        );
    }

    // --- Dispute sampling.
    let dispute_nonce = filled(DISPUTE_NONCE);
    let dispute_seed = sample_seed(&round_root, &dispute_nonce, &JOB_ID, &node);
    out.heading("Dispute sampling");
    out.hex(
        "dispute nonce commitment",
        &nonce_commitment(&dispute_nonce),
    );
    out.hex("dispute seed", &dispute_seed);
    let dispute_k = sampling.node_k(&economy, TRUST).saturating_mul(
        CheckKind {
            dispute: true,
            escalated: false,
        }
        .k_multiplier(tolerance.escalation_multiplier),
    );
    out.value(
        "dispute check",
        format!(
            "`sample_blocks(dispute seed, tiles, {dispute_k})` = `{}`",
            blocks_text(&sample_blocks(&dispute_seed, &layout, dispute_k))
        ),
    );
    out.value(
        "dispute, 130 × 70 layout, k 10",
        format!(
            "`sample_blocks(dispute seed, layout, 10)` = `{}`",
            blocks_text(&sample_blocks(&dispute_seed, &big, 10))
        ),
    );

    // --- The sampled blocks with their proofs (the first check: every block).
    let proofs: Vec<SampleProof> = sampled
        .iter()
        .map(|r| {
            let pos = r.leaf as usize;
            let hs = &hashes[pos];
            let p = SampleProof {
                leaf_index: r.leaf,
                block: r.block,
                block_hash: hs[r.block as usize],
                block_proof: blocks::prove_block(hs, r.block).unwrap(),
                batch_id: 0,
                position: pos as u32,
                leaf: leaves[pos],
                proof: lproofs[pos].clone(),
            };
            assert!(blocks::verify_block(
                &tile_hashes[pos],
                p.block,
                &p.block_hash,
                hs.len() as u32,
                &p.block_proof
            ));
            p
        })
        .collect();
    out.heading("Sampled blocks and their proofs");
    for p in &proofs {
        let names: Vec<(String, Digest)> = hashes[p.leaf_index as usize]
            .iter()
            .enumerate()
            .map(|(i, h)| (format!("t{}.block{i}", p.leaf_index), *h))
            .chain([(
                format!("t{}.n01", p.leaf_index),
                node01(&hashes[p.leaf_index as usize]),
            )])
            .collect();
        let names: Vec<(&str, Digest)> = names.iter().map(|(n, d)| (n.as_str(), *d)).collect();
        let r = blocks::block_rect(layout[p.leaf_index as usize], p.block).expect("block");
        out.value(
            &format!("sample: leaf {}, block {}", p.leaf_index, p.block),
            format!(
                "| `{{{}, {}}}` | `{{{},{},{},{}}}` | `{}` | `{}` | {} | `{}` |",
                p.leaf_index,
                p.block,
                r.x,
                r.y,
                r.w,
                r.h,
                short(&p.block_hash),
                names_of(&p.block_proof, &names),
                p.position,
                names_of(&p.proof, &lnames),
            ),
        );
    }
    let clip_proof = proofs
        .iter()
        .find(|p| p.leaf_index == clip_tile as u32 && p.block == clip_block)
        .expect("every block is sampled");
    assert_eq!(blocks::block_hash(&clip_bytes), clip_proof.block_hash);
    out.block(
        "SampleProof of leaf 1, block 2",
        serde_json::to_string_pretty(clip_proof)
            .expect("serializes")
            .lines()
            .map(str::to_string)
            .collect(),
    );

    // --- Verdict (first check, every block re-rendered with the same bytes).
    let samples: Vec<SampleCheck> = proofs
        .iter()
        .map(|p| SampleCheck {
            leaf_index: p.leaf_index,
            block: p.block,
            frame: FRAME,
            tile_index: batch.tile_ids[p.position as usize],
            committed_hash: p.block_hash,
            rerender_hash: p.block_hash,
            delivered_ok: true,
            matched: true,
            metrics: TileMetrics::IDENTICAL,
            band: tolerance.block_band(true, &TileMetrics::IDENTICAL),
        })
        .collect();
    let verdict = Verdict {
        job_id: JOB_ID,
        round: 0,
        check: CheckKind::FIRST,
        node,
        seed,
        n_committed: n_committed as u32,
        k,
        samples: samples.clone(),
        // Every block matched: the aggregate is identical and its band is match.
        aggregate: TileMetrics::IDENTICAL,
        aggregate_band: tolerance.band(true, &TileMetrics::IDENTICAL),
        verifier_class_id: class_id,
        decision: Decision::Pass,
    };
    let signed_verdict = Signed::sign(verdict.clone(), &verifier_key);
    let bytes = verdict.signing_bytes();
    assert_eq!(
        bytes.len(),
        166 + 99 * samples.len(),
        "§2.6's length formula"
    );
    let metrics = |m: &TileMetrics| {
        [
            u32le(m.diverged_ppm),
            u32le(m.psnr_cdb),
            u32le(m.flip_mean_ppm),
            u32le(m.flip_p99_ppm),
        ]
    };
    let mut l = Layout::new();
    l.domain(Verdict::DOMAIN)
        .words(&[&JOB_ID], "job id")
        .words(&[&u32le(0), &[0]], "round 0, check 0 (first)")
        .words(&[&node.0], "node")
        .words(&[&seed], "seed")
        .words(
            &[&u32le(verdict.n_committed), &u32le(k)],
            &format!("n_committed {}, k {k}", verdict.n_committed),
        )
        .words(
            &[&u32le(samples.len() as u32)],
            &format!("samples: count {}", samples.len()),
        );
    for (i, s) in samples.iter().enumerate() {
        let m = metrics(&s.metrics);
        let head = [
            u32le(s.leaf_index),
            u32le(s.block),
            u32le(s.frame),
            u32le(s.tile_index),
        ];
        if i == 0 {
            l.words(
                &[&head[0], &head[1], &head[2], &head[3]],
                &format!(
                    "sample 0: leaf {}, block {}, frame {}, tile {}",
                    s.leaf_index, s.block, s.frame, s.tile_index
                ),
            )
            .words(&[&s.committed_hash], "  committed hash (block hash)")
            .words(&[&s.rerender_hash], "  re-render hash")
            .words(&[&[1], &[1]], "  delivered_ok, matched")
            .words(&[&m[0], &m[1], &m[2], &m[3]], "  metrics 0, 10000, 0, 0")
            .words(&[&[s.band.code()]], "  band match");
        } else {
            let mut all = Vec::new();
            for h in &head {
                all.extend_from_slice(h);
            }
            all.extend_from_slice(&s.committed_hash);
            all.extend_from_slice(&s.rerender_hash);
            all.extend_from_slice(&[1, 1]);
            for x in &m {
                all.extend_from_slice(x);
            }
            all.push(s.band.code());
            let shown = format!(
                "{} {} {} {} {} {} 01 01 {} {} {} {} {:02x}",
                hex::encode(head[0]),
                hex::encode(head[1]),
                hex::encode(head[2]),
                hex::encode(head[3]),
                short(&s.committed_hash),
                short(&s.rerender_hash),
                hex::encode(m[0]),
                hex::encode(m[1]),
                hex::encode(m[2]),
                hex::encode(m[3]),
                s.band.code()
            );
            l.shown(&all, &shown, "");
        }
    }
    let agg = metrics(&verdict.aggregate);
    l.words(
        &[&agg[0], &agg[1], &agg[2], &agg[3]],
        "aggregate 0, 10000, 0, 0",
    )
    .words(&[&[verdict.aggregate_band.code()]], "aggregate band match")
    .words(&[&class_id], "verifier class id")
    .words(&[&[verdict.decision.code()]], "decision pass");
    out.heading("Verdict");
    out.value(
        "signing bytes length",
        format!("({} = 166 + 99 × {})", bytes.len(), samples.len()),
    );
    out.block("verdict signing bytes", l.finish(&bytes));
    out.hex("verdict signature", &signed_verdict.signature);

    // --- JobManifest.
    let settings = RenderSettings {
        width: WIDTH,
        height: HEIGHT,
        spp: SPP,
        max_bounces: 4,
        seed: 1,
        camera: None,
        frame_rate: FrameRate::default(),
    };
    let round_nonces: Vec<Digest> = ROUND_NONCES.iter().map(|&x| filled(x)).collect();
    let manifest = JobManifest {
        version: MANIFEST_VERSION,
        job_id: JOB_ID,
        client: "default".into(),
        scene_name: "scene.gltf".into(),
        scene_hash: filled(0xab),
        settings: settings.clone(),
        frame_start: FRAME,
        frame_end: FRAME,
        tile_size: TILE_SIZE,
        tier: economy.clone(),
        sampling: sampling.clone(),
        pricing: Pricing::default(),
        slash_pct: 50,
        challenge_window_secs: 86_400,
        nonce_commitments: round_nonces.iter().map(nonce_commitment).collect(),
        dispute_nonce_commitment: nonce_commitment(&dispute_nonce),
        dispute_deposit_pct: 10,
        tolerance,
        verifiers: vec![verifier_key.public()],
        created_unix: 1_700_000_000,
    };
    let signed_manifest = Signed::sign(manifest.clone(), &coordinator_key);
    let bytes = manifest.signing_bytes();
    let limits = |lim: &Limits| {
        [
            u32le(lim.max_diverged_ppm),
            u32le(lim.min_psnr_cdb),
            u32le(lim.max_flip_mean_ppm),
            u32le(lim.max_flip_p99_ppm),
        ]
    };
    let limits_label = |name: &str, lim: &Limits| {
        format!(
            "  {name}: {}, {}, {}, {}",
            lim.max_diverged_ppm, lim.min_psnr_cdb, lim.max_flip_mean_ppm, lim.max_flip_p99_ppm
        )
    };
    let (t, sp) = (&manifest.tier, &manifest.sampling);
    let tol = &manifest.tolerance;
    let (pass, fail, far) = (limits(&tol.pass), limits(&tol.fail), limits(&tol.block_far));
    let tier_name = str_words(&t.name);
    let mut l = Layout::new();
    l.domain(JobManifest::DOMAIN)
        .words(
            &[&u32le(manifest.version)],
            &format!("version {}", manifest.version),
        )
        .words(&[&JOB_ID], "job id")
        .string("default", "client \"default\"")
        .string("scene.gltf", "scene_name \"scene.gltf\"")
        .shown(&manifest.scene_hash, "abab…ab (32 bytes)", "scene_hash")
        .words(
            &[
                &u32le(settings.width),
                &u32le(settings.height),
                &u32le(settings.spp),
                &u32le(settings.max_bounces),
            ],
            &format!(
                "width {}, height {}, spp {}, max_bounces {}",
                settings.width, settings.height, settings.spp, settings.max_bounces
            ),
        )
        .words(&[&u64le(settings.seed)], "seed 1")
        .words(&[&[0]], "camera: none")
        .words(&[&u32le(24), &u32le(1)], "frame_rate 24/1")
        .words(
            &[&u32le(FRAME), &u32le(FRAME), &u32le(TILE_SIZE)],
            &format!("frame_start 7, frame_end 7, tile_size {TILE_SIZE}"),
        )
        .words(
            &[
                &tier_name[0],
                &tier_name[1],
                &u32le(t.price_multiplier),
                &u32le(t.paid_on_pass_pct),
                &u32le(t.sampling_multiplier),
                &u32le(t.min_trust),
            ],
            &format!(
                "tier \"{}\", ×{}, {} %, ×{}, min trust {}",
                t.name, t.price_multiplier, t.paid_on_pass_pct, t.sampling_multiplier, t.min_trust
            ),
        )
        .words(
            &[
                &u32le(sp.detection_ppm),
                &u32le(sp.forged_fraction_ppm),
                &u32le(sp.new_node_trust),
                &u32le(sp.new_node_multiplier),
                &u32le(sp.floor),
            ],
            &format!(
                "sampling {}, {}, {}, {}, {}",
                sp.detection_ppm,
                sp.forged_fraction_ppm,
                sp.new_node_trust,
                sp.new_node_multiplier,
                sp.floor
            ),
        )
        .words(
            &[&u64le(manifest.pricing.micro_per_msample)],
            &format!("micro_per_msample {}", manifest.pricing.micro_per_msample),
        )
        .words(&[&u32le(manifest.slash_pct)], "slash_pct 50")
        .words(
            &[&u64le(manifest.challenge_window_secs)],
            "challenge_window_secs 86400",
        )
        .words(&[&u32le(4)], "nonce_commitments: count 4");
    for (x, c) in ROUND_NONCES.iter().zip(&manifest.nonce_commitments) {
        l.words(&[c], &format!("  BLAKE3({x:02x} × 32)"));
    }
    l.words(
        &[&manifest.dispute_nonce_commitment],
        "dispute_nonce_commitment",
    )
    .words(
        &[&u32le(manifest.dispute_deposit_pct)],
        "dispute_deposit_pct 10",
    )
    .words(
        &[&u32le(tol.pixel_abs_ppm), &u32le(tol.pixel_rel_ppm)],
        &format!(
            "tolerance: pixel_abs_ppm {}, pixel_rel_ppm {}",
            tol.pixel_abs_ppm, tol.pixel_rel_ppm
        ),
    )
    .words(
        &[&pass[0], &pass[1], &pass[2], &pass[3]],
        &limits_label("pass", &tol.pass),
    )
    .words(
        &[&fail[0], &fail[1], &fail[2], &fail[3]],
        &limits_label("fail", &tol.fail),
    )
    .words(
        &[&far[0], &far[1], &far[2], &far[3]],
        &limits_label("block_far", &tol.block_far),
    )
    .words(
        &[&u32le(tol.escalation_multiplier)],
        &format!("  escalation_multiplier {}", tol.escalation_multiplier),
    )
    .words(&[&u32le(1)], "verifiers: count 1")
    .words(&[&verifier_key.public().0], "verifier key")
    .words(&[&u64le(manifest.created_unix)], "created_unix 1700000000");
    out.heading("JobManifest");
    out.value(
        "signing bytes length",
        format!("signing bytes ({})", bytes.len()),
    );
    out.block("manifest signing bytes", l.finish(&bytes));
    out.hex("manifest signature", &signed_manifest.signature);

    // --- DisputeCommitment.
    let dispute = DisputeCommitment {
        job_id: JOB_ID,
        client: "default".into(),
        after_round: 0,
        checks: vec![(0, node)],
        nodes: vec![NodeSnapshot {
            node,
            trust: TRUST,
            stake: STAKE,
        }],
    };
    let signed_dispute = Signed::sign(dispute.clone(), &coordinator_key);
    let bytes = dispute.signing_bytes();
    let mut l = Layout::new();
    l.domain(DisputeCommitment::DOMAIN)
        .words(&[&JOB_ID], "job id")
        .string("default", "client \"default\"")
        .words(&[&u32le(0)], "after_round 0")
        .words(&[&u32le(1)], "checks: count 1")
        .words(&[&u32le(0), &node.0], "round 0, node")
        .words(&[&u32le(1)], "nodes: count 1")
        .words(&[&node.0], "node")
        .words(&[&u32le(TRUST), &u64le(STAKE)], "trust 10, stake 1000000");
    out.heading("DisputeCommitment");
    out.value(
        "signing bytes length",
        format!("signing bytes ({})", bytes.len()),
    );
    out.block("dispute signing bytes", l.finish(&bytes));
    out.hex("dispute signature", &signed_dispute.signature);

    // --- NodeSignal.
    let job_hex = hex::encode(JOB_ID);
    let signal = NodeSignal {
        node,
        sent_unix_ms: 1_700_000_000_000,
        active: vec![format!("{job_hex}-b0")],
        declined: vec![],
        failed: vec![TaskNote {
            task_id: format!("{job_hex}-b1"),
            attempt: 2,
            reason: "scene x: download failed".into(),
        }],
    };
    let signed_signal = Signed::sign(signal.clone(), &node_key);
    let bytes = signal.signing_bytes();
    let active = str_field(&signal.active[0]);
    let failed = &signal.failed[0];
    let (fid, freason) = (str_field(&failed.task_id), str_field(&failed.reason));
    let mut failed_bytes = u32le(1).to_vec();
    failed_bytes.extend_from_slice(&fid);
    failed_bytes.extend_from_slice(&u32le(failed.attempt));
    failed_bytes.extend_from_slice(&freason);
    let mut l = Layout::new();
    l.domain(NodeSignal::DOMAIN)
        .words(&[&node.0], "node")
        .words(&[&u64le(signal.sent_unix_ms)], "sent_unix_ms 1700000000000")
        .shown(
            &[&u32le(1)[..], &active].concat(),
            &format!("01000000 {} 3030…2d6230", hex::encode(&active[..4])),
            &format!("active: 1 × str ({} bytes \"…-b0\")", active.len() - 4),
        )
        .words(&[&u32le(0)], "declined: 0")
        .shown(
            &failed_bytes,
            &format!(
                "01000000 {} 3030…2d6231 {} {} 7363656e…",
                hex::encode(&fid[..4]),
                hex::encode(u32le(failed.attempt)),
                hex::encode(&freason[..4])
            ),
            "failed: 1 × (str task id, u32 attempt 2, str reason)",
        );
    out.heading("NodeSignal");
    out.block("node signal signing bytes", l.finish(&bytes));
    out.hex("node signal signing bytes in full", &bytes);
    out.hex("node signal signature", &signed_signal.signature);

    // --- Registration.
    let caps = Capabilities {
        class: class.clone(),
        memory_bytes: 0,
        slots: 2,
        software: "tessera 0.1.0".into(),
    };
    let registration = Registration {
        role: Role::Node,
        name: "gpu-01".into(),
        challenge: filled(0x33),
        coordinator: coordinator_key.public(),
        capabilities: caps.digest(),
    };
    let signed_registration = Signed::sign(registration.clone(), &node_key);
    let bytes = registration.signing_bytes();
    let mut l = Layout::new();
    l.domain(Registration::DOMAIN)
        .string("node", "role \"node\"")
        .string("gpu-01", "name \"gpu-01\"")
        .shown(&registration.challenge, "3333…33 (32 bytes)", "challenge")
        .shown(
            &registration.coordinator.0,
            &short(&registration.coordinator.0),
            "coordinator key",
        )
        .shown(
            &registration.capabilities,
            &short(&registration.capabilities),
            "capabilities digest",
        );
    out.heading("Registration");
    out.hex("capabilities digest", &registration.capabilities);
    out.block("registration signing bytes", l.finish(&bytes));
    out.hex("registration signature", &signed_registration.signature);

    // --- The JSON examples of §5 that show these values.
    let task_id = format!("{job_hex}-b0");
    let task = RenderTask {
        version: WIRE_VERSION,
        task_id: task_id.clone(),
        job_id: JOB_ID,
        scene_hash: manifest.scene_hash,
        settings,
        frame: FRAME,
        round: 0,
        batch_id: 0,
        tiles: layout
            .iter()
            .enumerate()
            .map(|(i, &rect)| TaskTile {
                tile_index: i as u32,
                rect,
            })
            .collect(),
        blocked: vec![],
        attempt: 0,
        requirements: Requirements::default(),
    };
    let result = BatchResult {
        version: WIRE_VERSION,
        task_id,
        round: 0,
        class,
        batch: BatchRecord {
            signed: signed_batch,
            tiles: layout
                .iter()
                .enumerate()
                .map(|(i, &rect)| LeafRecord {
                    tile_index: i as u32,
                    rect,
                    tile_hash: tile_hashes[i],
                    leaf: leaves[i],
                })
                .collect(),
        },
        tiles: tiles
            .iter()
            .enumerate()
            .map(|(i, b)| DeliveredTile {
                tile_index: i as u32,
                bytes: b.clone(),
            })
            .collect(),
    };
    let verdict_message = VerdictMessage {
        version: WIRE_VERSION,
        request_id: format!("{job_hex}-r0-{}", node.short()),
        verdict: signed_verdict,
    };
    out.heading("JSON examples of §5");
    out.json("RenderTask", "### 5.2 ", &task);
    out.json("BatchResult", "### 5.3 ", &result);
    out.json("NodeSignal", "### 5.4 ", &signed_signal);
    out.json("VerdictMessage", "### 5.6 ", &verdict_message);
    out.json("DisputeCommitment", "### 5.10 ", &signed_dispute);
    out
}

/// The pixels of `tiles` together.
fn pixels_of(tiles: &[TileRect]) -> u64 {
    tiles.iter().map(|t| t.pixels()).sum()
}

/// The first inner node of a block tree (`block0 ‖ block1`), or a value no proof uses.
fn node01(hashes: &[Digest]) -> Digest {
    match hashes {
        [a, b, ..] => node_hash(BLOCK_NODE_CONTEXT, a, b),
        _ => [0; 32],
    }
}

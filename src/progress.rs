//! A job's progress on stderr while `render`, `submit --wait` and `fetch --wait` wait for
//! it: on a terminal an `indicatif` bar (tiles rendered and verified of the total, the
//! state and round, an ETA), otherwise plain lines, one on every change of state or round
//! and at most one every [`PLAIN_EVERY`] otherwise. Logs go through [`LogWriter`], which
//! clears the bar while a log line is written so the two do not garble each other.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The least time between two plain progress lines with the same state and round.
pub const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// Where a job is, as the bar and the lines show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Job id (hex).
    pub job: String,
    /// State name (`queued`, `rendering`, ...).
    pub state: String,
    /// Current round.
    pub round: u32,
    /// Tiles in the job.
    pub total: u32,
    /// Tiles rendered (current round plus accepted before).
    pub rendered: u32,
    /// Tiles verified.
    pub verified: u32,
}

impl Snapshot {
    /// From the embedded farm's progress (`tessera render`).
    pub fn of_progress(job: &str, p: &tessera_coordinator::machine::Progress) -> Self {
        Snapshot {
            job: job.to_string(),
            state: p.state.to_string(),
            round: p.round,
            total: p.tiles_total,
            rendered: p.tiles_rendered,
            verified: p.tiles_verified,
        }
    }

    /// From the API's job status (`submit --wait`, `fetch --wait`).
    pub fn of_status(s: &tessera_api::JobStatus) -> Self {
        Snapshot {
            job: s.job_id.clone(),
            state: s.state.clone(),
            round: s.round,
            total: s.tiles_total,
            rendered: s.tiles_rendered,
            verified: s.tiles_verified,
        }
    }

    /// The job id's first 12 hex digits.
    fn short(&self) -> &str {
        &self.job[..self.job.len().min(12)]
    }

    /// The counts as the bar's message and the plain line say them.
    fn counts(&self) -> String {
        let round = if self.round > 0 {
            format!(" (round {})", self.round)
        } else {
            String::new()
        };
        format!(
            "{}{round}, {}/{} tiles rendered, {} verified",
            self.state, self.rendered, self.total, self.verified
        )
    }

    /// One plain progress line: `job 3fa2c1d0e9ab: rendering, 12/64 tiles rendered, 8
    /// verified`.
    pub fn line(&self) -> String {
        format!("job {}: {}", self.short(), self.counts())
    }
}

/// The bar that [`LogWriter`] clears around log lines, while one is drawn.
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

fn active() -> std::sync::MutexGuard<'static, Option<ProgressBar>> {
    ACTIVE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Shows one job's progress on stderr until dropped.
pub struct JobProgress {
    bar: Option<ProgressBar>,
    last: Option<(Snapshot, Instant)>,
}

impl JobProgress {
    /// A bar when stderr is a terminal, plain lines otherwise.
    pub fn new() -> Self {
        Self::with_bar(std::io::stderr().is_terminal())
    }

    /// A bar (`bar`) or plain lines.
    pub fn with_bar(bar: bool) -> Self {
        let bar = bar.then(|| {
            // Empty until the first update (a bar of length 0 would draw full).
            let b = ProgressBar::with_draw_target(Some(1), ProgressDrawTarget::stderr());
            b.set_message("starting");
            let style = ProgressStyle::with_template(
                "{spinner} job {prefix} [{bar:30}] {msg} · {elapsed} elapsed, ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            b.set_style(style);
            b.enable_steady_tick(Duration::from_millis(200));
            *active() = Some(b.clone());
            b
        });
        JobProgress { bar, last: None }
    }

    /// Show `s`: the bar moves; a plain line is printed on a change of state or round, or
    /// when the counts changed and the last line is [`PLAIN_EVERY`] old.
    pub fn update(&mut self, s: &Snapshot) {
        let now = Instant::now();
        if let Some(bar) = &self.bar {
            // Both halves of the work (rendering and verifying), so the ETA covers both.
            bar.set_length(u64::from(s.total) * 2);
            bar.set_position(
                u64::from(s.rendered.min(s.total)) + u64::from(s.verified.min(s.total)),
            );
            bar.set_prefix(s.short().to_string());
            bar.set_message(s.counts());
            self.last = Some((s.clone(), now));
            return;
        }
        if plain_due(self.last.as_ref().map(|(l, at)| (l, now - *at)), s) {
            eprintln!("{}", s.line());
            self.last = Some((s.clone(), now));
        }
    }
}

impl Default for JobProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for JobProgress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            *active() = None;
            bar.finish_and_clear();
        }
    }
}

/// Whether a plain line is due for `now`, after `last` (the last line printed and how
/// long ago): always the first, on a change of state or round, and on changed counts
/// once [`PLAIN_EVERY`] passed.
pub fn plain_due(last: Option<(&Snapshot, Duration)>, now: &Snapshot) -> bool {
    match last {
        None => true,
        Some((l, _)) if l.state != now.state || l.round != now.round => true,
        Some((l, _)) if l == now => false,
        Some((_, ago)) => ago >= PLAIN_EVERY,
    }
}

/// The log writer of `tracing_subscriber`: stderr, with the progress bar (if one is
/// drawn) cleared while a line is written.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogWriter;

/// One log event, buffered and written at once when dropped.
pub struct LogLine(Vec<u8>);

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let bytes = std::mem::take(&mut self.0);
        let write = || {
            // Nothing to do if stderr is gone.
            let _ = std::io::stderr().lock().write_all(&bytes);
        };
        let bar = active().clone();
        match bar {
            Some(b) => b.suspend(write),
            None => write(),
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;
    fn make_writer(&'a self) -> LogLine {
        LogLine(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(state: &str, round: u32, rendered: u32, verified: u32) -> Snapshot {
        Snapshot {
            job: "3fa2c1d0e9ab77aa".into(),
            state: state.into(),
            round,
            total: 64,
            rendered,
            verified,
        }
    }

    #[test]
    fn a_plain_line_names_the_job_state_and_counts() {
        assert_eq!(
            snap("rendering", 0, 12, 8).line(),
            "job 3fa2c1d0e9ab: rendering, 12/64 tiles rendered, 8 verified"
        );
        assert_eq!(
            snap("verifying", 1, 64, 60).line(),
            "job 3fa2c1d0e9ab: verifying (round 1), 64/64 tiles rendered, 60 verified"
        );
    }

    #[test]
    fn plain_lines_come_on_changes_of_state_and_at_most_every_few_seconds() {
        let a = snap("rendering", 0, 12, 0);
        assert!(plain_due(None, &a), "the first line");
        let soon = Duration::from_secs(1);
        assert!(!plain_due(Some((&a, soon)), &snap("rendering", 0, 13, 0)));
        assert!(plain_due(
            Some((&a, PLAIN_EVERY)),
            &snap("rendering", 0, 13, 0)
        ));
        assert!(
            !plain_due(Some((&a, PLAIN_EVERY * 3)), &a),
            "nothing changed"
        );
        assert!(plain_due(Some((&a, soon)), &snap("verifying", 0, 64, 0)));
        assert!(plain_due(Some((&a, soon)), &snap("rendering", 1, 12, 0)));
    }
}

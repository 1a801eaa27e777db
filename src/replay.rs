//! Offline mode: the same decode → state → evaluation → policy path over a JSON Lines file, in
//! event time. Outputs are stamped with event time, so a replay is reproducible and shows exactly
//! what the live service would have emitted.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use crate::output::Output;
use crate::policy::Clock;
use crate::sink::snapshot::SnapshotWriter;
use crate::sink::JsonLinesSink;
use crate::state::{Baselines, Input, Monitor};

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayStats {
    /// Non-empty lines read.
    pub lines: u64,
    /// Lines rejected to the dead-letter output.
    pub dead_letters: u64,
    /// Alerts emitted.
    pub alerts: u64,
    /// Triggers emitted.
    pub triggers: u64,
    /// Verdicts emitted.
    pub verdicts: u64,
}

/// Replays `input`, writing outputs to `out` and rejected lines to `dead_letters` (or to `out`
/// when none is given).
pub fn replay<W: Write, D: Write>(
    cfg: Config,
    input: &Path,
    out: W,
    dead_letters: Option<D>,
) -> anyhow::Result<ReplayStats> {
    let file = std::fs::File::open(input)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", input.display()))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let baselines = Baselines::load(&cfg)?;
    let snapshot_dir = cfg.triggers.snapshot_dir.clone();
    let mut monitor = Monitor::new(Arc::new(cfg), baselines, Clock::EventTime)
        .with_snapshots(SnapshotWriter::new(&snapshot_dir));
    let mut sink = JsonLinesSink::new(out, dead_letters);
    let mut stats = ReplayStats::default();
    // Outputs name the file, not the directory it was replayed from (reproducible backtests).
    let name = input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| input.display().to_string());
    let mut line = Vec::with_capacity(4096);
    let mut outputs = Vec::new();
    let mut number = 0i64;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        number += 1;
        let bytes = trim_line(&line);
        if bytes.is_empty() {
            continue;
        }
        stats.lines += 1;
        monitor.process(
            Input {
                kind: None,
                topic: &name,
                partition: 0,
                offset: number,
                payload: bytes,
            },
            &mut outputs,
        );
        emit(&mut sink, &mut outputs, &mut stats)?;
    }
    monitor.finish(&mut outputs);
    emit(&mut sink, &mut outputs, &mut stats)?;
    sink.flush()?;
    Ok(stats)
}

fn trim_line(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    let bytes = &line[..end];
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        &[]
    } else {
        bytes
    }
}

fn emit<W: Write, D: Write>(
    sink: &mut JsonLinesSink<W, D>,
    outputs: &mut Vec<Output>,
    stats: &mut ReplayStats,
) -> std::io::Result<()> {
    for o in outputs.drain(..) {
        match &o {
            Output::Alert(_) => stats.alerts += 1,
            Output::Trigger(_) => stats.triggers += 1,
            Output::Verdict(_) => stats.verdicts += 1,
            Output::DeadLetter(_) => stats.dead_letters += 1,
        }
        sink.write(&o)?;
    }
    Ok(())
}

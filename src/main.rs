//! The `driftwatch` command line: CLI → config → the chosen job.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use driftwatch::config::Config;
use driftwatch::generate::{Generator, GeneratorConfig};

/// Streaming drift, quality, fairness and latency monitor for ML models on Kafka.
#[derive(Parser)]
#[command(name = "driftwatch", version, about)]
struct Cli {
    /// Log format on stderr: `text` for people, `json` (one object per line) for log shippers.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "DRIFTWATCH_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the monitor against Kafka until SIGTERM or SIGINT.
    Run(RunArgs),
    /// In-process Kafka, synthetic traffic with drift, and the monitor; prints outputs.
    Demo {
        /// How long to run.
        #[arg(long, default_value = "40s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Address for /metrics.
        #[arg(long, default_value = "127.0.0.1:9464")]
        http_addr: SocketAddr,
    },
    /// Run the monitoring path over a JSON Lines file in event time; outputs on stdout.
    Replay(ReplayArgs),
    /// Write a synthetic event stream to a file (or stdout) or a Kafka topic.
    Generate(GenerateArgs),
    /// Reference profiles.
    Baseline {
        #[command(subcommand)]
        command: BaselineCommand,
    },
    /// Check the statistics against reference vectors.
    Conformance {
        /// Directory of case files (drift/, fairness/, latency/, quality/, concept/).
        dir: PathBuf,
        /// Which computation path to check.
        #[arg(long, value_enum, default_value = "both")]
        path: PathArg,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: FormatArg,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum PathArg {
    Streaming,
    Exact,
    Both,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Text,
    Jsonl,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Load and validate a configuration, printing every problem, or the effective config.
    Check {
        /// TOML file; without it, defaults and environment only.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum BaselineCommand {
    /// Build a reference profile from Parquet, CSV or JSON Lines.
    Build {
        /// Training or reference data.
        #[arg(long)]
        input: PathBuf,
        /// Model id the profile applies to.
        #[arg(long)]
        model: String,
        /// Model version (absent: every version).
        #[arg(long)]
        version: Option<String>,
        /// Feature columns (default: every column that is not an id, time, prediction, label,
        /// latency or attribute column).
        #[arg(long, value_delimiter = ',')]
        features: Vec<String>,
        /// Ground-truth column of a flat table.
        #[arg(long)]
        label_column: Option<String>,
        /// Where to write the profile JSON.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Overrides shared by `run` and `replay`.
#[derive(Args, Clone)]
struct Overrides {
    /// TOML configuration file.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Window length (e.g. 10m).
    #[arg(long, value_parser = humantime::parse_duration)]
    window: Option<Duration>,
    /// Window slide (e.g. 1m).
    #[arg(long, value_parser = humantime::parse_duration)]
    slide: Option<Duration>,
    /// Bootstrap each version's baseline from this many first events.
    #[arg(long)]
    baseline_events: Option<usize>,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    overrides: Overrides,
    /// Kafka bootstrap servers.
    #[arg(long)]
    brokers: Option<String>,
    /// Listen address for /metrics and health.
    #[arg(long)]
    http_addr: Option<SocketAddr>,
}

#[derive(Args)]
struct ReplayArgs {
    /// JSON Lines file of prediction, feature and label events (mixed).
    #[arg(long)]
    input: PathBuf,
    #[command(flatten)]
    overrides: Overrides,
    /// Write rejected lines here (JSON Lines with reason and original text).
    #[arg(long)]
    dead_letter: Option<PathBuf>,
    /// The file's format: `driftwatch` (v1 events, one a line) or `kserve` (KServe CloudEvents,
    /// one Kafka message a line: `{"headers": {...}, "key", "value", "timestamp"}`); default:
    /// `[input] format` of the configuration.
    #[arg(long, value_parser = ["driftwatch", "kserve"])]
    format: Option<String>,
}

#[derive(Args)]
struct GenerateArgs {
    /// Output file (`-` for stdout).
    #[arg(long, default_value = "-")]
    out: String,
    /// Produce to Kafka at these brokers instead of a file.
    #[arg(long)]
    brokers: Option<String>,
    /// Topic for predictions (Kafka mode).
    #[arg(long, default_value = "predictions")]
    predictions_topic: String,
    /// Topic for labels (Kafka mode).
    #[arg(long, default_value = "labels")]
    labels_topic: String,
    /// Prediction events.
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    /// Predictions per second of event time.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Number of models.
    #[arg(long, default_value_t = 1)]
    models: usize,
    /// Versions per model.
    #[arg(long, default_value_t = 1)]
    versions: usize,
    /// Numerical features.
    #[arg(long, default_value_t = 8)]
    numeric_features: usize,
    /// Categorical features.
    #[arg(long, default_value_t = 2)]
    categorical_features: usize,
    /// First drifted event index.
    #[arg(long)]
    drift_at: Option<u64>,
    /// Drifted features (e.g. f1,f3,c0).
    #[arg(long, value_delimiter = ',')]
    drift_features: Vec<String>,
    /// Shift in standard deviations.
    #[arg(long, default_value_t = 1.0)]
    drift_magnitude: f64,
    /// Share of predictions that get a label.
    #[arg(long, default_value_t = 0.0)]
    label_share: f64,
    /// Label delay (event time).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    label_delay: Duration,
    /// Latency multiplier per version (e.g. 1,2.5).
    #[arg(long, value_delimiter = ',')]
    latency_factors: Vec<f64>,
    /// Share of labels contradicting the model after the drift.
    #[arg(long, default_value_t = 0.0)]
    concept_flip: f64,
    /// Logit penalty for group gender=f after the drift (a fairness breach).
    #[arg(long, default_value_t = 0.0)]
    fairness_bias: f64,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Event time of the first event (RFC 3339).
    #[arg(long)]
    start: Option<String>,
}

fn load_config(o: &Overrides) -> anyhow::Result<Config> {
    let mut cfg = Config::load(o.config.as_deref())?;
    if let Some(w) = o.window {
        cfg.window.length = w;
    }
    if let Some(s) = o.slide {
        cfg.window.slide = s;
    }
    if let Some(n) = o.baseline_events {
        cfg.baseline.bootstrap_events = n;
    }
    let problems = cfg.validate();
    if !problems.is_empty() {
        return Err(driftwatch::config::ConfigError { problems }.into());
    }
    Ok(cfg)
}

/// Logs go to stderr (stdout carries the outputs), filtered by `DRIFTWATCH_LOG`.
fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DRIFTWATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours for a terminal only, not for a file or a log collector.
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => logs.init(),
        // One JSON object per line, the event's fields at the top level beside timestamp,
        // level and target.
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match run_command(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn run_command(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Run(args) => {
            let mut cfg = load_config(&args.overrides)?;
            if let Some(b) = args.brokers {
                cfg.kafka.brokers = b;
            }
            if let Some(a) = args.http_addr {
                cfg.http.addr = a;
            }
            let rt = runtime()?;
            let result = rt.block_on(async move {
                let shutdown = CancellationToken::new();
                let signals = shutdown.clone();
                tokio::spawn(async move {
                    wait_for_signal().await;
                    tracing::info!("shutdown requested");
                    signals.cancel();
                });
                driftwatch::app::run(cfg, shutdown, Default::default()).await
            });
            // The service drained within kafka.drain_timeout; broker requests still blocked in
            // a start-up or restore thread (metadata, topic creation) are abandoned.
            rt.shutdown_background();
            result?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo {
            duration,
            http_addr,
        } => {
            runtime()?.block_on(driftwatch::demo::run(driftwatch::demo::DemoOptions {
                duration,
                http_addr,
            }))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay(args) => {
            let mut cfg = load_config(&args.overrides)?;
            match args.format.as_deref() {
                Some("kserve") => cfg.input.format = driftwatch::config::InputFormat::Kserve,
                Some(_) => cfg.input.format = driftwatch::config::InputFormat::Driftwatch,
                None => {}
            }
            let stdout = std::io::stdout().lock();
            let out = std::io::BufWriter::new(stdout);
            let dead = match &args.dead_letter {
                Some(p) => Some(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("cannot create {}", p.display()))?,
                )),
                None => None,
            };
            let stats = driftwatch::replay::replay(cfg, &args.input, out, dead)?;
            eprintln!(
                "replayed {} lines: {} alerts, {} triggers, {} verdicts, {} dead letters; \
                 {} late events, {} labels joined, {} join misses; {}",
                stats.lines,
                stats.alerts,
                stats.triggers,
                stats.verdicts,
                stats.dead_letters,
                stats.late,
                stats.labels_joined,
                stats.join_misses,
                stats.cut()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate(args) => generate(args).map(|_| ExitCode::SUCCESS),
        Command::Baseline {
            command:
                BaselineCommand::Build {
                    input,
                    model,
                    version,
                    features,
                    label_column,
                    out,
                },
        } => {
            let profile = runtime()?.block_on(driftwatch::baseline::build::from_file(
                &input,
                &driftwatch::baseline::build::BuildOptions {
                    model_id: model,
                    model_version: version,
                    features,
                    label_column,
                    limits: Default::default(),
                },
            ))?;
            profile.save(&out)?;
            println!(
                "{}",
                serde_json::json!({"id": profile.id, "sha256": profile.sha256,
                "rows": profile.rows, "features": profile.features.len(), "path": out.display().to_string()})
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Conformance { dir, path, format } => {
            let paths = match path {
                PathArg::Streaming => vec![driftwatch::conformance::PathKind::Streaming],
                PathArg::Exact => vec![driftwatch::conformance::PathKind::Exact],
                PathArg::Both => vec![
                    driftwatch::conformance::PathKind::Exact,
                    driftwatch::conformance::PathKind::Streaming,
                ],
            };
            let report = driftwatch::conformance::run_dir(&dir, &paths)?;
            let mut stdout = std::io::stdout().lock();
            match format {
                FormatArg::Jsonl => report.write_jsonl(&mut stdout)?,
                FormatArg::Text => report.write_text(&mut stdout)?,
            }
            Ok(if report.all_passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Config {
            command: ConfigCommand::Check { config },
        } => match Config::load(config.as_deref()) {
            Ok(cfg) => {
                println!("{}", toml::to_string_pretty(&cfg)?);
                eprintln!("configuration is valid");
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::from(1))
            }
        },
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("signal handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn generate(a: GenerateArgs) -> anyhow::Result<()> {
    let start_ms = match &a.start {
        Some(s) => driftwatch::event::parse_rfc3339_ms(s)
            .with_context(|| format!("--start `{s}` is not RFC 3339"))?,
        None => GeneratorConfig::default().start_ms,
    };
    let g = Generator::new(GeneratorConfig {
        seed: a.seed,
        models: a.models,
        versions: a.versions,
        numeric_features: a.numeric_features,
        categorical_features: a.categorical_features,
        events: a.events,
        rate: a.rate,
        start_ms,
        drift_at: a.drift_at,
        drift_features: a.drift_features,
        drift_magnitude: a.drift_magnitude,
        label_share: a.label_share,
        label_delay_ms: a.label_delay.as_millis() as i64,
        latency_factors: a.latency_factors,
        concept_flip: a.concept_flip,
        fairness_bias: a.fairness_bias,
    });
    if let Some(brokers) = a.brokers {
        let sent = driftwatch::generate::produce_to_kafka(
            g,
            &brokers,
            &a.predictions_topic,
            &a.labels_topic,
            None,
            None,
        )?;
        eprintln!("produced {sent} messages");
        return Ok(());
    }
    let mut out: Box<dyn Write> = if a.out == "-" {
        Box::new(std::io::BufWriter::new(std::io::stdout().lock()))
    } else {
        Box::new(std::io::BufWriter::new(
            std::fs::File::create(&a.out).with_context(|| format!("cannot create {}", a.out))?,
        ))
    };
    for (_, line) in g {
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}

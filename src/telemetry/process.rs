//! Process metrics with the standard names of the Prometheus client libraries
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, …), read from `/proc` at each
//! scrape. Linux only; elsewhere nothing is registered.
//!
//! A small reader rather than the prometheus crate's `process` feature: that feature pulls in
//! `procfs` and a second major version of `rustix` for the same seven numbers.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Gauge, Opts, Registry};

/// Registers the process collector in `r` when `/proc/self/stat` is readable.
pub(super) fn register(r: &Registry) {
    if Snapshot::read().is_some() {
        r.register(Box::new(ProcessCollector::new()))
            .expect("process metrics registered once");
    }
}

/// Clock ticks per second of the times in `/proc/<pid>/stat`: `USER_HZ`, which the kernel fixes
/// at 100 for user space on every architecture it supports.
const USER_HZ: f64 = 100.0;

/// The numbers behind the metrics, as read at one scrape.
#[derive(Debug, Clone, PartialEq)]
struct Snapshot {
    cpu_seconds: f64,
    resident_bytes: f64,
    virtual_bytes: f64,
    threads: f64,
    start_time_seconds: f64,
    open_fds: Option<f64>,
    max_fds: Option<f64>,
}

impl Snapshot {
    fn read() -> Option<Self> {
        let text = |p: &str| std::fs::read_to_string(p).ok();
        let stat = parse_stat(&text("/proc/self/stat")?)?;
        let boot = boot_time(&text("/proc/stat")?)?;
        let resident_bytes = text("/proc/self/status")
            .and_then(|s| resident_kib(&s))
            .map_or(0.0, |kib| kib * 1024.0);
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as f64);
        let max_fds = text("/proc/self/limits").and_then(|s| max_open_files(&s));
        Some(Self {
            cpu_seconds: stat.cpu_ticks / USER_HZ,
            resident_bytes,
            virtual_bytes: stat.vsize,
            threads: stat.threads,
            start_time_seconds: boot + stat.start_ticks / USER_HZ,
            open_fds,
            max_fds,
        })
    }
}

/// The fields of `/proc/<pid>/stat` used here.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stat {
    /// User plus system time, clock ticks.
    cpu_ticks: f64,
    threads: f64,
    /// Start time after boot, clock ticks.
    start_ticks: f64,
    /// Virtual memory size, bytes.
    vsize: f64,
}

/// Parses `/proc/<pid>/stat` (proc(5)): the command name, in parentheses, may hold spaces and
/// parentheses, so the fields are counted from the last `)`.
fn parse_stat(s: &str) -> Option<Stat> {
    let rest = &s[s.rfind(')')? + 1..];
    // `rest` starts at field 3 (state): field n is at index n - 3.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |field: usize| f.get(field - 3)?.parse::<f64>().ok();
    Some(Stat {
        cpu_ticks: num(14)? + num(15)?,
        threads: num(20)?,
        start_ticks: num(22)?,
        vsize: num(23)?,
    })
}

/// `btime` of `/proc/stat`: boot time, seconds since the epoch.
fn boot_time(s: &str) -> Option<f64> {
    s.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// `VmRSS` of `/proc/<pid>/status`, KiB.
fn resident_kib(s: &str) -> Option<f64> {
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The soft limit on open files from `/proc/<pid>/limits` (`None` when unlimited).
fn max_open_files(s: &str) -> Option<f64> {
    s.lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

struct ProcessCollector {
    descs: Vec<Desc>,
}

/// Fresh metric handles, in the order they are exposed.
struct Families {
    cpu: Counter,
    resident: Gauge,
    virtual_: Gauge,
    threads: Gauge,
    start: Gauge,
    open_fds: Gauge,
    max_fds: Gauge,
}

impl Families {
    fn new() -> Self {
        let gauge =
            |name: &str, help: &str| Gauge::with_opts(Opts::new(name, help)).expect("valid");
        Self {
            cpu: Counter::with_opts(Opts::new(
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds",
            ))
            .expect("valid"),
            resident: gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
            ),
            virtual_: gauge(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
            ),
            threads: gauge("process_threads", "Number of OS threads in the process"),
            start: gauge(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
            ),
            open_fds: gauge("process_open_fds", "Number of open file descriptors"),
            max_fds: gauge("process_max_fds", "Maximum number of open file descriptors"),
        }
    }

    fn collectors(&self) -> [&dyn Collector; 7] {
        [
            &self.cpu,
            &self.resident,
            &self.virtual_,
            &self.threads,
            &self.start,
            &self.open_fds,
            &self.max_fds,
        ]
    }
}

impl ProcessCollector {
    fn new() -> Self {
        let f = Families::new();
        let descs = f
            .collectors()
            .iter()
            .flat_map(|c| c.desc().into_iter().cloned())
            .collect();
        Self { descs }
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some(s) = Snapshot::read() else {
            return Vec::new();
        };
        let f = Families::new();
        f.cpu.inc_by(s.cpu_seconds);
        f.resident.set(s.resident_bytes);
        f.virtual_.set(s.virtual_bytes);
        f.threads.set(s.threads);
        f.start.set(s.start_time_seconds);
        let mut present: Vec<&dyn Collector> = f.collectors()[..5].to_vec();
        if let Some(n) = s.open_fds {
            f.open_fds.set(n);
            present.push(&f.open_fds);
        }
        if let Some(n) = s.max_fds {
            f.max_fds.set(n);
            present.push(&f.max_fds);
        }
        present.iter().flat_map(|c| c.collect()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        // A command name with a space and a parenthesis, as proc(5) warns.
        let line = "4242 (dw (x) y) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 50 0 0 20 0 7 0 \
                    123456 987654321 2500 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                cpu_ticks: 300.0,
                threads: 7.0,
                start_ticks: 123_456.0,
                vsize: 987_654_321.0,
            })
        );
        assert_eq!(parse_stat("4242 (truncated) S 1 2"), None);
    }

    #[test]
    fn status_stat_and_limits_lines() {
        assert_eq!(
            resident_kib("Name:\tdw\nVmSize:\t  9000 kB\nVmRSS:\t    5120 kB\n"),
            Some(5120.0)
        );
        assert_eq!(boot_time("cpu  1 2 3\nbtime 1700000000\n"), Some(1.7e9));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024.0));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(max_open_files(unlimited), None);
    }

    #[test]
    fn this_process_is_described() {
        let s = Snapshot::read().expect("/proc is mounted on Linux");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after the epoch")
            .as_secs_f64();
        // Started before now, and not before the machine booted (a day is generous for a test).
        assert!(
            s.start_time_seconds <= now + 1.0 && s.start_time_seconds > now - 86_400.0,
            "{s:?}"
        );
        assert!(
            s.resident_bytes > 0.0 && s.virtual_bytes >= s.resident_bytes,
            "{s:?}"
        );
        assert!(
            s.threads >= 1.0 && s.open_fds.is_some_and(|n| n >= 3.0),
            "{s:?}"
        );
        let r = Registry::new();
        register(&r);
        let names: Vec<String> = r.gather().iter().map(|f| f.name().to_string()).collect();
        assert!(
            names.contains(&"process_cpu_seconds_total".to_string())
                && names.contains(&"process_resident_memory_bytes".to_string()),
            "{names:?}"
        );
    }
}

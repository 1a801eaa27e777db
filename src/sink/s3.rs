//! Trigger snapshots copied to S3-compatible object storage (AWS S3, MinIO, Ceph, moto…), so
//! that the CI job a trigger starts can fetch the window's events wherever it runs.
//!
//! A snapshot is first written to `triggers.snapshot_dir`, as without object storage; its
//! object key is `<prefix>/<model>/<version>/<trigger_id>.parquet` under `storage.snapshots_url`
//! (`s3://bucket/prefix`), named in the trigger's `evidence.snapshot.url`. A background thread
//! uploads it (`PUT`, signed with AWS Signature Version 4; three attempts) so that the consumer
//! loop never waits on the network: the object appears within seconds of the trigger, and a
//! failed upload is logged and counted (`driftwatch_snapshot_uploads_total{outcome}`), the local
//! file staying the evidence. Credentials come from the environment variables the
//! configuration names, never from the file.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::config::{parse_s3_url as parse_url, StorageConfig};

/// Where snapshots go and how to sign for it.
#[derive(Clone)]
pub struct S3Target {
    bucket: String,
    prefix: String,
    /// Scheme and authority requests go to, e.g. `http://127.0.0.1:5000`.
    endpoint: String,
    /// Bucket in the path (`endpoint/bucket/key`) rather than in the host name.
    path_style: bool,
    region: String,
    key_id: String,
    secret: String,
}

impl std::fmt::Debug for S3Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Target")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl S3Target {
    /// The target `cfg` configures, `None` without `storage.snapshots_url`; an error names a
    /// malformed URL or a credential variable that is not set (never its value).
    pub fn from_config(
        cfg: &StorageConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, String> {
        if cfg.snapshots_url.is_empty() {
            return Ok(None);
        }
        let (bucket, prefix) = parse_url(&cfg.snapshots_url).ok_or_else(|| {
            format!(
                "storage.snapshots_url must look like s3://bucket/prefix, got {:?}",
                cfg.snapshots_url
            )
        })?;
        let var = |name: &str| {
            env(name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("environment variable {name} (S3 credentials) is not set"))
        };
        let key_id = var(&cfg.access_key_id_env)?;
        let secret = var(&cfg.secret_access_key_env)?;
        let (endpoint, path_style) = if cfg.endpoint.is_empty() {
            (
                format!("https://{bucket}.s3.{}.amazonaws.com", cfg.region),
                false,
            )
        } else {
            (cfg.endpoint.trim_end_matches('/').to_string(), true)
        };
        Ok(Some(Self {
            bucket,
            prefix,
            endpoint,
            path_style,
            region: cfg.region.clone(),
            key_id,
            secret,
        }))
    }

    /// The object key of a snapshot at `relative` (its path under the snapshot directory).
    pub fn key(&self, relative: &str) -> String {
        if self.prefix.is_empty() {
            relative.to_string()
        } else {
            format!("{}/{relative}", self.prefix)
        }
    }

    /// `s3://bucket/key`.
    pub fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    /// Path of the object in the request: `/bucket/key` (path style) or `/key`.
    fn path(&self, key: &str) -> String {
        let key = uri_encode(key, false);
        if self.path_style {
            format!("/{}/{key}", uri_encode(&self.bucket, true))
        } else {
            format!("/{key}")
        }
    }

    /// A signed request for `method` on `key` with `body`, at `amz_date`
    /// (`YYYYMMDDTHHMMSSZ`): the URL and the headers to send.
    pub fn signed(
        &self,
        method: &str,
        key: &str,
        body: &[u8],
        amz_date: &str,
    ) -> (String, Vec<(String, String)>) {
        let host = self
            .endpoint
            .split_once("://")
            .map_or(self.endpoint.as_str(), |(_, h)| h)
            .to_string();
        let path = self.path(key);
        let payload = hex::encode(Sha256::digest(body));
        let headers = [
            ("host", host.as_str()),
            ("x-amz-content-sha256", payload.as_str()),
            ("x-amz-date", amz_date),
        ];
        let signed_headers = "host;x-amz-content-sha256;x-amz-date";
        let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
        let canonical =
            format!("{method}\n{path}\n\n{canonical_headers}\n{signed_headers}\n{payload}");
        let date = &amz_date[..8];
        let scope = format!("{date}/{}/s3/aws4_request", self.region);
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let mut key_bytes = hmac(format!("AWS4{}", self.secret).as_bytes(), date.as_bytes());
        for part in [self.region.as_str(), "s3", "aws4_request"] {
            key_bytes = hmac(&key_bytes, part.as_bytes());
        }
        let signature = hex::encode(hmac(&key_bytes, to_sign.as_bytes()));
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, \
             Signature={signature}",
            self.key_id
        );
        let mut out: Vec<(String, String)> = headers
            .iter()
            .filter(|(k, _)| *k != "host")
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        out.push(("authorization".into(), authorization));
        (format!("{}{path}", self.endpoint), out)
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// AWS's URI encoding: unreserved characters kept, everything else `%XX`; `/` kept in keys.
fn uri_encode(s: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if !encode_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Counts of finished uploads, for `/metrics`.
#[derive(Debug, Default)]
pub struct UploadCounts {
    /// Objects written.
    pub uploaded: AtomicU64,
    /// Snapshots given up after every attempt failed.
    pub failed: AtomicU64,
}

/// The background uploader: snapshots queued by the monitor, written by one thread.
pub struct Uploader {
    tx: Mutex<Option<std::sync::mpsc::SyncSender<(PathBuf, String)>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    target: S3Target,
    counts: Arc<UploadCounts>,
}

impl std::fmt::Debug for Uploader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploader")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// Snapshots waiting for upload at most; beyond, one is given up (logged and counted).
const QUEUE: usize = 64;

impl Uploader {
    /// Starts the upload thread for `target`.
    pub fn start(target: S3Target) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(PathBuf, String)>(QUEUE);
        let counts = Arc::new(UploadCounts::default());
        let thread = std::thread::Builder::new()
            .name("snapshot-upload".into())
            .spawn({
                let target = target.clone();
                let counts = Arc::clone(&counts);
                move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            tracing::error!(error = %e, "snapshot uploads disabled");
                            return;
                        }
                    };
                    let client = reqwest::Client::builder()
                        .timeout(Duration::from_secs(30))
                        .build()
                        .expect("HTTP client");
                    for (path, key) in rx {
                        let ok = rt.block_on(put_file(&client, &target, &path, &key));
                        let counter = if ok { &counts.uploaded } else { &counts.failed };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })?;
        Ok(Self {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            target,
            counts,
        })
    }

    /// Where the snapshot at `relative` (under the snapshot directory) will be.
    pub fn url_of(&self, relative: &str) -> String {
        self.target.url(&self.target.key(relative))
    }

    /// Queues the snapshot file at `path` for upload under `relative`'s key.
    pub fn upload(&self, path: PathBuf, relative: &str) {
        let key = self.target.key(relative);
        if let Some(tx) = self.tx.lock().expect("not poisoned").as_ref() {
            if tx.try_send((path, key.clone())).is_err() {
                tracing::error!(%key, "snapshot upload queue full; the snapshot stays local");
                self.counts.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Upload counts.
    pub fn counts(&self) -> Arc<UploadCounts> {
        Arc::clone(&self.counts)
    }

    /// Uploads what is queued and stops the thread.
    pub fn finish(&self) {
        self.tx.lock().expect("not poisoned").take();
        let thread = self.thread.lock().expect("not poisoned").take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for Uploader {
    fn drop(&mut self) {
        self.finish();
    }
}

/// PUTs one file, three attempts; whether it was written.
async fn put_file(client: &reqwest::Client, target: &S3Target, path: &PathBuf, key: &str) -> bool {
    let body = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "snapshot not readable for upload");
            return false;
        }
    };
    let mut last = String::new();
    for attempt in 0..3u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
        }
        let date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let (url, headers) = target.signed("PUT", key, &body, &date);
        let mut req = client.put(&url).body(body.clone());
        for (k, v) in headers {
            req = req.header(k, v);
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => {
                tracing::info!(url = %target.url(key), bytes = body.len(), "snapshot uploaded");
                return true;
            }
            Ok(r) => last = format!("HTTP {}", r.status()),
            Err(e) => last = e.to_string(),
        }
    }
    tracing::error!(url = %target.url(key), error = %last, "snapshot upload failed");
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(endpoint: &str) -> S3Target {
        let cfg = StorageConfig {
            snapshots_url: "s3://evidence/driftwatch/snaps/".into(),
            endpoint: endpoint.into(),
            ..StorageConfig::default()
        };
        let env = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("AKIDEXAMPLE".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_string()),
            _ => None,
        };
        S3Target::from_config(&cfg, env).unwrap().unwrap()
    }

    #[test]
    fn urls_keys_and_configuration_errors() {
        assert_eq!(
            parse_url("s3://b/p/q/"),
            Some(("b".to_string(), "p/q".to_string()))
        );
        assert_eq!(parse_url("s3://b"), Some(("b".to_string(), String::new())));
        assert_eq!(parse_url("http://b/p"), None);
        let t = target("http://127.0.0.1:5000/");
        assert_eq!(t.key("m/v1/t.parquet"), "driftwatch/snaps/m/v1/t.parquet");
        assert_eq!(
            t.url(&t.key("m/v1/t.parquet")),
            "s3://evidence/driftwatch/snaps/m/v1/t.parquet"
        );
        let (url, _) = t.signed("PUT", "a b/c.parquet", b"", "20270101T000000Z");
        assert_eq!(url, "http://127.0.0.1:5000/evidence/a%20b/c.parquet");
        let aws = target("");
        let (url, _) = aws.signed("PUT", "k", b"", "20270101T000000Z");
        assert_eq!(url, "https://evidence.s3.us-east-1.amazonaws.com/k");
        let missing = StorageConfig {
            snapshots_url: "s3://b/p".into(),
            ..StorageConfig::default()
        };
        let err = S3Target::from_config(&missing, |_| None).unwrap_err();
        assert!(err.contains("AWS_ACCESS_KEY_ID"), "{err}");
        let bad = StorageConfig {
            snapshots_url: "evidence/p".into(),
            ..StorageConfig::default()
        };
        assert!(S3Target::from_config(&bad, |_| None).is_err());
    }

    #[test]
    fn the_signature_is_deterministic_and_covers_body_date_and_key() {
        let t = target("http://127.0.0.1:5000");
        let auth = |key: &str, body: &[u8], date: &str| {
            let (_, h) = t.signed("PUT", key, body, date);
            h.into_iter().find(|(k, _)| k == "authorization").unwrap().1
        };
        let a = auth("k", b"x", "20270101T000000Z");
        assert_eq!(a, auth("k", b"x", "20270101T000000Z"));
        assert!(a.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20270101/us-east-1/s3/aws4_request, \
             SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature="
        ));
        assert_ne!(a, auth("k", b"y", "20270101T000000Z"));
        assert_ne!(a, auth("k", b"x", "20270101T000001Z"));
        assert_ne!(a, auth("j", b"x", "20270101T000000Z"));
        // The secret never shows in what is sent or printed.
        let (_, h) = t.signed("PUT", "k", b"x", "20270101T000000Z");
        assert!(h.iter().all(|(_, v)| !v.contains("wJalrXUtnFEMI")));
        assert!(!format!("{t:?}").contains("wJalrXUtnFEMI"));
    }
}

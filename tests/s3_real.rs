//! Trigger snapshots copied to S3-compatible object storage, against a real S3 server: moto's
//! (`scripts/s3`, started by `scripts/test-all`) with IAM authentication on, so an upload is
//! accepted only with a valid AWS Signature Version 4 from a user allowed to write.
//!
//! `#[ignore]`d in a plain `cargo test`: it needs `DRIFTWATCH_TEST_S3` (the endpoint) and
//! `DRIFTWATCH_TEST_S3_PYTHON` (a python with boto3, for the setup and to read objects back).

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

/// Runs `script` with the S3 test environment's python; its stdout.
fn python(script: &str, args: &[&str]) -> String {
    let py = std::env::var("DRIFTWATCH_TEST_S3_PYTHON")
        .expect("DRIFTWATCH_TEST_S3_PYTHON (scripts/s3 python) is set");
    let out = Command::new(py)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

const SETUP: &str = r#"
import boto3, json, sys
kw = dict(endpoint_url=sys.argv[1], region_name="us-east-1",
          aws_access_key_id="setup", aws_secret_access_key="setup")
iam = boto3.client("iam", **kw)
iam.create_user(UserName="driftwatch")
key = iam.create_access_key(UserName="driftwatch")["AccessKey"]
iam.put_user_policy(UserName="driftwatch", PolicyName="snapshots", PolicyDocument=json.dumps(
    {"Version": "2012-10-17",
     "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
boto3.client("s3", **kw).create_bucket(Bucket="evidence")
print(key["AccessKeyId"], key["SecretAccessKey"])
"#;

/// Prints the object's bytes as hex, or `missing`.
const GET: &str = r#"
import boto3, sys
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3])
try:
    print(s3.get_object(Bucket=sys.argv[4], Key=sys.argv[5])["Body"].read().hex())
except s3.exceptions.NoSuchKey:
    print("missing")
"#;

/// Replays a drifting stream with snapshots copied to `url`, signing with `key_id`/`secret`;
/// the trigger's snapshot evidence and stderr.
fn replay_to(
    dir: &std::path::Path,
    endpoint: &str,
    url: &str,
    key_id: &str,
    secret: &str,
) -> (Value, String) {
    let input = dir.join("drift.jsonl");
    if !input.exists() {
        let mut g = gen(4_242, 30_000, 200.0);
        g.drift_at = Some(15_000);
        g.drift_features = vec!["f1".into(), "f3".into()];
        g.drift_magnitude = 1.5;
        write_stream(&input, &g);
    }
    let config = dir.join(format!("{}.toml", url.replace(['/', ':'], "_")));
    std::fs::write(
        &config,
        format!(
            "[window]\nlength = \"30s\"\nslide = \"5s\"\n\n[baseline]\nbootstrap_events = 3000\n\n\
             [triggers]\nsnapshot_dir = {:?}\n\n[storage]\nsnapshots_url = {url:?}\n\
             endpoint = {endpoint:?}\naccess_key_id_env = \"DW_TEST_KEY_ID\"\n\
             secret_access_key_env = \"DW_TEST_SECRET\"\n",
            dir.join("snapshots").display().to_string()
        ),
    )
    .unwrap();
    let out = run_cli_env(
        &[
            "replay",
            "--input",
            input.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
        &[
            ("DW_TEST_KEY_ID", key_id),
            ("DW_TEST_SECRET", secret),
            ("DRIFTWATCH_LOG", "info"),
        ],
    );
    assert!(out.status.success(), "replay failed: {}", stderr(&out));
    let outputs = parse_lines(&out.stdout);
    let trigger = outputs
        .iter()
        .find(|o| o["type"] == "retrain_trigger")
        .unwrap_or_else(|| panic!("no trigger:\n{}", stderr(&out)))
        .clone();
    (trigger["evidence"]["snapshot"].clone(), stderr(&out))
}

#[test]
#[ignore = "needs an S3 server (scripts/test-all starts moto's)"]
fn snapshots_are_copied_to_object_storage_with_a_valid_signature() {
    let endpoint =
        std::env::var("DRIFTWATCH_TEST_S3").expect("DRIFTWATCH_TEST_S3 (scripts/s3 endpoint)");
    let keys = python(SETUP, &[&endpoint]);
    let (key_id, secret) = keys.split_once(' ').expect("key id and secret");
    let dir = tempfile::tempdir().unwrap();

    let (snapshot, log) = replay_to(
        dir.path(),
        &endpoint,
        "s3://evidence/runs/ok",
        key_id,
        secret,
    );
    let url = snapshot["url"]
        .as_str()
        .unwrap_or_else(|| panic!("{snapshot}"));
    let key = url
        .strip_prefix("s3://evidence/")
        .unwrap_or_else(|| panic!("{url}"));
    assert!(key.starts_with("runs/ok/model-0/v1/"), "{key}");
    let local = std::fs::read(snapshot["path"].as_str().unwrap()).expect("local snapshot");
    let stored = python(GET, &[&endpoint, key_id, secret, "evidence", key]);
    assert_eq!(
        stored,
        local.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        "the object differs from the local snapshot:\n{log}"
    );
    assert!(log.contains("snapshot uploaded"), "{log}");
    assert!(!log.contains(secret), "the secret was logged");

    // A wrong secret: the server refuses the signature; the run goes on, says so, and keeps
    // the snapshot local.
    let (snapshot, log) = replay_to(
        dir.path(),
        &endpoint,
        "s3://evidence/runs/refused",
        key_id,
        "not-the-secret",
    );
    let url = snapshot["url"]
        .as_str()
        .unwrap_or_else(|| panic!("{snapshot}"));
    let key = url.strip_prefix("s3://evidence/").unwrap();
    assert!(log.contains("snapshot upload failed"), "{log}");
    assert!(log.contains("403"), "{log}");
    assert_eq!(
        python(GET, &[&endpoint, key_id, secret, "evidence", key]),
        "missing"
    );
    assert!(std::path::Path::new(snapshot["path"].as_str().unwrap()).exists());
}

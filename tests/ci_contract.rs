//! The CI contract: every golden output (`tests/golden/*/expected.jsonl`, real outputs of the
//! replayed streams) goes through the webhook sink, with each of the three templates, to a
//! local receiver; what arrives is checked against the output it came from, then the shell
//! steps of `examples/ci/github-actions.yml` and `examples/ci/gitlab-ci.yml` (extracted from
//! the YAML) run under bash against it, with `train.py` and `deploy.py` replaced by stubs that
//! record how they were called.
//!
//! Needs `bash`, `jq` (the GitHub workflow uses it) and `python3` with PyYAML (reads the
//! YAML; the GitLab jobs run Python).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::Router;
use driftwatch::config::webhook::{WebhookConfig, WebhookTemplate};
use driftwatch::output::Output;
use driftwatch::sink::webhook::{
    verify_signature, Delivery, WebhookSink, EVENT_HEADER, IDEMPOTENCY_HEADER, SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
};
use serde_json::Value;

const SECRET: &str = "ci-contract-secret";

/// One request as the receiver saw it.
struct Hit {
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

type Hits = Arc<Mutex<Vec<Hit>>>;

async fn receive(State(hits): State<Hits>, uri: Uri, headers: HeaderMap, body: Bytes) {
    hits.lock().unwrap().push(Hit {
        path: uri.path().to_owned(),
        headers,
        body: body.to_vec(),
    });
}

async fn receiver() -> (String, Hits) {
    let hits: Hits = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .fallback(receive)
        .with_state(Arc::clone(&hits));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), hits)
}

/// Every golden output, with the case it comes from.
fn golden_outputs() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let dir = common::repo().join("tests/golden");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    for case in cases {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&case)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.starts_with("expected") && name.ends_with(".jsonl")
            })
            .collect();
        files.sort();
        for f in files {
            let name = case.file_name().unwrap().to_string_lossy().into_owned();
            for line in std::fs::read_to_string(&f).unwrap().lines() {
                out.push((name.clone(), serde_json::from_str(line).unwrap()));
            }
        }
    }
    out
}

/// A YAML file as JSON, read by PyYAML.
fn yaml(path: &Path) -> Value {
    let o = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)",
        ])
        .arg(path)
        .output()
        .expect("python3 runs");
    assert!(
        o.status.success(),
        "reading {} needs python3 with PyYAML: {}",
        path.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A working directory as a CI job sees it: stub `train.py` and `deploy.py` that append their
/// arguments to `calls.jsonl`, and `python` on the PATH.
fn job_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for stub in ["train", "deploy"] {
        std::fs::write(
            dir.path().join(format!("{stub}.py")),
            format!(
                "import json, sys\nwith open('calls.jsonl', 'a') as f:\n    f.write(json.dumps(['{stub}'] + sys.argv[1:]) + '\\n')\n"
            ),
        )
        .unwrap();
    }
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let python = bin.join("python");
    std::fs::write(&python, "#!/bin/sh\nexec python3 \"$@\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Runs `script` under bash in `dir` with `env`; panics with the output when it fails.
fn bash(dir: &Path, script: &str, env: &BTreeMap<String, String>, what: &str) {
    let path = format!(
        "{}:{}",
        dir.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = Command::new("bash")
        .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", script])
        .current_dir(dir)
        .env("PATH", path)
        .envs(env)
        .output()
        .expect("bash runs");
    assert!(
        o.status.success(),
        "{what} failed ({}):\n{script}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The stubs' calls, each as its argument list.
fn calls(dir: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(dir.join("calls.jsonl"))
        .map(|t| {
            t.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        })
        .unwrap_or_default()
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The value of a GitHub expression, for the two forms the workflow uses.
fn github_expr(value: &Value, payload: &Value) -> String {
    let s = text(value);
    let Some(expr) = s
        .trim()
        .strip_prefix("${{")
        .and_then(|e| e.strip_suffix("}}"))
    else {
        return s;
    };
    let expr = expr.trim();
    if expr == "toJSON(github.event.client_payload)" {
        serde_json::to_string_pretty(payload).unwrap()
    } else if let Some(field) = expr.strip_prefix("github.event.client_payload.") {
        text(&payload[field])
    } else {
        panic!("the workflow uses an expression this test does not evaluate: {expr}")
    }
}

/// A job's `if:`, for the form the workflow uses (`github.event.client_payload.F == 'V'`).
fn github_if(cond: &Value, payload: &Value) -> bool {
    let Some(cond) = cond.as_str() else {
        return true;
    };
    let (field, want) = cond
        .split_once("==")
        .unwrap_or_else(|| panic!("unsupported if: {cond}"));
    let field = field
        .trim()
        .strip_prefix("github.event.client_payload.")
        .unwrap_or_else(|| panic!("unsupported if: {cond}"));
    text(&payload[field]) == want.trim().trim_matches('\'')
}

/// The workflow's jobs for one `client_payload`, run in the order of the file; returns the
/// job directory (stub calls, step summary).
fn run_github_workflow(workflow: &Value, payload: &Value) -> tempfile::TempDir {
    let dir = job_dir();
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in workflow["env"].as_object().unwrap() {
        env.insert(k.clone(), github_expr(v, payload));
    }
    env.insert(
        "GITHUB_STEP_SUMMARY".into(),
        dir.path().join("summary.md").display().to_string(),
    );
    for (job_name, job) in workflow["jobs"].as_object().unwrap() {
        if !github_if(&job["if"], payload) {
            continue;
        }
        for step in job["steps"].as_array().unwrap() {
            let Some(script) = step["run"].as_str() else {
                continue; // `uses:` actions (checkout, setup-python)
            };
            let mut step_env = env.clone();
            if let Some(e) = step["env"].as_object() {
                for (k, v) in e {
                    step_env.insert(k.clone(), github_expr(v, payload));
                }
            }
            let what = format!("GitHub job {job_name}, step {}", text(&step["name"]));
            bash(dir.path(), script, &step_env, &what);
        }
    }
    dir
}

/// The GitLab jobs whose rules match these trigger variables, `before_script` then `script`
/// in one shell as GitLab runs them; returns the job directory and the jobs run.
fn run_gitlab_jobs(ci: &Value, variables: &Value) -> (tempfile::TempDir, Vec<String>) {
    let dir = job_dir();
    let mut env: BTreeMap<String, String> = variables
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), text(v)))
        .collect();
    env.insert("CI_PIPELINE_SOURCE".into(), "trigger".into());
    let mut ran = Vec::new();
    for (name, job) in ci.as_object().unwrap() {
        let Some(rules) = job["rules"].as_array() else {
            continue; // stages, hidden templates
        };
        let matches = rules.iter().any(|r| {
            let cond = r["if"].as_str().unwrap();
            let want = cond
                .split("$DRIFTWATCH_TYPE ==")
                .nth(1)
                .unwrap_or_else(|| panic!("unsupported rule: {cond}"))
                .trim()
                .trim_matches('"');
            cond.contains("$CI_PIPELINE_SOURCE == \"trigger\"") && env["DRIFTWATCH_TYPE"] == want
        });
        if !matches {
            continue;
        }
        let template = &ci[job["extends"].as_str().unwrap_or_default()];
        let mut lines = Vec::new();
        for part in [
            &template["before_script"],
            &job["before_script"],
            &job["script"],
        ] {
            for cmd in part.as_array().into_iter().flatten() {
                lines.push(cmd.as_str().unwrap().to_owned());
            }
        }
        bash(
            dir.path(),
            &lines.join("\n"),
            &env,
            &format!("GitLab job {name}"),
        );
        ran.push(name.clone());
    }
    (dir, ran)
}

/// What the examples must do with an output: train on a trigger's snapshot, promote or roll
/// back the candidate of a decided verdict, nothing else.
fn expected_calls(o: &Value) -> Vec<Vec<String>> {
    let s = |v: &Value| text(v);
    match o["type"].as_str().unwrap() {
        "retrain_trigger" => vec![vec![
            "train".into(),
            "--model".into(),
            s(&o["model_id"]),
            "--base-version".into(),
            s(&o["model_version"]),
            "--evidence".into(),
            s(&o["evidence"]["snapshot"]["path"]),
            "--trigger-id".into(),
            s(&o["trigger_id"]),
        ]],
        "canary_verdict" if o["verdict"] != "continue" => vec![vec![
            "deploy".into(),
            s(&o["verdict"]),
            "--model".into(),
            s(&o["model_id"]),
            "--version".into(),
            s(&o["candidate_version"]),
            "--verdict-id".into(),
            s(&o["verdict_id"]),
        ]],
        _ => Vec::new(),
    }
}

fn sink(url: String, template: WebhookTemplate, dir: &Path) -> WebhookSink {
    let mut cfg = WebhookConfig::new(url, template);
    cfg.secret_env = Some("DRIFTWATCH_CI_CONTRACT_SECRET".into());
    cfg.max_retries = 0;
    cfg.dead_letter_file = dir.join("dead.jsonl");
    if template != WebhookTemplate::Generic {
        cfg.token_env = Some("DRIFTWATCH_CI_CONTRACT_TOKEN".into());
    }
    WebhookSink::new(cfg).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_golden_output_reaches_ci_as_the_examples_expect() {
    std::env::set_var("DRIFTWATCH_CI_CONTRACT_SECRET", SECRET);
    std::env::set_var("DRIFTWATCH_CI_CONTRACT_TOKEN", "ci-token");
    let outputs = golden_outputs();
    let types: Vec<&str> = outputs
        .iter()
        .map(|(_, o)| o["type"].as_str().unwrap())
        .collect();
    for t in ["alert", "retrain_trigger", "canary_verdict"] {
        assert!(types.contains(&t), "the golden outputs have no {t}");
    }
    let dir = tempfile::tempdir().unwrap();
    let (base, hits) = receiver().await;
    let sinks = [
        sink(
            format!("{base}/generic"),
            WebhookTemplate::Generic,
            dir.path(),
        ),
        sink(
            format!("{base}/repos/acme/models/dispatches"),
            WebhookTemplate::GithubRepositoryDispatch,
            dir.path(),
        ),
        sink(
            format!("{base}/api/v4/projects/7/trigger/pipeline"),
            WebhookTemplate::GitlabPipelineTrigger,
            dir.path(),
        ),
    ];
    for (case, json) in &outputs {
        let o = Output::from_json(json).unwrap_or_else(|e| panic!("{case}: {e}: {json}"));
        assert_eq!(
            &o.to_json(),
            json,
            "{case}: the output reads back as it was"
        );
        for s in &sinks {
            let d = s.deliver(&o).await.unwrap();
            assert!(matches!(d, Delivery::Delivered { .. }), "{d:?}");
        }
    }
    let hits = std::mem::take(&mut *hits.lock().unwrap());
    assert_eq!(hits.len(), 3 * outputs.len());
    assert!(!dir.path().join("dead.jsonl").exists());

    let workflow = yaml(&common::repo().join("examples/ci/github-actions.yml"));
    let gitlab = yaml(&common::repo().join("examples/ci/gitlab-ci.yml"));
    for ((case, o), hit) in outputs.iter().zip(hits.chunks(3)) {
        let key = Output::from_json(o).unwrap().idempotency_key();
        for h in hit {
            let header = |n: &str| h.headers[n].to_str().unwrap().to_owned();
            assert_eq!(header(IDEMPOTENCY_HEADER), key);
            assert_eq!(header(EVENT_HEADER), o["type"]);
            assert!(verify_signature(
                SECRET.as_bytes(),
                &header(TIMESTAMP_HEADER),
                &h.body,
                &header(SIGNATURE_HEADER)
            ));
        }
        let [generic, github, gitlab_hit] = hit else {
            unreachable!()
        };
        assert_eq!(generic.path, "/generic");
        let body: Value = serde_json::from_slice(&generic.body).unwrap();
        assert_eq!(&body, o, "{case}: the generic body is the output");

        // GitHub: the fields the workflow reads, where the outputs put them.
        let p = &serde_json::from_slice::<Value>(&github.body).unwrap()["client_payload"];
        assert_eq!(p["type"], o["type"]);
        assert_eq!(p["id"], key);
        assert_eq!(p["model_id"], o["model_id"]);
        assert_eq!(p["model_version"], o["model_version"], "{case}: {p}");
        assert_eq!(p["driftwatch"], *o);
        let snapshot = o.pointer("/evidence/snapshot/path").cloned();
        assert_eq!(p["snapshot"], snapshot.clone().unwrap_or(Value::Null));
        let reasons = p["reasons"].as_array().unwrap();
        assert!(!reasons.is_empty(), "{case}: no reasons: {p}");
        assert!(reasons.iter().all(|r| {
            let r = r.as_str().unwrap();
            !r.is_empty() && !r.contains('{')
        }));
        if let Some(structured) = o["reasons"].as_array().filter(|r| !r.is_empty()) {
            assert_eq!(reasons.len(), structured.len());
            for (text, r) in reasons.iter().zip(structured) {
                let text = text.as_str().unwrap();
                assert!(text.contains(r["metric"].as_str().unwrap()), "{text}");
                if let Some(f) = r["feature"].as_str() {
                    assert!(text.contains(f), "{text}");
                }
            }
        }
        match o["type"].as_str().unwrap() {
            "canary_verdict" => {
                assert_eq!(p["verdict"], o["verdict"]);
                assert_eq!(p["model_version"], o["candidate_version"]);
            }
            _ => assert_eq!(p["verdict"], Value::Null),
        }

        // GitLab: every variable a string, the payload the output itself.
        let g: Value = serde_json::from_slice(&gitlab_hit.body).unwrap();
        assert_eq!(g["token"], "ci-token");
        let vars = &g["variables"];
        assert!(vars.as_object().unwrap().values().all(Value::is_string));
        assert_eq!(
            serde_json::from_str::<Value>(vars["DRIFTWATCH_PAYLOAD"].as_str().unwrap()).unwrap(),
            *o
        );
        assert_eq!(vars["DRIFTWATCH_MODEL_VERSION"], o["model_version"]);
        assert_eq!(
            vars["DRIFTWATCH_SNAPSHOT"],
            text(&snapshot.unwrap_or(Value::Null))
        );

        // The examples' shell steps, run against what arrived.
        let want = expected_calls(o);
        let gh = run_github_workflow(&workflow, p);
        assert_eq!(calls(gh.path()), want, "{case}: GitHub workflow on {o}");
        let summary = std::fs::read_to_string(gh.path().join("summary.md")).unwrap();
        assert!(
            summary.contains(p["summary"].as_str().unwrap()),
            "{summary}"
        );
        let (gl, ran) = run_gitlab_jobs(&gitlab, vars);
        assert_eq!(ran.len(), 1, "{case}: GitLab jobs run: {ran:?}");
        assert_eq!(calls(gl.path()), want, "{case}: GitLab job {ran:?} on {o}");
        let artifact: Value = serde_json::from_str(
            &std::fs::read_to_string(gl.path().join("driftwatch.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(&artifact, o);
    }
}

//! Layered loading: the TOML file over the built-in defaults, then the `DRIFTWATCH__…`
//! environment variables, deserialized strictly and with every problem collected.
//!
//! Strict: a value must have its key's type (an integer is accepted for a float, nothing else
//! is converted: `1.5` is not a `u64`, `1` is not a boolean, `"64"` is not a number). An
//! environment variable is text by nature, so its value is taken as a string first and, if the
//! key does not accept a string, as a TOML literal (`64`, `1.5`, `true`, `["a", "b"]`); a value
//! that the key accepts in neither form is an error naming the variable.
//!
//! Every problem: serde stops at the first error, so the tree is deserialized again after each
//! one, with the offending value taken out (its default applies for the rest of the check),
//! until a pass succeeds. The tree's tables are ordered by key, so the passes, and the problems,
//! are the same on every run; the problems are reported sorted by key.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt::Write;

use super::{Config, ConfigError};

/// Prefix of the environment variables that set configuration keys; `__` separates levels.
pub const ENV_PREFIX: &str = "DRIFTWATCH__";

/// Passes after which the loader gives up (each pass takes a value out, so a configuration
/// would need this many bad values).
const MAX_PASSES: usize = 10_000;

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Key(String),
    Index(usize),
}

type KeyPath = Vec<Step>;

fn render(path: &[Step]) -> String {
    let mut s = String::new();
    for step in path {
        match step {
            Step::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Step::Index(i) => {
                let _ = write!(s, "[{i}]");
            }
        }
    }
    if s.is_empty() {
        s.push_str("(top level)");
    }
    s
}

/// A value set by an environment variable.
struct EnvValue {
    var: String,
    text: String,
    /// The text has been tried as a TOML literal after the key refused it as a string.
    literal_tried: bool,
}

/// The merged tree and where its values came from.
#[derive(Default)]
pub struct Layers {
    tree: toml::Table,
    env: BTreeMap<KeyPath, EnvValue>,
    /// Problems found while layering (a variable that cannot be placed), with their key.
    problems: Vec<(KeyPath, String)>,
}

impl Layers {
    /// Takes `text` (TOML, from `origin`) as the file layer.
    pub fn file(&mut self, origin: &str, text: &str) -> Result<(), ConfigError> {
        self.tree = toml::from_str(text).map_err(|e| ConfigError {
            problems: vec![format!("{origin}: {}", e.to_string().trim_end())],
        })?;
        Ok(())
    }

    /// Lays the `DRIFTWATCH__SECTION__KEY` variables among `vars` over the file.
    pub fn env(&mut self, vars: impl IntoIterator<Item = (OsString, OsString)>) {
        let vars: BTreeMap<String, OsString> = vars
            .into_iter()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v)))
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        for (var, text) in vars {
            let Ok(text) = text.into_string() else {
                self.problems.push((
                    Vec::new(),
                    format!("environment variable {var}: the value is not UTF-8"),
                ));
                continue;
            };
            let path: KeyPath = var[ENV_PREFIX.len()..]
                .split("__")
                .map(|s| Step::Key(s.to_ascii_lowercase()))
                .collect();
            if path.iter().any(|s| *s == Step::Key(String::new())) {
                self.problems.push((
                    path,
                    format!("environment variable {var}: empty key between `__` separators"),
                ));
                continue;
            }
            if let Err(table) = set(&mut self.tree, &path, toml::Value::String(text.clone())) {
                self.problems.push((
                    path,
                    format!(
                        "environment variable {var}: `{}` is not a table",
                        render(&table)
                    ),
                ));
                continue;
            }
            let value = EnvValue {
                var,
                text,
                literal_tried: false,
            };
            self.env.insert(path, value);
        }
    }

    /// The environment variable that set the value at `path` or one of its parents.
    fn env_of(&self, path: &[Step]) -> Option<&EnvValue> {
        (1..=path.len())
            .rev()
            .find_map(|n| self.env.get(&path[..n]))
    }

    fn describe(&self, path: &[Step], problem: &str) -> String {
        match self.env_of(path) {
            Some(e) => format!(
                "`{}` (environment variable {}={}): {problem}",
                render(path),
                e.var,
                e.text
            ),
            None => format!("`{}`: {problem}", render(path)),
        }
    }

    /// Deserializes the tree into a [`Config`] and validates it, reporting every problem.
    pub fn into_config(mut self) -> Result<Config, ConfigError> {
        let mut unknown = BTreeSet::new();
        let mut rejected: BTreeMap<KeyPath, String> = BTreeMap::new();
        // The array elements taken out so far, by array, numbered as in the file.
        let mut removed: BTreeMap<KeyPath, Vec<usize>> = BTreeMap::new();
        let mut cfg = None;
        for _ in 0..MAX_PASSES {
            let mut ignored = Vec::new();
            let mut note = |p: serde_ignored::Path| ignored.push(ignored_path(&p));
            let tree = toml::Value::Table(self.tree.clone());
            let de = serde_ignored::Deserializer::new(tree, &mut note);
            let result: Result<Config, _> = serde_path_to_error::deserialize(de);
            unknown.extend(ignored.iter().map(|p| original(&removed, p)));
            let err = match result {
                Ok(c) => {
                    cfg = Some(c);
                    break;
                }
                Err(e) => e,
            };
            let Some(path) = error_path(err.path()) else {
                rejected.insert(Vec::new(), err.inner().message().to_string());
                break;
            };
            if let Some(env) = self.env.get_mut(&path) {
                if !env.literal_tried {
                    env.literal_tried = true;
                    if let Some(v) = literal(&env.text) {
                        let _ = set(&mut self.tree, &path, v);
                        continue;
                    }
                }
            }
            let orig = original(&removed, &path);
            let message = err.inner().message().to_string();
            // A required field taken out in an earlier pass is not a second problem.
            let follows_rejected = missing_field(&message).is_some_and(|f| {
                let mut field = orig.clone();
                field.push(Step::Key(f.to_string()));
                rejected.contains_key(&field)
            });
            if !follows_rejected {
                rejected.insert(orig.clone(), message);
            }
            if !remove(&mut self.tree, &path) {
                break;
            }
            if let Some((Step::Index(i), array)) = orig.split_last() {
                let list = removed.entry(array.to_vec()).or_default();
                list.push(*i);
                list.sort_unstable();
            }
        }

        let mut keyed: Vec<(KeyPath, String)> = std::mem::take(&mut self.problems);
        for path in unknown {
            let text = self.describe(&path, "unknown key");
            keyed.push((path, text));
        }
        for (path, message) in &rejected {
            keyed.push((path.clone(), self.describe(path, message)));
        }
        keyed.sort();
        keyed.dedup();
        let mut problems: Vec<String> = keyed.into_iter().map(|(_, text)| text).collect();
        let Some(cfg) = cfg else {
            return Err(ConfigError { problems });
        };
        // A rejected key holds its default now: checks that involve it would be about the
        // default, not about what was written.
        let rejected: Vec<String> = rejected.keys().map(|k| render(k)).collect();
        problems.extend(
            cfg.validate()
                .into_iter()
                .filter(|p| !rejected.iter().any(|k| mentions(p, k))),
        );
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError { problems })
        }
    }
}

/// `text` as a TOML literal (number, boolean, array, inline table), if it is one.
fn literal(text: &str) -> Option<toml::Value> {
    let doc: toml::Table = toml::from_str(&format!("v = {text}")).ok()?;
    doc.into_iter().next().map(|(_, v)| v)
}

/// The field named by serde's "missing field `x`" message.
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// Whether `problem` names the key `key` (not merely a longer key that starts with it).
fn mentions(problem: &str, key: &str) -> bool {
    problem.match_indices(key).any(|(i, _)| {
        let before = problem[..i].chars().next_back();
        let after = problem[i + key.len()..].chars().next();
        let part = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        !part(before) && !part(after) && after != Some('.') && before != Some('.')
    })
}

fn ignored_path(p: &serde_ignored::Path) -> KeyPath {
    use serde_ignored::Path;
    match p {
        Path::Root => Vec::new(),
        Path::Seq { parent, index } => {
            let mut v = ignored_path(parent);
            v.push(Step::Index(*index));
            v
        }
        Path::Map { parent, key } => {
            let mut v = ignored_path(parent);
            v.push(Step::Key(key.clone()));
            v
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

/// The tree path of a deserialization error, if every step of it is known.
fn error_path(p: &serde_path_to_error::Path) -> Option<KeyPath> {
    use serde_path_to_error::Segment;
    let path: KeyPath = p
        .iter()
        .map(|s| match s {
            Segment::Seq { index } => Some(Step::Index(*index)),
            Segment::Map { key } | Segment::Enum { variant: key } => Some(Step::Key(key.clone())),
            Segment::Unknown => None,
        })
        .collect::<Option<_>>()?;
    (!path.is_empty()).then_some(path)
}

/// `path` (in the tree as it is now) in the tree as it was loaded, given the array elements
/// taken out so far.
fn original(removed: &BTreeMap<KeyPath, Vec<usize>>, path: &[Step]) -> KeyPath {
    let mut out = Vec::with_capacity(path.len());
    for step in path {
        let step = match step {
            Step::Index(j) => {
                let mut i = *j;
                for r in removed.get(&out).map(Vec::as_slice).unwrap_or_default() {
                    if *r <= i {
                        i += 1;
                    }
                }
                Step::Index(i)
            }
            key => key.clone(),
        };
        out.push(step);
    }
    out
}

/// Sets the value at `path`, making the missing tables on the way; `Err` names a step on
/// the way that holds something other than a table.
fn set(tree: &mut toml::Table, path: &[Step], value: toml::Value) -> Result<(), KeyPath> {
    let (last, parents) = path.split_last().expect("a key path has a step");
    let mut table = tree;
    for (n, step) in parents.iter().enumerate() {
        let Step::Key(k) = step else {
            return Err(path[..=n].to_vec());
        };
        let slot = table
            .entry(k.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match slot {
            toml::Value::Table(t) => table = t,
            _ => return Err(path[..=n].to_vec()),
        }
    }
    let Step::Key(k) = last else {
        return Err(path.to_vec());
    };
    table.insert(k.clone(), value);
    Ok(())
}

/// Takes the value at `path` out of the tree; false if there is none.
fn remove(tree: &mut toml::Table, path: &[Step]) -> bool {
    fn child<'a>(v: &'a mut toml::Value, step: &Step) -> Option<&'a mut toml::Value> {
        match (v, step) {
            (toml::Value::Table(t), Step::Key(k)) => t.get_mut(k),
            (toml::Value::Array(a), Step::Index(i)) => a.get_mut(*i),
            _ => None,
        }
    }
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut root = toml::Value::Table(std::mem::take(tree));
    let parent = parents.iter().try_fold(&mut root, |v, s| child(v, s));
    let done = match (parent, last) {
        (Some(toml::Value::Table(t)), Step::Key(k)) => t.remove(k).is_some(),
        (Some(toml::Value::Array(a)), Step::Index(i)) if *i < a.len() => {
            a.remove(*i);
            true
        }
        _ => false,
    };
    if let toml::Value::Table(t) = root {
        *tree = t;
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Step {
        Step::Key(s.into())
    }

    #[test]
    fn paths_render_with_dots_and_indices() {
        assert_eq!(
            render(&[key("sinks"), key("webhook"), Step::Index(2), key("url")]),
            "sinks.webhook[2].url"
        );
    }

    #[test]
    fn indices_after_removals_map_back_to_the_file() {
        let mut removed = BTreeMap::new();
        removed.insert(vec![key("a")], vec![0, 2]);
        // Left after taking out 0 and 2 of 0..5: 1, 3, 4.
        assert_eq!(
            original(&removed, &[key("a"), Step::Index(0)]),
            [key("a"), Step::Index(1)]
        );
        assert_eq!(
            original(&removed, &[key("a"), Step::Index(1), key("x")]),
            [key("a"), Step::Index(3), key("x")]
        );
        assert_eq!(
            original(&removed, &[key("a"), Step::Index(2)]),
            [key("a"), Step::Index(4)]
        );
    }

    #[test]
    fn a_key_is_mentioned_only_as_itself() {
        assert!(mentions("window.slide must be positive", "window.slide"));
        assert!(mentions(
            "window.length (1m) must be at least window.slide (2m)",
            "window.slide"
        ));
        assert!(!mentions("window.slide_x must be positive", "window.slide"));
        assert!(!mentions(
            "models.window.slide must be positive",
            "window.slide"
        ));
    }

    #[test]
    fn literals_are_toml_values() {
        assert_eq!(literal("64"), Some(toml::Value::Integer(64)));
        assert_eq!(literal("true"), Some(toml::Value::Boolean(true)));
        assert_eq!(literal("abc"), None);
    }
}

//! The optional TOML configuration file (`--config FILE` or `TESSERA_CONFIG`): its values
//! become the defaults of the command-line flags, so the precedence is flag > environment
//! variable > file > built-in default.
//!
//! Keys are flag names without the dashes (`slots = 2`, `api-token = ["a", "b"]`;
//! `api_token` is accepted too). Top-level keys apply to every subcommand that has that
//! flag. A table named after a subcommand (`[node]`, `[verifier]`, `[coordinator]`,
//! `[submit]`, …) applies only to it and wins over the top level; `[client]` applies to
//! the client commands (`submit`, `status`, `fetch`, `nodes`, `ledger`). Because
//! `[coordinator]` is the coordinator daemon's table, a top-level `coordinator` may be
//! either that table or a string (the coordinator URL for every command); the URL can
//! always be written inside `[node]`, `[verifier]` or `[client]`. A key that is no
//! subcommand's flag is an error naming the key and the file.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The client commands that `[client]` applies to.
pub const CLIENT_COMMANDS: &[&str] = &["submit", "status", "fetch", "nodes", "ledger"];

/// The flag values of a configuration file, by subcommand, as strings for clap.
#[derive(Debug, Default, PartialEq)]
pub struct ConfigFile {
    /// Where it was read from (for messages).
    pub path: PathBuf,
    /// Keys for every subcommand that has the flag (long name → values).
    pub global: BTreeMap<String, Vec<String>>,
    /// `[section]` → its keys.
    pub sections: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

/// The config file named by `--config FILE` / `--config=FILE` in `args` (before a `--`),
/// else by `TESSERA_CONFIG`, if any.
pub fn config_path(args: &[OsString], env: Option<OsString>) -> Option<PathBuf> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        }
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(s) = a.to_str().and_then(|s| s.strip_prefix("--config=")) {
            return Some(PathBuf::from(s));
        }
    }
    env.filter(|e| !e.is_empty()).map(PathBuf::from)
}

impl ConfigFile {
    /// Read and parse `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        Self::parse(&text, path)
    }

    /// Parse the TOML `text` of the file at `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let table: toml::Table = toml::from_str(text)
            .with_context(|| format!("config file {}: not valid TOML", path.display()))?;
        let mut cfg = ConfigFile {
            path: path.to_path_buf(),
            ..Default::default()
        };
        for (key, value) in table {
            match value {
                toml::Value::Table(t) => {
                    let mut section = BTreeMap::new();
                    for (k, v) in t {
                        let values = flag_values(&v).with_context(|| {
                            format!("config file {}: [{key}] {k}", path.display())
                        })?;
                        section.insert(normalize(&k), values);
                    }
                    cfg.sections.insert(key, section);
                }
                v => {
                    let values = flag_values(&v)
                        .with_context(|| format!("config file {}: {key}", path.display()))?;
                    cfg.global.insert(normalize(&key), values);
                }
            }
        }
        Ok(cfg)
    }

    /// Make the file's values the defaults of `cmd`'s subcommands' flags. Fails naming the
    /// key when a key is no flag of any subcommand it applies to, or a table names no
    /// subcommand.
    pub fn apply(&self, mut cmd: clap::Command) -> Result<clap::Command> {
        let file = self.path.display();
        let subcommands: Vec<String> = cmd
            .get_subcommands()
            .map(|s| s.get_name().to_string())
            .collect();
        for name in self.sections.keys() {
            if name != "client" && !subcommands.contains(name) {
                bail!(
                    "config file {file}: [{name}] is not a subcommand (expected one of: client, {})",
                    subcommands.join(", ")
                );
            }
        }
        let mut used_global = std::collections::BTreeSet::new();
        for sub in &subcommands {
            let mut values = BTreeMap::new();
            for (k, v) in &self.global {
                values.insert(k.clone(), v.clone());
            }
            if CLIENT_COMMANDS.contains(&sub.as_str()) {
                if let Some(s) = self.sections.get("client") {
                    values.extend(s.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
            if let Some(s) = self.sections.get(sub) {
                values.extend(s.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            let Some(sc) = cmd.find_subcommand(sub) else {
                continue;
            };
            let mut known = BTreeMap::new();
            for arg in sc.get_arguments() {
                if let Some(long) = arg.get_long() {
                    known.insert(long.to_string(), arg.get_id().to_string());
                }
            }
            let section_of = |key: &str| {
                if self.sections.get(sub).is_some_and(|s| s.contains_key(key)) {
                    Some(sub.as_str())
                } else if CLIENT_COMMANDS.contains(&sub.as_str())
                    && self
                        .sections
                        .get("client")
                        .is_some_and(|s| s.contains_key(key))
                {
                    Some("client")
                } else {
                    None
                }
            };
            used_global.extend(
                self.global
                    .keys()
                    .filter(|k| known.contains_key(*k))
                    .cloned(),
            );
            for (key, vals) in values {
                let Some(id) = known.get(&key) else {
                    if let Some(section) = section_of(&key) {
                        bail!("config file {file}: [{section}] {key}: `{sub}` has no flag --{key}");
                    }
                    continue;
                };
                let id = id.clone();
                // clap takes `&'static str` defaults (without its `string` feature); the
                // file is read once per process, so leaking its few values is fine.
                let vals: Vec<&'static str> = vals
                    .into_iter()
                    .map(|v| &*Box::leak(v.into_boxed_str()))
                    .collect();
                cmd = cmd.mut_subcommand(sub, |sc| {
                    sc.mut_arg(id, |a| {
                        if vals.len() == 1 {
                            a.default_value(vals[0])
                        } else {
                            a.default_values(vals)
                        }
                    })
                });
            }
        }
        for key in self.global.keys() {
            if !used_global.contains(key) && key != "config" {
                bail!("config file {file}: {key}: no subcommand has a flag --{key}");
            }
        }
        Ok(cmd)
    }
}

/// `api_token` and `api-token` are the same key.
fn normalize(key: &str) -> String {
    key.replace('_', "-")
}

/// A TOML value as flag values: scalars as one string, an array of scalars as several.
fn flag_values(v: &toml::Value) -> Result<Vec<String>> {
    match v {
        toml::Value::Array(items) => items.iter().map(scalar).collect(),
        v => Ok(vec![scalar(v)?]),
    }
}

fn scalar(v: &toml::Value) -> Result<String> {
    Ok(match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(_) => bail!("nested arrays are not flag values"),
        toml::Value::Table(_) => bail!("a table is not a flag value"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction, Command};

    fn cli() -> Command {
        Command::new("t")
            .subcommand(
                Command::new("node")
                    .arg(Arg::new("slots").long("slots"))
                    .arg(Arg::new("coordinator").long("coordinator"))
                    .arg(Arg::new("token").long("token")),
            )
            .subcommand(
                Command::new("coordinator").arg(
                    Arg::new("api_token")
                        .long("api-token")
                        .action(ArgAction::Append),
                ),
            )
            .subcommand(
                Command::new("status")
                    .arg(Arg::new("coordinator").long("coordinator"))
                    .arg(Arg::new("token").long("token")),
            )
    }

    fn apply(text: &str) -> Result<Command> {
        ConfigFile::parse(text, Path::new("farm.toml"))?.apply(cli())
    }

    fn get(cmd: Command, args: &[&str], id: &str) -> Vec<String> {
        let m = cmd.try_get_matches_from(args).unwrap();
        let (_, sub) = m.subcommand().unwrap();
        sub.get_many::<String>(id)
            .map(|v| v.cloned().collect())
            .unwrap_or_default()
    }

    #[test]
    fn sections_override_the_top_level_and_flags_override_both() {
        let text = r#"
            coordinator = "http://all:1"
            token = "top"
            [node]
            slots = 3
            token = "worker"
            [client]
            token = "client"
        "#;
        let cmd = apply(text).unwrap();
        assert_eq!(get(cmd.clone(), &["t", "node"], "slots"), ["3"]);
        assert_eq!(get(cmd.clone(), &["t", "node"], "token"), ["worker"]);
        assert_eq!(get(cmd.clone(), &["t", "status"], "token"), ["client"]);
        assert_eq!(
            get(cmd.clone(), &["t", "status"], "coordinator"),
            ["http://all:1"]
        );
        assert_eq!(get(cmd, &["t", "node", "--slots", "5"], "slots"), ["5"]);
    }

    #[test]
    fn arrays_become_repeated_values_and_underscores_are_dashes() {
        let cmd = apply("[coordinator]\napi_token = [\"a\", \"alice=b\"]\n").unwrap();
        assert_eq!(
            get(cmd, &["t", "coordinator"], "api_token"),
            ["a", "alice=b"]
        );
    }

    #[test]
    fn unknown_keys_and_sections_are_named() {
        let err = apply("[node]\nslot = 2\n").unwrap_err().to_string();
        assert!(
            err.contains("farm.toml") && err.contains("[node] slot"),
            "{err}"
        );
        let err = apply("colour = 2\n").unwrap_err().to_string();
        assert!(err.contains("colour"), "{err}");
        let err = apply("[nod]\nslots = 2\n").unwrap_err().to_string();
        assert!(err.contains("[nod]"), "{err}");
        let err = apply("slots = [[1]]\n").unwrap_err();
        assert!(format!("{err:#}").contains("nested"), "{err:#}");
        let err = apply("slots = \n").unwrap_err().to_string();
        assert!(err.contains("not valid TOML"), "{err}");
    }

    #[test]
    fn the_path_comes_from_the_flag_before_the_environment() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        let env = Some(OsString::from("env.toml"));
        assert_eq!(
            config_path(&args(&["t", "node", "--config", "a.toml"]), env.clone()),
            Some(PathBuf::from("a.toml"))
        );
        assert_eq!(
            config_path(&args(&["t", "--config=b.toml", "node"]), env.clone()),
            Some(PathBuf::from("b.toml"))
        );
        assert_eq!(
            config_path(&args(&["t", "node"]), env),
            Some(PathBuf::from("env.toml"))
        );
        assert_eq!(
            config_path(&args(&["t", "submit", "--", "--config"]), None),
            None
        );
    }
}

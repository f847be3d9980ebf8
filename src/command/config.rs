//! `hostsmith config get KEY` / `config set KEY VALUE...`: read or change one setting of
//! `hostsmith.toml`, keeping its comments and layout (`toml_edit`), refusing unknown keys
//! and bad values. The edited text is validated with the same parser every command uses
//! before it replaces the file atomically, so a refused value changes nothing.

use toml_edit::{Array, DocumentMut, Item, Table, Value};

use crate::command::Context;
use crate::config::{Config, FILE_NAME};
use crate::error::{Error, Result};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum ConfigCommand {
    /// Print a setting's value (the default when the file does not set it).
    Get {
        #[arg(value_name = "KEY")]
        key: String,
    },
    /// Change a setting. A list setting takes its items as separate values, e.g.
    /// `config set sync.key_command vault read -field=key ssh/admin`.
    Set {
        #[arg(value_name = "KEY")]
        key: String,
        #[arg(value_name = "VALUE", num_args = 0.., allow_hyphen_values = true, trailing_var_arg = true)]
        values: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Seconds,
    Text,
    List,
}

/// The settings `config` handles (the `[proxmox]` section belongs to `deploy-image`).
const KEYS: &[(&str, Kind)] = &[
    ("sync.auto", Kind::Bool),
    ("sync.method", Kind::Text),
    ("sync.timeout", Kind::Seconds),
    ("sync.key_command", Kind::List),
    ("cloud_init.user", Kind::Text),
    ("cloud_init.authorized_keys", Kind::List),
    ("cloud_init.sudo", Kind::Text),
    ("sops.host_dir", Kind::Text),
    ("sops.host_file", Kind::Text),
    ("sops.admins", Kind::List),
    ("sops.shared", Kind::List),
    ("sops.exclude_from_shared", Kind::List),
    ("sops.hosts_group", Kind::Text),
    ("host.persist", Kind::Text),
    ("host.deploy_keys", Kind::List),
    ("host.records_dir", Kind::Text),
];

fn lookup(key: &str) -> Result<(&'static str, &'static str, Kind)> {
    let (full, kind) = KEYS.iter().find(|(k, _)| *k == key).ok_or_else(|| {
        let known: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
        Error::Usage(format!("unknown setting `{}`; known settings: {}", key.escape_debug(), known.join(", ")))
    })?;
    let (section, field) = full.split_once('.').unwrap_or((full, ""));
    Ok((section, field, *kind))
}

/// # Errors
/// An unknown key or bad value (exit 2, nothing written); an unreadable or unwritable file.
pub(crate) fn run(cmd: ConfigCommand, ctx: &Context) -> Result<()> {
    match cmd {
        ConfigCommand::Get { key } => get(&key, ctx),
        ConfigCommand::Set { key, values } => set(&key, &values, ctx),
    }
}

fn get(key: &str, ctx: &Context) -> Result<()> {
    let (section, field, _) = lookup(key)?;
    let config = Config::load(&ctx.fleet_dir)?;
    let all = toml::Value::try_from(&config).map_err(|e| Error::Usage(format!("cannot show the configuration: {e}")))?;
    let value = all.get(section).and_then(|s| s.get(field));
    ctx.out.json(&serde_json::json!({ "key": key, "value": value }));
    ctx.out.line(match value {
        None => "(not set)".to_string(),
        Some(toml::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    });
    Ok(())
}

fn set(key: &str, values: &[String], ctx: &Context) -> Result<()> {
    let (section, field, kind) = lookup(key)?;
    let mut value = parse_value(key, kind, values)?;
    let path = ctx.fleet_dir.join(FILE_NAME);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => return Err(Error::Read { path, source }),
    };
    let mut doc: DocumentMut =
        text.parse().map_err(|e: toml_edit::TomlError| Error::Config { path: path.clone(), message: e.message().to_string() })?;
    if doc.get(section).is_none() {
        doc.insert(section, Item::Table(Table::new()));
    }
    let table = doc
        .get_mut(section)
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| Error::Config { path: path.clone(), message: format!("`{section}` is not a table") })?;
    // Replace the value in place, so the key keeps the comments above it and the value
    // its own (e.g. `timeout = 30  # seconds`).
    match table.get_mut(field) {
        Some(item) => {
            if let Some(old) = item.as_value() {
                *value.decor_mut() = old.decor().clone();
            }
            *item = Item::Value(value);
        }
        None => {
            table.insert(field, Item::Value(value));
        }
    }
    let new_text = doc.to_string();
    Config::parse(&new_text)
        .map_err(|message| Error::Config { path: path.clone(), message: format!("cannot set `{key}`: {message}; nothing was changed") })?;
    let mode = std::fs::metadata(&path).map_or(0o644, |m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
    let changed = crate::atomic::write_if_changed(&path, new_text.as_bytes(), mode)?;
    ctx.out.json(&serde_json::json!({ "key": key, "file": path, "changed": changed }));
    ctx.out.line(if changed { format!("set {key} in {}", path.display()) } else { format!("{key} already has that value") });
    Ok(())
}

fn parse_value(key: &str, kind: Kind, values: &[String]) -> Result<Value> {
    let one = || match values {
        [v] => Ok(v.as_str()),
        _ => Err(Error::Usage(format!("`{key}` takes exactly one value"))),
    };
    Ok(match kind {
        Kind::Bool => match one()? {
            "true" => Value::from(true),
            "false" => Value::from(false),
            other => return Err(Error::Usage(format!("`{key}` is true or false, not `{}`", other.escape_debug()))),
        },
        Kind::Seconds => {
            let v = one()?;
            let n: i64 = v.parse().map_err(|_| Error::Usage(format!("`{key}` is a number of seconds, not `{}`", v.escape_debug())))?;
            Value::from(n)
        }
        Kind::Text => Value::from(one()?),
        Kind::List => Value::Array(values.iter().map(String::as_str).collect::<Array>()),
    })
}

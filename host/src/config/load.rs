//! How the configuration's values arrive: defaults ⊕ a TOML file ⊕ `GRIDLOG_*`
//! environment variables (see the parent module), and the tokens read from their files.

use std::path::Path;

use super::{check_token, Config, ConfigError};

/// Environment variables that start with `GRIDLOG_` but are not config keys.
const ENV_NOT_CONFIG: &[&str] = &["GRIDLOG_LOG", "GRIDLOG_CONFIG"];

impl Config {
    /// Defaults ⊕ file (if any) ⊕ environment. Flags are applied by the caller.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut value =
            toml::Value::try_from(Config::default()).map_err(|e| invalid("defaults", e))?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.into(),
                source,
            })?;
            let file_value: toml::Value = text
                .parse::<toml::Table>()
                .map(toml::Value::Table)
                .map_err(|e| invalid(&path.display().to_string(), e))?;
            // Validate the file on its own first, so its errors name the file.
            file_value
                .clone()
                .try_into::<Config>()
                .map_err(|e| invalid(&path.display().to_string(), e))?;
            merge(&mut value, file_value);
        }
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("GRIDLOG_") && !ENV_NOT_CONFIG.contains(&k.as_str()))
            .collect();
        env.sort();
        for (key, raw) in env {
            let path: Vec<String> = key["GRIDLOG_".len()..]
                .split("__")
                .map(str::to_ascii_lowercase)
                .collect();
            // A value first (`["a","b"]` is an array, not a TOML table header), then a
            // document, then bare text.
            let parsed = format!("v = {raw}")
                .parse::<toml::Table>()
                .map(|t| t["v"].clone())
                .or_else(|_| raw.parse::<toml::Value>())
                .unwrap_or(toml::Value::String(raw.clone()));
            set_path(&mut value, &path, parsed).map_err(|message| ConfigError::Invalid {
                origin: key.clone(),
                message,
            })?;
            value
                .clone()
                .try_into::<Config>()
                .map_err(|e| invalid(&key, e))?;
        }
        let config: Config = value.try_into().map_err(|e| invalid("configuration", e))?;
        config.check()?;
        Ok(config)
    }

    /// Reads `write_token_file` and `read_token_file` (if set) into `write_token` and
    /// `read_token`; setting a token and its file is an error, so it is always clear which
    /// one is in force. Call before [`Config::check`].
    pub fn read_token_files(&mut self) -> Result<(), ConfigError> {
        token_from_file("write_token", &mut self.write_token, &self.write_token_file)?;
        token_from_file("read_token", &mut self.read_token, &self.read_token_file)
    }
}

/// Reads `file` (if set) into `token`, one trailing newline removed; `key` names both in
/// errors (`write_token` and `write_token_file`).
fn token_from_file(key: &str, token: &mut String, file: &Path) -> Result<(), ConfigError> {
    if file.as_os_str().is_empty() {
        return Ok(());
    }
    let bad = |message: String| ConfigError::Invalid {
        origin: format!("{key}_file"),
        message,
    };
    if !token.is_empty() {
        return Err(bad(format!(
            "{key} and {key}_file are both set; set only one"
        )));
    }
    let text = std::fs::read_to_string(file)
        .map_err(|e| bad(format!("cannot read {}: {e}", file.display())))?;
    let read = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    check_token(read)
        .map_err(|message| bad(format!("the token in {} {message}", file.display())))?;
    if read.is_empty() {
        return Err(bad(format!("{} is empty", file.display())));
    }
    *token = read.to_string();
    Ok(())
}

fn invalid(origin: &str, e: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        origin: origin.to_string(),
        message: e.to_string(),
    }
}

fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(base), toml::Value::Table(over)) => {
            for (k, v) in over {
                match base.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        base.insert(k, v);
                    }
                }
            }
        }
        (base, over) => *base = over,
    }
}

fn set_path(value: &mut toml::Value, path: &[String], new: toml::Value) -> Result<(), String> {
    let mut at = value;
    for (i, key) in path.iter().enumerate() {
        let table = at
            .as_table_mut()
            .ok_or_else(|| format!("{} is not a section", path[..i].join(".")))?;
        let Some(next) = table.get_mut(key) else {
            return Err(format!("unknown configuration key {}", path.join(".")));
        };
        if i + 1 == path.len() {
            // Keep the type of the default: "8080" for a number key is a number.
            *next = coerce(next, new);
            return Ok(());
        }
        at = next;
    }
    Err("empty key".into())
}

fn coerce(existing: &toml::Value, new: toml::Value) -> toml::Value {
    match (existing, &new) {
        (toml::Value::String(_), toml::Value::Integer(i)) => toml::Value::String(i.to_string()),
        (toml::Value::String(_), toml::Value::Float(f)) => toml::Value::String(f.to_string()),
        (toml::Value::String(_), toml::Value::Boolean(b)) => toml::Value::String(b.to_string()),
        (toml::Value::Float(_), toml::Value::Integer(i)) => toml::Value::Float(*i as f64),
        _ => new,
    }
}

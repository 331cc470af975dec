//! `gwctl config`: the server and token kept in a YAML file (`$GW_CONFIG`, else
//! `~/.config/gw/config.yaml`). Flags and `GW_SERVER` / `GW_TOKEN` win over the file.

use crate::error::{CliError, CliResult};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What the config file holds.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileConfig {
    /// Control-plane URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Where the config file lives.
pub fn path() -> PathBuf {
    if let Some(p) = std::env::var_os("GW_CONFIG") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".config").join("gw").join("config.yaml")
}

/// Reads the config file; a missing file is an empty config.
pub fn load() -> CliResult<FileConfig> {
    let p = path();
    match std::fs::read_to_string(&p) {
        Ok(s) => {
            serde_yaml::from_str(&s).map_err(|e| CliError::other(format!("{}: {e}", p.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileConfig::default()),
        Err(e) => Err(CliError::other(format!("{}: {e}", p.display()))),
    }
}

/// Writes the config file (mode 0600: it may hold a token).
pub fn save(c: &FileConfig) -> CliResult<PathBuf> {
    let p = path();
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::other(format!("{}: {e}", dir.display())))?;
    }
    let text = serde_yaml::to_string(c).map_err(CliError::other)?;
    std::fs::write(&p, text).map_err(|e| CliError::other(format!("{}: {e}", p.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
    }
    Ok(p)
}

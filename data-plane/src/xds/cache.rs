//! The on-disk config cache: every accepted set of resources, written atomically (temp file +
//! rename), so a proxy started while the control plane is down serves its last config.

use crate::config::{Raw, Resources};
use prost::Message;
use std::path::Path;

const FILE: &str = "gw-proxy-xds-cache.pb";

#[derive(Clone, PartialEq, prost::Message)]
struct CacheFile {
    #[prost(message, repeated, tag = "1")]
    entries: Vec<CacheEntry>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct CacheEntry {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(string, tag = "3")]
    version: String,
    #[prost(bytes = "bytes", tag = "4")]
    body: bytes::Bytes,
}

/// Writes `res` to `dir`.
pub fn save(dir: &Path, res: &Resources) -> std::io::Result<()> {
    let entries = res
        .by_type
        .iter()
        .flat_map(|(t, m)| {
            m.iter().map(move |(n, r)| CacheEntry {
                type_url: t.clone(),
                name: n.clone(),
                version: r.version.clone(),
                body: r.body.clone(),
            })
        })
        .collect();
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{FILE}.tmp"));
    // Owner-only: a TLS listener's private keys are in it. Made afresh (a file left by a crash
    // keeps the mode it was made with), and the mode set again in case a umask narrowed it.
    let _ = std::fs::remove_file(&tmp);
    let mut f = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?
    };
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    std::io::Write::write_all(&mut f, &CacheFile { entries }.encode_to_vec())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(tmp, dir.join(FILE))
}

/// Reads the cache in `dir`; `Ok(None)` when there is none.
pub fn load(dir: &Path) -> std::io::Result<Option<Resources>> {
    let bytes = match std::fs::read(dir.join(FILE)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let file = CacheFile::decode(bytes.as_slice())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let mut res = Resources::default();
    for e in file.entries {
        res.by_type.entry(e.type_url).or_default().insert(
            e.name,
            Raw {
                version: e.version,
                body: e.body,
            },
        );
    }
    Ok(Some(res))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_none());
        let mut res = Resources::default();
        res.by_type.entry("t".into()).or_default().insert(
            "n".into(),
            Raw {
                version: "v1".into(),
                body: bytes::Bytes::from_static(b"x"),
            },
        );
        save(dir.path(), &res).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(res.clone()));
        // Readable by its owner only (it may hold private keys), written again as well.
        save(dir.path(), &res).unwrap();
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(dir.path().join(FILE))
                .unwrap()
                .permissions()
                .mode()
        };
        assert_eq!(mode & 0o777, 0o600);
    }
}

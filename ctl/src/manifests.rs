//! Reading manifests from files, directories and stdin, with errors that name the file, the
//! document, the object and the field.

use crate::error::{CliError, CliResult};
use gw_proto::manifest::{self, describe};
use gw_proto::model::Object;
use std::io::Read;
use std::path::{Path, PathBuf};

/// One object read from a manifest.
#[derive(Debug, Clone)]
pub struct Doc {
    /// File it came from (`-` for stdin).
    pub file: String,
    /// 1-based document index in that file.
    pub index: usize,
    /// The object.
    pub object: Object,
}

impl Doc {
    /// `FILE: document N (Kind tenant/name)`.
    pub fn location(&self) -> String {
        format!(
            "{}: document {} ({})",
            self.file,
            self.index,
            describe(self.object.spec.kind(), &self.object.meta)
        )
    }
}

fn expand(path: &Path, out: &mut Vec<PathBuf>) -> CliResult<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| CliError::other(format!("{}: {e}", path.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
            })
            .collect();
        entries.sort();
        out.extend(entries);
    } else {
        out.push(path.to_owned());
    }
    Ok(())
}

/// Reads, parses and locally validates every document of `paths` (normalized, defaults filled).
pub fn read(paths: &[PathBuf]) -> CliResult<Vec<Doc>> {
    let mut files = Vec::new();
    for p in paths {
        expand(p, &mut files)?;
    }
    let mut docs = Vec::new();
    for f in files {
        let (label, text) = if f.as_os_str() == "-" {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| CliError::other(format!("stdin: {e}")))?;
            ("-".to_owned(), s)
        } else {
            let s = std::fs::read_to_string(&f)
                .map_err(|e| CliError::other(format!("{}: {e}", f.display())))?;
            (f.display().to_string(), s)
        };
        let parsed =
            manifest::parse(&text).map_err(|e| CliError::other(format!("{label}: {e}")))?;
        for d in parsed {
            let mut doc = Doc {
                file: label.clone(),
                index: d.index,
                object: d.object,
            };
            if let Err(e) = doc.object.validate() {
                return Err(CliError::other(format!("{}: {e}", doc.location())));
            }
            docs.push(doc);
        }
    }
    if docs.is_empty() {
        return Err(CliError::other("no objects in the given files"));
    }
    Ok(docs)
}

/// Prefixes a server error that names an object (`Route acme/users: …`) with the file and
/// document that object came from.
pub fn locate_server_error(docs: &[Doc], message: &str) -> Option<String> {
    docs.iter().find_map(|d| {
        let label = describe(d.object.spec.kind(), &d.object.meta);
        message
            .strip_prefix(&format!("{label}: "))
            .map(|rest| format!("{}: {rest}", d.location()))
    })
}

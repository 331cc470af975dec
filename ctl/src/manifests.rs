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
    let mut seen = std::collections::HashMap::new();
    for d in &docs {
        if let Some(first) = seen.insert(d.object.key(), d) {
            return Err(CliError::other(format!(
                "{}: the same object is also {}, document {}",
                d.location(),
                if first.file == d.file {
                    "earlier in this file".to_owned()
                } else {
                    format!("in {}", first.file)
                },
                first.index
            )));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: &str = "apiVersion: gw/v1\nkind: Tenant\nmetadata: {name: acme}\n";
    const CLUSTER: &str = "apiVersion: gw/v1\nkind: Cluster\nmetadata: {name: c, tenant: acme}\n";

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn directories_expand_to_their_manifests_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "b.yml", CLUSTER);
        write(dir.path(), "a.yaml", TENANT);
        write(dir.path(), "notes.txt", "not a manifest");
        let docs = read(&[dir.path().to_owned()]).unwrap();
        let names: Vec<&str> = docs.iter().map(|d| d.object.meta.name.as_str()).collect();
        assert_eq!(names, ["acme", "c"]);
        assert!(docs[1].file.ends_with("b.yml"));
        assert_eq!(docs[1].index, 1);
    }

    #[test]
    fn the_same_object_twice_names_both_places() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.yaml", TENANT);
        let b = write(dir.path(), "b.yaml", &format!("{CLUSTER}---\n{TENANT}"));
        let e = read(&[a.clone(), b.clone()]).unwrap_err().render(false);
        assert_eq!(
            e,
            format!(
                "{}: document 2 (Tenant acme): the same object is also in {}, document 1",
                b.display(),
                a.display()
            )
        );
        let twice = write(dir.path(), "twice.yaml", &format!("{TENANT}---\n{TENANT}"));
        let e = read(&[twice]).unwrap_err().render(false);
        assert!(
            e.ends_with("document 2 (Tenant acme): the same object is also earlier in this file, document 1"),
            "{e}"
        );
    }

    #[test]
    fn local_validation_names_file_document_object_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(
            dir.path(),
            "bad.yaml",
            &format!("{TENANT}---\napiVersion: gw/v1\nkind: Route\nmetadata: {{name: r, tenant: acme}}\nspec: {{cluster: c, timeout: 400d}}\n"),
        );
        let e = read(std::slice::from_ref(&f)).unwrap_err().render(false);
        assert_eq!(
            e,
            format!(
                "{}: document 2 (Route acme/r): spec.timeout: must be at most 365d (0s: none)",
                f.display()
            )
        );
    }
}

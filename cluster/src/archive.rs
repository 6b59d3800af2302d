//! Resource archives: the files a topology ships with it (`[topology] resources`), packed
//! by `topo submit` into one gzipped tar, content-addressed like the binary, checked by
//! the coordinator before it accepts the topology and by every supervisor before it
//! unpacks it into the topology's work directory.
//!
//! Packing is deterministic (entries sorted by path, mtime 0, owner 0, mode 0644 or 0755,
//! gzip at a fixed level), so an unchanged folder always packs to the same hash and a
//! resubmit uploads nothing.
//!
//! An archive is refused as a whole, before anything is written, when any entry:
//! - has an absolute path, a `..` component, or an empty one;
//! - is a symbolic link whose target is absolute or leaves the archive's root, or a hard
//!   link; or a device, FIFO or other special file;
//! - would be written through a symbolic link of the archive;
//! - makes the unpacked size pass the limit (the compressed size is limited too), or the
//!   entries pass [`MAX_ENTRIES`].

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

/// The default largest archive, packed or unpacked: 256 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// Most entries in one archive.
pub const MAX_ENTRIES: usize = 100_000;

/// What is wrong with resources or an archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A listed resource does not exist.
    #[error(
        "resource {0:?} does not exist (resources are relative to the topology file's folder, {1})"
    )]
    Missing(String, String),
    /// A resource path or an entry is not allowed.
    #[error("{what} {path:?} is refused: {why}")]
    Refused {
        /// `resource` or `archive entry`.
        what: &'static str,
        /// The path.
        path: String,
        /// The rule it breaks.
        why: String,
    },
    /// Larger than the limit.
    #[error("the resources are larger than the limit of {limit} bytes ({what})")]
    TooLarge {
        /// The limit.
        limit: u64,
        /// Packed or unpacked.
        what: &'static str,
    },
    /// Not a gzipped tar archive, or cut short.
    #[error("not a valid resource archive: {0}")]
    Corrupt(String),
    /// A file operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ArchiveError + 'a {
    move |source| ArchiveError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

fn refused(what: &'static str, path: &str, why: impl Into<String>) -> ArchiveError {
    ArchiveError::Refused {
        what,
        path: path.to_string(),
        why: why.into(),
    }
}

/// One thing to pack, by its path in the archive.
enum Item {
    Dir,
    File { source: PathBuf, executable: bool },
    Link { target: String },
}

/// The normal components of a relative path, or why it is not allowed.
fn parts(path: &Path) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => match p.to_str() {
                Some(s) => out.push(s.to_string()),
                None => return Err("it is not UTF-8".into()),
            },
            Component::CurDir => {}
            Component::ParentDir => return Err("it goes up with \"..\"".into()),
            Component::RootDir | Component::Prefix(_) => return Err("it is absolute".into()),
        }
    }
    if out.is_empty() {
        return Err("it is empty".into());
    }
    Ok(out)
}

/// Where a symbolic link at `link` (components) pointing at `target` lands, as components
/// from the archive's root; an error when it is absolute or leaves the root.
fn link_lands(link: &[String], target: &str) -> Result<Vec<String>, String> {
    let t = Path::new(target);
    if t.is_absolute() || target.is_empty() {
        return Err(format!(
            "it is a symbolic link to {target:?}, outside the resources"
        ));
    }
    let mut at: Vec<String> = link[..link.len() - 1].to_vec();
    for c in t.components() {
        match c {
            Component::Normal(p) => at.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                if at.pop().is_none() {
                    return Err(format!(
                        "it is a symbolic link to {target:?}, outside the resources"
                    ));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "it is a symbolic link to {target:?}, outside the resources"
                ))
            }
        }
    }
    Ok(at)
}

/// Packs `resources` (paths relative to `base`, the topology file's folder) into one
/// gzipped tar, deterministically. A missing resource, a symbolic link that leaves the
/// resources, a special file or more than `max` bytes is an error.
pub fn pack(base: &Path, resources: &[String], max: u64) -> Result<Vec<u8>, ArchiveError> {
    let mut items: BTreeMap<Vec<String>, Item> = BTreeMap::new();
    for r in resources {
        topo_dsl::check_resource_path(r).map_err(|why| refused("resource", r, why))?;
        let rel = parts(Path::new(r)).map_err(|why| refused("resource", r, why))?;
        let path = base.join(r);
        if std::fs::symlink_metadata(&path).is_err() {
            return Err(ArchiveError::Missing(r.clone(), base.display().to_string()));
        }
        // Every folder on the way is in the archive too.
        for i in 1..rel.len() {
            items.entry(rel[..i].to_vec()).or_insert(Item::Dir);
        }
        collect(&path, rel, &mut items)?;
    }
    let mut total = 0u64;
    let encoder = GzEncoder::new(Vec::new(), Compression::new(6));
    let mut tar = tar::Builder::new(encoder);
    tar.mode(tar::HeaderMode::Deterministic);
    for (rel, item) in &items {
        let name = rel.join("/");
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        let added = match item {
            Item::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                tar.append_data(&mut header, format!("{name}/"), std::io::empty())
            }
            Item::File { source, executable } => {
                let file = std::fs::File::open(source).map_err(io("cannot read", source))?;
                let len = file.metadata().map_err(io("cannot read", source))?.len();
                total += len;
                if total > max {
                    return Err(ArchiveError::TooLarge {
                        limit: max,
                        what: "unpacked",
                    });
                }
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(if *executable { 0o755 } else { 0o644 });
                header.set_size(len);
                tar.append_data(&mut header, &name, file.take(len))
            }
            Item::Link { target } => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                tar.append_link(&mut header, &name, target)
            }
        };
        added.map_err(io("cannot pack", Path::new(&name)))?;
    }
    let bytes = tar
        .into_inner()
        .and_then(GzEncoder::finish)
        .map_err(io("cannot pack", base))?;
    if bytes.len() as u64 > max {
        return Err(ArchiveError::TooLarge {
            limit: max,
            what: "packed",
        });
    }
    Ok(bytes)
}

fn collect(
    path: &Path,
    rel: Vec<String>,
    items: &mut BTreeMap<Vec<String>, Item>,
) -> Result<(), ArchiveError> {
    let shown = rel.join("/");
    let meta = std::fs::symlink_metadata(path).map_err(io("cannot read", path))?;
    let kind = meta.file_type();
    if kind.is_symlink() {
        let target = std::fs::read_link(path).map_err(io("cannot read", path))?;
        let target = target
            .to_str()
            .ok_or_else(|| refused("resource", &shown, "its link target is not UTF-8"))?
            .to_string();
        link_lands(&rel, &target).map_err(|why| refused("resource", &shown, why))?;
        items.insert(rel, Item::Link { target });
    } else if kind.is_dir() {
        items.insert(rel.clone(), Item::Dir);
        let mut names: Vec<_> = std::fs::read_dir(path)
            .map_err(io("cannot read", path))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io("cannot read", path))?;
        names.sort();
        for name in names {
            let Some(s) = name.to_str() else {
                return Err(refused("resource", &shown, "a name in it is not UTF-8"));
            };
            let mut child = rel.clone();
            child.push(s.to_string());
            collect(&path.join(&name), child, items)?;
        }
    } else if kind.is_file() {
        use std::os::unix::fs::PermissionsExt;
        let executable = meta.permissions().mode() & 0o111 != 0;
        items.insert(
            rel,
            Item::File {
                source: path.to_path_buf(),
                executable,
            },
        );
    } else {
        return Err(refused(
            "resource",
            &shown,
            "it is a device, FIFO or socket; only files, folders and links are packed",
        ));
    }
    Ok(())
}

/// One checked entry.
enum Entry {
    Dir(Vec<String>),
    File(Vec<String>, u32),
    Link(Vec<String>, String),
}

/// Reads every entry of the archive at `path`, checking each; with `out`, also writes
/// it there (called only after a pass without `out` found nothing wrong).
fn walk(path: &Path, max: u64, mut out: Option<&Path>) -> Result<(usize, u64), ArchiveError> {
    let len = std::fs::metadata(path)
        .map_err(io("cannot read", path))?
        .len();
    if len > max {
        return Err(ArchiveError::TooLarge {
            limit: max,
            what: "packed",
        });
    }
    let file = std::fs::File::open(path).map_err(io("cannot read", path))?;
    let mut archive = tar::Archive::new(GzDecoder::new(file));
    let entries = archive
        .entries()
        .map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
    let mut total = 0u64;
    let mut count = 0usize;
    // Links of this archive: nothing may be written through one.
    let mut links: Vec<Vec<String>> = Vec::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
        count += 1;
        if count > MAX_ENTRIES {
            return Err(ArchiveError::Corrupt(format!(
                "more than {MAX_ENTRIES} entries"
            )));
        }
        let raw = entry.path_bytes();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let rel = std::str::from_utf8(&raw)
            .map_err(|_| refused("archive entry", &shown, "it is not UTF-8"))
            .and_then(|s| {
                if s.starts_with('/') {
                    return Err(refused("archive entry", &shown, "it is absolute"));
                }
                parts(Path::new(s)).map_err(|why| refused("archive entry", &shown, why))
            })?;
        if let Some(l) = links
            .iter()
            .find(|l| rel.starts_with(l) && rel.len() > l.len())
        {
            return Err(refused(
                "archive entry",
                &shown,
                format!("it lies behind the symbolic link {:?}", l.join("/")),
            ));
        }
        let kind = entry.header().entry_type();
        let checked = match kind {
            tar::EntryType::Directory => Entry::Dir(rel),
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                total += entry.size();
                if total > max {
                    return Err(ArchiveError::TooLarge {
                        limit: max,
                        what: "unpacked",
                    });
                }
                let mode = entry.header().mode().unwrap_or(0o644);
                Entry::File(rel, if mode & 0o111 != 0 { 0o755 } else { 0o644 })
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default();
                link_lands(&rel, &target).map_err(|why| refused("archive entry", &shown, why))?;
                links.push(rel.clone());
                Entry::Link(rel, target)
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                return Err(refused("archive entry", &shown, "it is a device file"))
            }
            tar::EntryType::Link => {
                return Err(refused("archive entry", &shown, "it is a hard link"))
            }
            other => {
                return Err(refused(
                    "archive entry",
                    &shown,
                    format!("it is a {other:?} entry; only files, folders and links are allowed"),
                ))
            }
        };
        if let Some(dest) = out.as_mut() {
            write(dest, checked, &mut entry)?;
        }
    }
    Ok((count, total))
}

/// Creates the folders of `rel` (all but the last component) under `dest`, refusing to
/// go through anything but a real folder.
fn parents(dest: &Path, rel: &[String]) -> Result<PathBuf, ArchiveError> {
    let mut at = dest.to_path_buf();
    for p in &rel[..rel.len() - 1] {
        at.push(p);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(refused(
                    "archive entry",
                    &rel.join("/"),
                    format!("{} is not a folder", at.display()),
                ))
            }
            Err(_) => std::fs::create_dir(&at).map_err(io("cannot create", &at))?,
        }
    }
    Ok(at.join(&rel[rel.len() - 1]))
}

/// Removes what is at `path` unless it is a real folder (a file or link from an
/// earlier unpack is replaced, never followed).
fn clear(path: &Path) -> Result<(), ArchiveError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => std::fs::remove_file(path).map_err(io("cannot replace", path)),
        Err(_) => Ok(()),
    }
}

fn write(dest: &Path, entry: Entry, data: &mut impl Read) -> Result<(), ArchiveError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match entry {
        Entry::Dir(rel) => {
            let path = parents(dest, &rel)?;
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => Ok(()),
                Ok(_) => {
                    clear(&path)?;
                    std::fs::create_dir(&path).map_err(io("cannot create", &path))
                }
                Err(_) => std::fs::create_dir(&path).map_err(io("cannot create", &path)),
            }
        }
        Entry::File(rel, mode) => {
            let path = parents(dest, &rel)?;
            clear(&path)?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .map_err(io("cannot create", &path))?;
            std::io::copy(data, &mut file).map_err(io("cannot write", &path))?;
            file.set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(io("cannot chmod", &path))
        }
        Entry::Link(rel, target) => {
            let path = parents(dest, &rel)?;
            clear(&path)?;
            std::os::unix::fs::symlink(&target, &path).map_err(io("cannot create", &path))
        }
    }
}

/// The bytes of the file `name` (a path relative to the archive's root) in the archive
/// at `path`, if it holds one; at most `max` bytes are read.
pub fn read_file(path: &Path, name: &str, max: u64) -> Result<Option<Vec<u8>>, ArchiveError> {
    let wanted = parts(Path::new(name)).map_err(|why| refused("resource", name, why))?;
    let file = std::fs::File::open(path).map_err(io("cannot read", path))?;
    let mut archive = tar::Archive::new(GzDecoder::new(file));
    let entries = archive
        .entries()
        .map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
    for entry in entries {
        let entry = entry.map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
        let raw = entry.path_bytes();
        let same = std::str::from_utf8(&raw)
            .ok()
            .and_then(|s| parts(Path::new(s)).ok())
            .is_some_and(|p| p == wanted);
        if same && entry.header().entry_type().is_file() {
            let mut out = Vec::new();
            entry
                .take(max)
                .read_to_end(&mut out)
                .map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
            return Ok(Some(out));
        }
    }
    Ok(None)
}

/// Checks every entry of the archive at `path` without writing anything; returns the
/// number of entries and their unpacked bytes.
pub fn check(path: &Path, max: u64) -> Result<(usize, u64), ArchiveError> {
    walk(path, max, None)
}

/// Unpacks the archive at `path` into the folder `dest` (created if missing), after a
/// first pass found every entry allowed: a hostile archive writes nothing.
pub fn unpack(path: &Path, dest: &Path, max: u64) -> Result<(), ArchiveError> {
    walk(path, max, None)?;
    std::fs::create_dir_all(dest).map_err(io("cannot create", dest))?;
    walk(path, max, Some(dest))?;
    Ok(())
}

#[cfg(test)]
mod tests;

use super::*;

/// A gzipped tar whose entries are written by hand, names and all, as an attacker would.
pub(crate) fn crafted(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    for (name, kind, body) in entries {
        let mut h = tar::Header::new_old();
        let field = &mut h.as_old_mut().name;
        field[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        if *kind == tar::EntryType::Symlink {
            let link = &mut h.as_old_mut().linkname;
            link[..body.len()].copy_from_slice(body.as_bytes());
            h.set_size(0);
            h.set_cksum();
            tar.append(&h, std::io::empty()).expect("append");
        } else {
            h.set_size(body.len() as u64);
            h.set_cksum();
            tar.append(&h, body.as_bytes()).expect("append");
        }
    }
    tar.into_inner().expect("tar").finish().expect("gzip")
}

fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn go(dir: &Path, prefix: &str, out: &mut Vec<String>) {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for n in names {
            let p = dir.join(&n);
            let shown = format!("{prefix}{n}");
            let meta = std::fs::symlink_metadata(&p).expect("meta");
            if meta.is_dir() {
                out.push(format!("{shown}/"));
                go(&p, &format!("{shown}/"), out);
            } else if meta.file_type().is_symlink() {
                out.push(format!(
                    "{shown} -> {}",
                    std::fs::read_link(&p).expect("link").display()
                ));
            } else {
                out.push(shown);
            }
        }
    }
    go(root, "", &mut out);
    out
}

fn sample(dir: &Path) {
    std::fs::create_dir_all(dir.join("multilang/lib")).expect("mkdir");
    std::fs::write(dir.join("multilang/split.py"), "print('split')\n").expect("write");
    std::fs::write(dir.join("multilang/lib/util.py"), "X = 1\n").expect("write");
    std::fs::create_dir_all(dir.join("data")).expect("mkdir");
    std::fs::write(dir.join("data/lookup.csv"), "a,1\n").expect("write");
    std::fs::write(dir.join("data/other.csv"), "not shipped\n").expect("write");
    std::os::unix::fs::symlink("split.py", dir.join("multilang/current.py")).expect("symlink");
}

#[test]
fn packing_is_deterministic_and_unpacks_what_was_listed() {
    let src = tempfile::tempdir().expect("dir");
    sample(src.path());
    let list = vec!["multilang/".to_string(), "data/lookup.csv".to_string()];
    let a = pack(src.path(), &list, DEFAULT_MAX_BYTES).expect("pack");
    // Touching a file does not change the archive; changing its bytes does.
    std::fs::write(src.path().join("multilang/split.py"), "print('split')\n").expect("write");
    let b = pack(src.path(), &list, DEFAULT_MAX_BYTES).expect("pack");
    assert_eq!(a, b);
    std::fs::write(src.path().join("multilang/split.py"), "print('split2')\n").expect("write");
    let c = pack(src.path(), &list, DEFAULT_MAX_BYTES).expect("pack");
    assert_ne!(a, c);

    let work = tempfile::tempdir().expect("dir");
    let file = work.path().join("a.tgz");
    std::fs::write(&file, &a).expect("write");
    assert_eq!(check(&file, DEFAULT_MAX_BYTES).expect("check").0, 7);
    let dest = work.path().join("work");
    unpack(&file, &dest, DEFAULT_MAX_BYTES).expect("unpack");
    assert_eq!(
        tree(&dest),
        [
            "data/",
            "data/lookup.csv",
            "multilang/",
            "multilang/current.py -> split.py",
            "multilang/lib/",
            "multilang/lib/util.py",
            "multilang/split.py",
        ]
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("multilang/current.py")).expect("read"),
        "print('split')\n"
    );
    // Unpacking again (a newer archive) replaces files, links included.
    std::fs::write(&file, &c).expect("write");
    unpack(&file, &dest, DEFAULT_MAX_BYTES).expect("unpack again");
    assert_eq!(
        std::fs::read_to_string(dest.join("multilang/split.py")).expect("read"),
        "print('split2')\n"
    );
}

#[test]
fn a_long_path_round_trips() {
    let src = tempfile::tempdir().expect("dir");
    let deep = format!("{}/{}", "d".repeat(90), "f".repeat(90));
    std::fs::create_dir_all(src.path().join("d".repeat(90))).expect("mkdir");
    std::fs::write(src.path().join(&deep), "deep\n").expect("write");
    let bytes = pack(src.path(), &["d".repeat(90)], DEFAULT_MAX_BYTES).expect("pack");
    let work = tempfile::tempdir().expect("dir");
    let file = work.path().join("a.tgz");
    std::fs::write(&file, bytes).expect("write");
    unpack(&file, &work.path().join("w"), DEFAULT_MAX_BYTES).expect("unpack");
    assert_eq!(
        std::fs::read_to_string(work.path().join("w").join(&deep)).expect("read"),
        "deep\n"
    );
    assert_eq!(
        read_file(&file, &deep, 100).expect("read").as_deref(),
        Some(&b"deep\n"[..])
    );
    assert_eq!(read_file(&file, "nope", 100).expect("read"), None);
}

#[test]
fn a_missing_resource_or_a_link_out_is_refused_at_packing() {
    let src = tempfile::tempdir().expect("dir");
    sample(src.path());
    let err = pack(src.path(), &["nope.py".into()], DEFAULT_MAX_BYTES).expect_err("missing");
    assert!(
        err.to_string()
            .starts_with("resource \"nope.py\" does not exist"),
        "{err}"
    );
    std::os::unix::fs::symlink("/etc", src.path().join("multilang/etc")).expect("symlink");
    let err = pack(src.path(), &["multilang".into()], DEFAULT_MAX_BYTES).expect_err("link out");
    assert_eq!(
        err.to_string(),
        "resource \"multilang/etc\" is refused: it is a symbolic link to \"/etc\", outside the resources"
    );
    let err = pack(src.path(), &["../x".into()], DEFAULT_MAX_BYTES).expect_err("up");
    assert!(err.to_string().contains("goes up"), "{err}");
    let err = pack(src.path(), &["data".into()], 5).expect_err("too large");
    assert_eq!(
        err.to_string(),
        "the resources are larger than the limit of 5 bytes (unpacked)"
    );
}

#[test]
fn hostile_archives_are_refused_and_write_nothing() {
    use tar::EntryType::{Block, Char, Directory, Link, Regular, Symlink};
    type Entries<'a> = Vec<(&'a str, tar::EntryType, &'a str)>;
    let cases: Vec<(Entries<'_>, &str)> = vec![
        (
            vec![("ok.py", Regular, "x"), ("../evil", Regular, "pwned")],
            "archive entry \"../evil\" is refused: it goes up with \"..\"",
        ),
        (
            vec![("/tmp/evil", Regular, "pwned")],
            "archive entry \"/tmp/evil\" is refused: it is absolute",
        ),
        (
            vec![("etc", Symlink, "/etc")],
            "archive entry \"etc\" is refused: it is a symbolic link to \"/etc\", outside the resources",
        ),
        (
            vec![("a/", Directory, ""), ("a/up", Symlink, "../../x")],
            "archive entry \"a/up\" is refused: it is a symbolic link to \"../../x\", outside the resources",
        ),
        (
            vec![("d", Symlink, "."), ("d/x", Regular, "through a link")],
            "archive entry \"d/x\" is refused: it lies behind the symbolic link \"d\"",
        ),
        (
            vec![("null", Char, "")],
            "archive entry \"null\" is refused: it is a device file",
        ),
        (
            vec![("sda", Block, "")],
            "archive entry \"sda\" is refused: it is a device file",
        ),
        (
            vec![("hard", Link, "")],
            "archive entry \"hard\" is refused: it is a hard link",
        ),
    ];
    for (entries, message) in cases {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("evil.tgz");
        std::fs::write(&file, crafted(&entries)).expect("write");
        let err = check(&file, DEFAULT_MAX_BYTES).expect_err(message);
        assert_eq!(err.to_string(), message);
        let dest = dir.path().join("work/t-1");
        let err = unpack(&file, &dest, DEFAULT_MAX_BYTES).expect_err(message);
        assert_eq!(err.to_string(), message);
        // Nothing was written, in the work folder or beside it.
        assert!(!dest.exists(), "{message}");
        assert_eq!(tree(dir.path()), ["evil.tgz"], "{message}");
    }
}

#[test]
fn a_tampered_or_oversized_archive_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("a.tgz");
    let mut bytes = crafted(&[("big.bin", tar::EntryType::Regular, "0123456789")]);
    std::fs::write(&file, &bytes).expect("write");
    let err = check(&file, 5).expect_err("too large");
    assert!(
        err.to_string()
            .starts_with("the resources are larger than the limit of 5 bytes"),
        "{err}"
    );
    let n = bytes.len();
    bytes.truncate(n / 2);
    std::fs::write(&file, &bytes).expect("write");
    let err = check(&file, DEFAULT_MAX_BYTES).expect_err("cut short");
    assert!(
        err.to_string().starts_with("not a valid resource archive"),
        "{err}"
    );
}

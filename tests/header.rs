//! The C header: the committed `include/qwentts.h` is exactly what `build.rs` generates, its
//! version macros match Cargo.toml, it declares only `qt_*`/`QT_*` names, and it compiles as
//! strict C11 and as C++17 included twice.
//!
//! `QT_BLESS=1 cargo test --test header` rewrites `include/qwentts.h` from the generated copy.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const GENERATED: &str = env!("QT_GENERATED_HEADER");
const BLESS: &str = "QT_BLESS=1 cargo test --test header";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn committed_path() -> PathBuf {
    repo().join("include/qwentts.h")
}

fn committed() -> String {
    fs::read_to_string(committed_path())
        .unwrap_or_else(|e| panic!("{}: {e}; create it with `{BLESS}`", committed_path().display()))
}

#[test]
fn committed_header_matches_generated() {
    let generated = fs::read_to_string(GENERATED).expect("build.rs writes the generated header");
    assert!(
        !generated.starts_with("#error"),
        "build.rs could not generate the header (see the cargo warning): {generated}"
    );
    let path = committed_path();
    if std::env::var("QT_BLESS").as_deref() == Ok("1") {
        if fs::read_to_string(&path).ok().as_deref() != Some(generated.as_str()) {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, &generated).unwrap();
            eprintln!("blessed: rewrote {}", path.display());
        }
        return;
    }
    let committed = fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        panic!(
            "include/qwentts.h is stale: it differs from the header build.rs generated from \
             src/ffi ({GENERATED}).\n{}\nIf the change is intended, run:\n    {BLESS}\nand \
             commit include/qwentts.h.",
            diff_hint(&path, Path::new(GENERATED), &committed, &generated)
        );
    }
}

/// `diff -u` output when diff is installed (first 80 lines), else the first differing line.
fn diff_hint(old_path: &Path, new_path: &Path, old: &str, new: &str) -> String {
    if let Ok(out) = Command::new("diff").arg("-u").arg(old_path).arg(new_path).output() {
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        let shown = lines.iter().take(80).copied().collect::<Vec<_>>().join("\n");
        let more = lines.len().saturating_sub(80);
        return if more > 0 { format!("{shown}\n... ({more} more diff lines)") } else { shown };
    }
    let (o, n): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    let i = o.iter().zip(&n).position(|(a, b)| a != b).unwrap_or(o.len().min(n.len()));
    format!(
        "first difference at line {}:\n- {}\n+ {}",
        i + 1,
        o.get(i).copied().unwrap_or("<end of file>"),
        n.get(i).copied().unwrap_or("<end of file>")
    )
}

/// `#define NAME VALUE` lines of the committed header.
fn defines(header: &str) -> Vec<(String, String)> {
    header
        .lines()
        .filter_map(|l| l.strip_prefix("#define "))
        .map(|rest| match rest.split_once(' ') {
            Some((name, value)) => (name.to_owned(), value.trim().to_owned()),
            None => (rest.trim().to_owned(), String::new()),
        })
        .collect()
}

fn define(header: &str, name: &str) -> String {
    defines(header)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("include/qwentts.h has no #define {name}"))
        .1
}

/// The `version = "..."` of Cargo.toml's [package] table, read from the file itself.
fn cargo_toml_version() -> String {
    let toml = fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let mut in_package = false;
    for line in toml.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package
            && let Some(v) = line.strip_prefix("version").map(str::trim).and_then(|r| r.strip_prefix('='))
        {
            return v.trim().trim_matches('"').to_owned();
        }
    }
    panic!("Cargo.toml has no [package] version");
}

#[test]
fn version_macros_match_cargo_toml() {
    let header = committed();
    let version = cargo_toml_version();
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    let core = version.split(['-', '+']).next().unwrap();
    let parts: Vec<u64> = core.split('.').map(|p| p.parse().unwrap()).collect();
    assert_eq!(define(&header, "QT_VERSION_MAJOR"), parts[0].to_string());
    assert_eq!(define(&header, "QT_VERSION_MINOR"), parts[1].to_string());
    assert_eq!(define(&header, "QT_VERSION_PATCH"), parts[2].to_string());
    assert_eq!(define(&header, "QT_VERSION_STRING"), format!("\"{version}\""));
    assert_eq!(define(&header, "QT_VERSION_NUMBER"), (parts[0] * 1_000_000 + parts[1] * 1_000 + parts[2]).to_string());
    assert_eq!(define(&header, "QT_ABI_VERSION"), qwentts::ffi::qt_abi_version().to_string());
}

#[test]
fn header_declares_only_prefixed_names() {
    let header = committed();
    for (name, _) in defines(&header) {
        assert!(name == "QWENTTS_H" || name.starts_with("QT_"), "#define {name} lacks the QT_ prefix");
    }
    for line in header.lines().filter(|l| l.starts_with("typedef ")) {
        // `typedef struct qt_x qt_x;`, `typedef int32_t qt_status;`, `typedef void (*qt_log_cb)(...)`
        let name = if let Some(i) = line.find("(*") {
            line[i + 2..].split(')').next().unwrap()
        } else {
            line.trim_end_matches([';', ' ', '{']).rsplit(' ').next().unwrap()
        };
        assert!(name.starts_with("qt_") || line.ends_with('{'), "typedef without qt_ prefix: {line}");
    }
    for line in header.lines().filter(|l| l.starts_with('}') && l.ends_with(';')) {
        let name = line.trim_start_matches('}').trim().trim_end_matches(';');
        assert!(name.starts_with("qt_"), "struct typedef without qt_ prefix: {line}");
    }
}

fn run(cmd: &mut Command) {
    let shown = format!("{cmd:?}");
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    assert!(
        out.status.success(),
        "{shown} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn header_compiles_as_strict_c11() {
    let root = repo();
    run(Command::new("gcc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-Wstrict-prototypes", "-fsyntax-only"])
        .arg("-I")
        .arg(root.join("include"))
        .arg(root.join("tests/c/header_c11.c")));
}

#[test]
fn header_compiles_as_cpp17_included_twice() {
    let root = repo();
    run(Command::new("g++")
        .args(["-std=c++17", "-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only"])
        .arg("-I")
        .arg(root.join("include"))
        .arg(root.join("tests/c/header_twice.cpp")));
}

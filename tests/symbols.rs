//! The shared library exports exactly the functions the header declares, all `qt_*`, and
//! nothing else (no Rust runtime or dependency symbols that could clash in a host process).
//!
//! The cdylib is the one cargo built for this test run: `cargo test` compiles the library with
//! both crate types in one rustc invocation, writing `deps/libqwentts.so` next to the
//! `deps/libqwentts.rlib` this test links (only `cargo build` copies it up to
//! `target/<profile>/`, so that copy can be stale during `cargo test`).

#![cfg(target_os = "linux")]

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

/// `target/<profile>/deps/libqwentts.so`, found from this test executable
/// (`target/<profile>/deps/symbols-<hash>`); `target/<profile>/libqwentts.so` as a fallback.
fn cdylib() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps directory");
    let candidates = [Some(deps.join("libqwentts.so")), deps.parent().map(|p| p.join("libqwentts.so"))];
    let found = candidates.iter().flatten().find(|p| p.is_file()).cloned();
    let path = found.unwrap_or_else(|| {
        panic!(
            "libqwentts.so not found next to {} (looked in {:?}); it is built by `cargo build` \
             or `cargo test` because Cargo.toml's [lib] crate-type includes \"cdylib\"",
            exe.display(),
            candidates
        )
    });
    // Guard against a stale library from an earlier build: rustc writes the cdylib and the
    // rlib this test links in one invocation (the .so first), so their times are close.
    let rlib = deps.join("libqwentts.rlib");
    if let (Ok(so), Ok(rl)) = (fs::metadata(&path), fs::metadata(&rlib)) {
        let (so, rl) = (so.modified().unwrap(), rl.modified().unwrap());
        let lag = rl.duration_since(so).unwrap_or_default();
        assert!(
            lag < std::time::Duration::from_secs(120),
            "{} is {lag:?} older than {}: stale cdylib",
            path.display(),
            rlib.display()
        );
    }
    path
}

/// Function names declared in the committed header.
fn header_functions() -> BTreeSet<String> {
    let header = fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("include/qwentts.h"))
        .expect("include/qwentts.h");
    // Strip comments and preprocessor lines, then look at each `;`-terminated declaration.
    let mut code = String::new();
    let mut rest = header.as_str();
    while let Some(i) = rest.find("/*") {
        code.push_str(&rest[..i]);
        rest = &rest[i + rest[i..].find("*/").expect("closed comment") + 2..];
    }
    code.push_str(rest);
    let code: String = code
        .lines()
        .map(|l| l.split("//").next().unwrap())
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    code.split([';', '{', '}'])
        .map(str::trim)
        .filter(|decl| decl.contains('(') && !decl.starts_with("typedef") && !decl.starts_with("extern"))
        .map(|decl| {
            let before = decl[..decl.find('(').unwrap()].trim_end();
            before.rsplit([' ', '*']).next().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn exports_exactly_the_header_functions() {
    let lib = cdylib();
    let out =
        Command::new("nm").args(["-D", "--defined-only"]).arg(&lib).output().expect("nm (binutils) must be installed");
    assert!(out.status.success(), "nm failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut exported = BTreeSet::new();
    let mut strays = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "<address> <type> <name>"; absolute ('A') entries are version nodes, not symbols.
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (kind, name) = match fields.as_slice() {
            [_, kind, name] => (*kind, *name),
            [kind, name] => (*kind, *name),
            _ => continue,
        };
        if kind == "A" {
            continue;
        }
        let name = name.split('@').next().unwrap();
        if kind == "T" && name.starts_with("qt_") {
            exported.insert(name.to_owned());
        } else {
            strays.push(format!("{kind} {name}"));
        }
    }
    assert!(strays.is_empty(), "{} exports symbols other than qt_* functions: {strays:?}", lib.display());
    let declared = header_functions();
    assert!(!declared.is_empty(), "no functions parsed from include/qwentts.h");
    assert_eq!(
        exported, declared,
        "exported qt_* functions (left) differ from those include/qwentts.h declares (right)"
    );
}

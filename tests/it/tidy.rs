//! Rules about the code itself, checked like rust-analyzer's tidy tests:
//! the stage modules own their settings and do not import `config` (which
//! composes them), and every source file opens with a `//!` paragraph on
//! its job.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The stage folders define their own settings types (`lake::lease::
/// LeaseSettings`, `deliver::mail::RawMail`, `deliver::webhook::Webhook`,
/// `report::focus::RawFocus`, `reconcile::Settings`, `anomaly::Settings`);
/// `config` reads the file and composes them, never the other way round.
#[test]
fn stage_modules_do_not_import_config() {
    let mut found = Vec::new();
    for stage in ["lake", "deliver", "reconcile", "anomaly", "report"] {
        for file in rust_files(&src().join(stage)) {
            let text = std::fs::read_to_string(&file).unwrap();
            for (i, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                if code.contains("crate::config") {
                    found.push(format!(
                        "{}:{}: {}",
                        file.strip_prefix(src()).unwrap().display(),
                        i + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "stage modules import config (define the settings type beside the stage and let config compose it):\n{}",
        found.join("\n")
    );
}

#[test]
fn every_source_file_says_what_it_is_for() {
    let missing: Vec<String> = rust_files(&src())
        .into_iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            !text.trim_start().starts_with("//!")
        })
        .map(|f| f.strip_prefix(src()).unwrap().display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a //! opening: {missing:?}"
    );
}

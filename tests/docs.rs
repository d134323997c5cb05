//! ARCHITECTURE.md against the code, for what can be checked mechanically: the crate graph it
//! draws is the one `cargo metadata` reports, every module and path it names exists, and the
//! services' modules import one way only, in the order it gives.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

fn architecture() -> String {
    std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap()
}

/// The lines of the first fenced block after `heading`.
fn block<'a>(text: &'a str, heading: &str) -> Vec<&'a str> {
    let after = &text[text.find(heading).unwrap_or_else(|| panic!("ARCHITECTURE.md has no {heading:?}"))..];
    let start = after.find("```text\n").unwrap() + "```text\n".len();
    let body = &after[start..];
    body[..body.find("```").unwrap()].lines().collect()
}

#[test]
fn the_crate_graph_drawn_is_the_one_cargo_reports() {
    let drawn: BTreeMap<String, BTreeSet<String>> = block(&architecture(), "## Crate graph")
        .into_iter()
        .map(|line| {
            let (name, deps) = line.split_once('→').unwrap_or_else(|| panic!("not `crate → deps`: {line:?}"));
            let deps = match deps.trim() {
                "(none)" => BTreeSet::new(),
                deps => deps.split(',').map(|d| d.trim().to_owned()).collect(),
            };
            (name.trim().to_owned(), deps)
        })
        .collect();

    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let packages = metadata["packages"].as_array().unwrap();
    let members: BTreeSet<&str> = packages.iter().map(|p| p["name"].as_str().unwrap()).collect();
    let mut reported = BTreeMap::new();
    for package in packages {
        let name = package["name"].as_str().unwrap();
        let deps: BTreeSet<String> = package["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"].is_null() || d["kind"] == "build")
            .map(|d| d["name"].as_str().unwrap())
            .filter(|d| members.contains(d))
            .map(str::to_owned)
            .collect();
        if name.starts_with("fixture-") {
            assert_eq!(deps, BTreeSet::from(["leadscore-plugin-api".to_owned()]), "{name}");
        } else {
            reported.insert(name.to_owned(), deps);
        }
    }
    assert_eq!(drawn, reported, "ARCHITECTURE.md's crate graph (left) against cargo metadata (right)");
    assert!(reported["leadscore-store"].is_empty(), "the store depends on no other crate of ours");
}

#[test]
fn every_module_and_path_named_exists() {
    let text = architecture();
    let mut missing = Vec::new();
    let mut dir = PathBuf::new();
    for line in block(&text, "## Modules") {
        match line.strip_prefix("  ") {
            None => dir = root().join(line.trim()),
            Some(entry) => {
                let file = entry.split_whitespace().next().unwrap();
                if !dir.join(file).is_file() {
                    missing.push(dir.join(file));
                }
            }
        }
    }
    // Paths in prose: from the repository's root, or inside a crate's sources.
    let sources: Vec<PathBuf> = ["engine", "plugins"]
        .iter()
        .flat_map(|parent| std::fs::read_dir(root().join(parent)).unwrap())
        .map(|entry| entry.unwrap().path().join("src"))
        .chain([root(), root().join("engine/src")])
        .filter(|path| path.is_dir())
        .collect();
    for quoted in text.split('`').skip(1).step_by(2) {
        let path_like = quoted.contains('/')
            && !quoted.starts_with('/')
            && !quoted.contains("::")
            && quoted.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "/._-".contains(c));
        if path_like && !sources.iter().any(|root| root.join(quoted).exists()) {
            missing.push(PathBuf::from(quoted));
        }
    }
    assert!(missing.is_empty(), "ARCHITECTURE.md names what does not exist: {missing:?}");
    assert!(!text.contains("../"), "ARCHITECTURE.md names something outside the repository");
}

#[test]
fn the_services_modules_import_one_way() {
    // Each may use only those before it.
    let order = ["scoring", "policy", "generation", "routing", "dialer"];
    let beside = [("validation", "scoring")];
    let src = root().join("engine/services/src");
    for (rank, module) in order.iter().enumerate() {
        let used = crate_imports(&src, module);
        let above: Vec<&&str> = order[rank + 1..].iter().filter(|m| used.contains(**m)).collect();
        assert!(above.is_empty(), "{module} imports {above:?}, which come after it");
    }
    for (module, allowed) in beside {
        let used = crate_imports(&src, module);
        assert!(used.iter().all(|m| m == allowed || m == "testing"), "{module} imports {used:?}");
    }
}

/// The modules of this crate named by `crate::` paths in `module`'s files.
fn crate_imports(src: &Path, module: &str) -> BTreeSet<String> {
    let mut files = vec![src.join(format!("{module}.rs"))];
    let mut dirs = vec![src.join(module)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    let mut used = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (at, _) in text.match_indices("crate::") {
            let name: String = text[at + 7..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
            if !name.is_empty() && name != module {
                used.insert(name);
            }
        }
    }
    used
}

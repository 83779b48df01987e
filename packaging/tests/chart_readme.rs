//! The chart's README against its `values.yaml`: the values table between
//! the README's markers is generated from `values.yaml` (every key, nested
//! ones as dotted paths, with its default and the comment above it), and
//! this test fails when the two differ — a key added, removed or re-commented
//! in `values.yaml` without the table following. `FERRY_BLESS=1` writes the
//! table afresh instead.
//!
//! Needs no Helm: run it alone with `cargo test -p ferry-packaging --test chart_readme`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use yaml_rust2::{Yaml, YamlLoader};

const START: &str = "<!-- values-table:start (generated from values.yaml by packaging/tests/chart_readme.rs) -->";
const END: &str = "<!-- values-table:end -->";

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("helm/ferry")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

/// One key of values.yaml.
#[derive(Debug)]
struct Value {
    /// The dotted path (`eventHandler.lock.enabled`).
    path: String,
    /// The default as written, or empty for a table of keys.
    default: String,
    /// The comment lines right above the key, joined.
    comment: String,
}

/// Every key of `text` (a values.yaml written as block mappings, one key a
/// line, comments above the key they describe), in file order.
fn values(text: &str) -> Vec<Value> {
    let mut found = Vec::new();
    let mut parents: Vec<(usize, String)> = Vec::new();
    let mut comment: Vec<String> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.is_empty() {
            comment.clear();
            continue;
        }
        if let Some(text) = trimmed.strip_prefix('#') {
            comment.push(text.trim().to_owned());
            continue;
        }
        let Some((key, rest)) = trimmed.split_once(':') else {
            panic!("values.yaml: a line that is neither a key nor a comment: {line:?}")
        };
        assert!(!key.starts_with('-'), "values.yaml: a block list item, which this table cannot show: {line:?}");
        while parents.last().is_some_and(|(depth, _)| *depth >= indent) {
            parents.pop();
        }
        let path: Vec<&str> = parents.iter().map(|(_, key)| key.as_str()).chain([key]).collect();
        found.push(Value { path: path.join("."), default: rest.trim().to_owned(), comment: comment.join(" ") });
        comment.clear();
        if rest.trim().is_empty() {
            parents.push((indent, key.to_owned()));
        }
    }
    found
}

/// Every key path of the parsed YAML, as YAML itself reads the file.
fn yaml_paths(yaml: &Yaml, prefix: &str, paths: &mut BTreeSet<String>) {
    if let Yaml::Hash(hash) = yaml {
        for (key, value) in hash {
            let key = key.as_str().expect("values.yaml keys are strings");
            let path = if prefix.is_empty() { key.to_owned() } else { format!("{prefix}.{key}") };
            paths.insert(path.clone());
            yaml_paths(value, &path, paths);
        }
    }
}

/// Text safe inside a Markdown table cell (and `<release>` not taken for
/// an HTML tag).
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('<', "&lt;").replace('>', "&gt;")
}

/// The table, as the README holds it between the markers.
fn table(values: &[Value]) -> String {
    let mut out = String::from("| value | default | what it sets |\n| --- | --- | --- |\n");
    for value in values {
        let default = if value.default.is_empty() { "–".to_owned() } else { format!("`{}`", cell(&value.default)) };
        out.push_str(&format!("| `{}` | {default} | {} |\n", value.path, cell(&value.comment)));
    }
    out
}

#[test]
fn the_readme_values_table_is_values_yaml() {
    let text = read(&chart().join("values.yaml"));
    let values = values(&text);
    // The line reader must see what YAML sees, key for key.
    let mut parsed = BTreeSet::new();
    yaml_paths(&YamlLoader::load_from_str(&text).expect("values.yaml is YAML")[0], "", &mut parsed);
    let keys: BTreeSet<String> = values.iter().map(|value| value.path.clone()).collect();
    assert_eq!(keys, parsed, "the table's reading of values.yaml differs from YAML's");

    let readme_path = chart().join("README.md");
    let readme = read(&readme_path);
    let (Some(start), Some(end)) = (readme.find(START), readme.find(END)) else {
        panic!("{} lacks the markers {START} and {END}", readme_path.display())
    };
    let wanted = table(&values);
    let current = &readme[start + START.len()..end].trim_matches('\n');
    if current.trim_end() == wanted.trim_end() {
        return;
    }
    if std::env::var_os("FERRY_BLESS").is_some() {
        let updated = format!("{}{START}\n{wanted}{}", &readme[..start], &readme[end..]);
        std::fs::write(&readme_path, updated).expect("write the chart README");
        return;
    }
    let documented: BTreeSet<&str> = current.lines().filter_map(|line| line.strip_prefix("| `")?.split('`').next()).collect();
    let missing: Vec<&String> = keys.iter().filter(|path| !documented.contains(path.as_str())).collect();
    let extra: Vec<&&str> = documented.iter().filter(|path| !keys.contains(**path)).collect();
    panic!(
        "{}'s values table is not values.yaml's (in values.yaml only: {missing:?}; in the table only: {extra:?}; \
         else a default or comment changed): run `FERRY_BLESS=1 cargo test -p ferry-packaging --test chart_readme`",
        readme_path.display()
    );
}

//! The documentation against the code it describes, so that it cannot drift:
//! every `ferry …` command and `--flag` the READMEs and `docs/` show exists
//! in that command's `--help` of the real binary; every metric name they
//! give is one ferry exposes; and the configuration reference
//! (docs/configuration.md) names exactly the keys the config reader accepts,
//! table by table, as serde's own list of each table's fields says.

use crate::util::FERRY;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("host/ sits in the repository").to_owned()
}

/// The documents a user reads: the README, every page of docs/ (not the
/// research notes below it), the plugins' and the chart's READMEs.
fn documents() -> Vec<PathBuf> {
    let root = root();
    let mut documents = vec![root.join("README.md"), root.join("plugins/README.md"), root.join("packaging/helm/ferry/README.md")];
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|entry| entry.expect("read docs/").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    pages.sort();
    documents.extend(pages);
    documents
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root()).unwrap_or(path).display().to_string()
}

// === Commands and flags ===

/// Every `ferry …` command line of a document, with its line number: the
/// lines of shell code blocks that run ferry (after a prompt, `sudo`, `&&`
/// or `|`), and inline code spans that start with `ferry ` (a span may run
/// over a line break within its paragraph).
fn command_lines(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut in_shell = false;
    let mut in_block = false;
    let mut paragraph: Vec<(usize, &str)> = Vec::new();
    let flush = |paragraph: &mut Vec<(usize, &str)>, found: &mut Vec<(usize, String)>| {
        if let Some(&(first, _)) = paragraph.first() {
            let joined = paragraph.iter().map(|(_, line)| line.trim()).collect::<Vec<_>>().join(" ");
            for (i, span) in joined.split('`').enumerate() {
                if i % 2 == 1 && span.starts_with("ferry ") {
                    found.push((first, span.to_owned()));
                }
            }
        }
        paragraph.clear();
    };
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(lang) = trimmed.strip_prefix("```") {
            flush(&mut paragraph, &mut found);
            in_block = !in_block;
            in_shell = in_block && matches!(lang.trim(), "sh" | "shell" | "bash" | "console" | "");
            continue;
        }
        if in_block {
            if in_shell {
                for part in trimmed.split("&&").flat_map(|part| part.split(" | ")) {
                    let part = part.trim().trim_start_matches("$ ").trim_start_matches("sudo ");
                    if part.starts_with("ferry ") {
                        found.push((n + 1, part.to_owned()));
                    }
                }
            }
        } else if trimmed.is_empty() {
            flush(&mut paragraph, &mut found);
        } else {
            paragraph.push((n + 1, line));
        }
    }
    flush(&mut paragraph, &mut found);
    found
}

/// `ferry PATH… --help`, cached.
fn help<'a>(cache: &'a mut HashMap<Vec<String>, Option<String>>, path: &[String]) -> Option<&'a str> {
    cache
        .entry(path.to_vec())
        .or_insert_with(|| {
            let output = Command::new(FERRY).args(path).arg("--help").env_remove("FERRY_LOG").output().expect("run ferry --help");
            output.status.success().then(|| String::from_utf8_lossy(&output.stdout).into_owned())
        })
        .as_deref()
}

/// The subcommands a help text lists under `Commands:`.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Whether `help` lists the long flag `flag` (`--name`).
fn lists_flag(help: &str, flag: &str) -> bool {
    help.match_indices(flag).any(|(at, _)| {
        let next = help[at + flag.len()..].chars().next();
        !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}

/// What is wrong with one command line: a subcommand that does not exist
/// (the first word after a known command path that its help does not list,
/// when that path takes subcommands) or a flag its help does not list.
fn check_command(line: &str, cache: &mut HashMap<Vec<String>, Option<String>>) -> Vec<String> {
    let words: Vec<String> = line
        .replace("\\|", "|")
        .split_whitespace()
        .skip(1)
        .take_while(|word| !["#", "<", ">", "|", ";", "2>&1", "&"].contains(word))
        .map(|word| word.trim_matches(|c| matches!(c, '[' | ']' | '(' | ')' | ',' | '.' | ':' | ';')).to_owned())
        .filter(|word| !word.is_empty())
        .collect();
    let mut path: Vec<String> = Vec::new();
    let mut problems = Vec::new();
    let mut rest = words.iter();
    for word in rest.by_ref() {
        let Some(text) = help(cache, &path) else {
            problems.push(format!("`ferry {} --help` fails", path.join(" ")));
            return problems;
        };
        let known = subcommands(text);
        if known.is_empty() || word.starts_with('-') {
            break;
        }
        // `list|show`: each alternative must be a subcommand; the path goes on with the first.
        let alternatives: Vec<&str> = word.split('|').collect();
        if alternatives.iter().all(|alt| known.iter().any(|k| k == alt)) {
            path.push(alternatives[0].to_owned());
        } else if word.chars().all(|c| c.is_ascii_lowercase() || c == '-' || c == '|') && !word.contains('.') {
            problems.push(format!("`ferry {} {word}`: no such subcommand (known: {})", path.join(" "), known.join(", ")));
            return problems;
        } else {
            break;
        }
    }
    let Some(text) = help(cache, &path).map(str::to_owned) else {
        problems.push(format!("`ferry {} --help` fails", path.join(" ")));
        return problems;
    };
    for word in &words {
        for flag in word.split('|').filter(|flag| flag.starts_with("--") && flag.len() > 2) {
            let flag = flag.split('=').next().unwrap_or(flag);
            if !lists_flag(&text, flag) {
                problems.push(format!("`ferry {}` has no flag {flag}", path.join(" ")));
            }
        }
    }
    problems
}

#[test]
fn every_command_and_flag_the_docs_show_is_in_the_binary_help() {
    let mut cache = HashMap::new();
    let mut problems = Vec::new();
    let mut checked = 0;
    for document in documents() {
        for (line, command) in command_lines(&read(&document)) {
            checked += 1;
            for problem in check_command(&command, &mut cache) {
                problems.push(format!("{}:{line}: {problem} (in `{command}`)", relative(&document)));
            }
        }
    }
    assert!(checked > 50, "the docs show ferry's commands ({checked} found): is the extraction broken?");
    assert!(problems.is_empty(), "the docs show commands or flags ferry does not have:\n{}", problems.join("\n"));
}

#[test]
fn the_command_check_catches_a_wrong_flag_and_a_wrong_subcommand() {
    let mut cache = HashMap::new();
    assert!(check_command("ferry check --probe --config ferry.toml", &mut cache).is_empty());
    assert!(check_command("ferry dead-letters list|show", &mut cache).is_empty());
    assert_eq!(check_command("ferry check --prob", &mut cache), ["`ferry check` has no flag --prob"]);
    let wrong = check_command("ferry dead-letters lsit", &mut cache);
    assert!(wrong.len() == 1 && wrong[0].contains("no such subcommand"), "{wrong:?}");
}

// === Metric names ===

/// The names of the samples ferry's `/metrics` serves: each family's name
/// from its `# TYPE` line, with the suffixes its kind adds. A family shows
/// once it has a series, so every counter is counted and every histogram
/// observed once first.
fn exposed_metrics() -> BTreeSet<String> {
    let metrics = ferry::metrics::Metrics::default();
    for (name, _) in ferry::metrics::COUNTERS {
        metrics.add(name, &[("probe", "docs")], 1);
    }
    metrics.observe_sink_request("docs", std::time::Duration::from_millis(1));
    metrics.observe_plugin_call("docs", std::time::Duration::from_millis(1));
    let rendered = metrics.render();
    let mut names = BTreeSet::new();
    for line in rendered.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else { continue };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else { continue };
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["", "_bucket", "_sum", "_count"],
            _ => &[""],
        };
        names.extend(suffixes.iter().map(|suffix| format!("{name}{suffix}")));
    }
    names
}

/// Words of `text` that name a ferry metric: `ferry_…` ending as a sample
/// name does (`_total`, `_seconds`, `_bucket`, `_sum`, `_count`, `_bytes`),
/// or one of the `exposed` names (a gauge of a plain count has no unit).
fn metric_names(text: &str, exposed: &BTreeSet<String>) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for (at, _) in line.match_indices("ferry_") {
            if line[..at].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let word: String = line[at..].chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect();
            if exposed.contains(&word)
                || ["_total", "_seconds", "_bucket", "_sum", "_count", "_bytes"].iter().any(|suffix| word.ends_with(suffix))
            {
                found.push((n + 1, word));
            }
        }
    }
    found
}

#[test]
fn every_metric_the_docs_name_is_one_ferry_exposes() {
    let exposed = exposed_metrics();
    assert!(exposed.contains("ferry_sink_events_sent_total") && exposed.contains("ferry_lag_seconds"), "{exposed:?}");
    let mut named = BTreeSet::new();
    let mut problems = Vec::new();
    for document in documents() {
        for (line, name) in metric_names(&read(&document), &exposed) {
            if !exposed.contains(&name) {
                problems.push(format!("{}:{line}: {name}", relative(&document)));
            }
            named.insert(name);
        }
    }
    assert!(problems.is_empty(), "the docs name metrics ferry does not expose:\n{}\nferry exposes: {exposed:?}", problems.join("\n"));
    // And the reference lists each family once at least.
    let operating = read(&root().join("docs/operating.md"));
    let missing: Vec<&String> = exposed
        .iter()
        .filter(|name| !["_bucket", "_sum", "_count"].iter().any(|suffix| name.ends_with(suffix)))
        .filter(|name| !metric_names(&operating, &exposed).iter().any(|(_, found)| found == *name))
        .collect();
    assert!(missing.is_empty(), "docs/operating.md does not describe these metrics: {missing:?}");
}

// === The configuration reference ===

/// Each table of ferry.toml, as the marker `<!-- table: ID -->` names it in
/// docs/configuration.md, and a TOML text that puts an unknown key in it.
const TABLES: &[(&str, &str)] = &[
    ("top", "zz-probe = 1\n"),
    ("leadership", "[leadership]\nzz-probe = 1\n"),
    ("pipeline", "[pipeline]\nzz-probe = 1\n"),
    ("source", "[source.zz-probe]\n"),
    ("source.file", "[source.file]\nzz-probe = 1\n"),
    ("source.teleport", "[source.teleport]\nzz-probe = 1\n"),
    ("source.teleport.refresh", "[source.teleport.refresh]\nzz-probe = 1\n"),
    ("source.teleport.lock", "[source.teleport.lock]\nzz-probe = 1\n"),
    ("sinks.file", "[sinks.x]\ntype = \"file\"\nzz-probe = 1\n"),
    ("sinks.stdout", "[sinks.x]\ntype = \"stdout\"\nzz-probe = 1\n"),
    ("sinks.logstash", "[sinks.x]\ntype = \"logstash\"\nzz-probe = 1\n"),
    ("plugins", "[[plugins]]\nzz-probe = 1\n"),
    ("forward", "[forward]\nzz-probe = 1\n"),
    ("forward.fluentd", "[forward.fluentd]\nzz-probe = 1\n"),
];

/// Tables that take exactly the keys of another (the same type).
const SAME_AS: &[(&str, &str, &str)] = &[
    ("sinks.http", "[sinks.x]\ntype = \"http\"\nzz-probe = 1\n", "sinks.logstash"),
    ("teleport", "[teleport]\nzz-probe = 1\n", "source.teleport"),
    ("teleport.refresh", "[teleport.refresh]\nzz-probe = 1\n", "source.teleport.refresh"),
    ("teleport.lock", "[teleport.lock]\nzz-probe = 1\n", "source.teleport.lock"),
];

/// The keys (or, for `[source.KIND]`, the kinds) the config reader accepts
/// in the table `toml` puts an unknown key in: serde's list of the type's
/// fields, from the one-line error the reader gives.
fn accepted_keys(id: &str, toml: &str) -> BTreeSet<String> {
    let error = match ferry::app::FerryConfig::parse_with_env(toml, Path::new("probe.toml"), &|_| None) {
        Ok(_) => panic!("[{id}]: an unknown key was accepted: {toml}"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("zz-probe"), "[{id}]: not the unknown-key error: {error}");
    let mut keys = BTreeSet::new();
    if let Some((_, expected)) = error.split_once("expected") {
        keys.extend(expected.split('`').skip(1).step_by(2).map(str::to_owned));
    } else {
        assert!(error.contains("there are no fields"), "[{id}]: cannot read the accepted keys from: {error}");
    }
    // The tag of `[sinks.NAME]` is a key of each kind too.
    if id.starts_with("sinks.") {
        keys.insert("type".to_owned());
    }
    keys
}

/// The tables of docs/configuration.md: after each `<!-- table: ID -->`
/// marker, the first backticked word of each row of the table below it.
fn documented_tables(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut tables = BTreeMap::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(id) = line.trim().strip_prefix("<!-- table: ").and_then(|rest| rest.strip_suffix(" -->")) else { continue };
        let mut keys = BTreeSet::new();
        while lines.peek().is_some_and(|next| !next.starts_with('|')) {
            lines.next();
        }
        for row in lines.by_ref().take_while(|row| row.starts_with('|')).skip(2) {
            let first = row.trim_start_matches('|').split('|').next().unwrap_or_default();
            if let Some(key) = first.split('`').nth(1) {
                keys.insert(key.to_owned());
            }
        }
        assert!(tables.insert(id.to_owned(), keys).is_none(), "docs/configuration.md: table `{id}` twice");
    }
    tables
}

#[test]
fn the_configuration_reference_names_exactly_the_keys_the_reader_accepts() {
    let documented = documented_tables(&read(&root().join("docs/configuration.md")));
    let mut problems = Vec::new();
    for (id, toml) in TABLES {
        let accepted = accepted_keys(id, toml);
        let Some(keys) = documented.get(*id) else {
            problems.push(format!("no table `<!-- table: {id} -->`; the reader accepts {accepted:?}"));
            continue;
        };
        for key in accepted.difference(keys) {
            problems.push(format!("[{id}] `{key}`: accepted by ferry, missing from the reference"));
        }
        for key in keys.difference(&accepted) {
            problems.push(format!("[{id}] `{key}`: in the reference, refused by ferry"));
        }
    }
    for (id, toml, same) in SAME_AS {
        let (Some((_, probe)), false) = (TABLES.iter().find(|(table, _)| table == same), documented.contains_key(*id)) else {
            problems.push(format!("`{id}` is documented as the same as `{same}`: it needs no table of its own"));
            continue;
        };
        if accepted_keys(id, toml) != accepted_keys(same, probe) {
            problems.push(format!("[{id}] no longer takes the keys of [{same}]: document it on its own"));
        }
    }
    for id in documented.keys() {
        if !TABLES.iter().any(|(table, _)| table == id) {
            problems.push(format!("table `{id}` in the reference is not one this test knows: add it to TABLES"));
        }
    }
    assert!(problems.is_empty(), "docs/configuration.md has drifted from the config reader:\n{}", problems.join("\n"));
}

// === Links ===

/// GitHub's anchor for a heading: lowercase, spaces to `-`, punctuation
/// other than `-` and `_` dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown document's headings (outside code blocks).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut in_block = false;
    let mut found = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
        } else if !in_block && line.starts_with('#') {
            found.insert(anchor(line.trim_start_matches('#')));
        }
    }
    found
}

/// Every relative link target `](target)` of a document, with its line.
fn relative_links(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for (at, _) in line.match_indices("](") {
            let target: String = line[at + 2..].chars().take_while(|c| *c != ')').collect();
            if !target.contains("://") && !target.starts_with("mailto:") {
                found.push((n + 1, target));
            }
        }
    }
    found
}

#[test]
fn every_link_between_the_docs_leads_to_a_file_and_heading_that_exist() {
    let mut problems = Vec::new();
    for document in documents() {
        let text = read(&document);
        for (line, target) in relative_links(&text) {
            let (file, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let path = if file.is_empty() { document.clone() } else { document.parent().expect("a folder").join(file) };
            if !path.exists() {
                problems.push(format!("{}:{line}: {target}: no such file", relative(&document)));
            } else if !fragment.is_empty() && !anchors(&read(&path)).contains(fragment) {
                problems.push(format!("{}:{line}: {target}: no such heading in {}", relative(&document), relative(&path)));
            }
        }
    }
    assert!(problems.is_empty(), "broken links in the docs:\n{}", problems.join("\n"));
}

// === Environment variables ===

/// The `FERRY_…` variables a text names.
fn ferry_variables(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in text.match_indices("FERRY_") {
        if text[..at].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let name: String = text[at..].chars().take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_').collect();
        found.insert(name.trim_end_matches('_').to_owned());
    }
    found
}

/// Every file below `dir` (source and scripts), for the variables ferry and its tests read.
fn source_text(dir: &Path, text: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|err| panic!("read {}: {err}", dir.display())).flatten() {
        let path = entry.path();
        if path.is_dir() {
            source_text(&path, text);
        } else if path.extension().is_some_and(|ext| ext == "rs" || ext == "sh" || ext == "py") {
            text.push_str(&read(&path));
        }
    }
}

#[test]
fn every_variable_the_docs_name_is_one_ferry_or_its_tests_read() {
    let root = root();
    let mut code = read(&root.join("test"));
    for dir in ["host/src", "tests", "packaging", "bench/src", "plugin-build/src"] {
        source_text(&root.join(dir), &mut code);
    }
    let known = ferry_variables(&code);
    let mut problems = Vec::new();
    for document in documents() {
        for name in ferry_variables(&read(&document)) {
            if !known.contains(&name) {
                problems.push(format!("{}: {name}", relative(&document)));
            }
        }
    }
    assert!(problems.is_empty(), "the docs name variables no code reads:\n{}", problems.join("\n"));
}

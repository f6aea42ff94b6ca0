//! The shape rules of issue 10, checked by reading `src/`: no module imports a layer above
//! its own, no function runs over 80 lines, and no `Result<_, String>`. Code under
//! `#[cfg(test)]` and `tests.rs` files is exempt. Run with `cargo test --test it architecture`;
//! ARCHITECTURE.md explains the layers.
//!
//! The parsers are deliberately small: comments and literals are blanked first (so a brace
//! or a `crate::` in a string or a doc comment counts for nothing), then tokens are matched
//! on what is left. The unit tests at the end keep them honest.

use std::fs;
use std::path::{Path, PathBuf};

/// The layers, lowest first, each with the top-level modules in it. A module may use its
/// own layer or a lower one. `error` wraps the load, driver and ledger errors, so it sits
/// just above them; `api` is the library's front and must not reach into the command line,
/// so `cli` and `app` sit above it. `lib` and `main` are `src/lib.rs` and `src/main.rs`;
/// `internal` is lib.rs's doc-hidden module through which the binary reaches `app`.
const LAYERS: &[(&str, &[&str])] = &[
    ("model", &["model"]),
    ("plan", &["plan"]),
    ("load/driver", &["load", "driver"]),
    ("error", &["error"]),
    ("exec", &["exec"]),
    ("report", &["report"]),
    ("api", &["api"]),
    ("cli", &["cli"]),
    ("app", &["app", "logging", "lib", "main", "internal"]),
];

/// The longest a function in `src/` may be, counted from its `fn` line to its closing brace.
const MAX_FN_LINES: usize = 80;

/// One source file of the crate, outside test code.
struct Source {
    /// Relative to the manifest directory, for messages: `src/exec/join.rs`.
    path: String,
    /// Its module path: `["exec", "join"]`; empty for `lib.rs` and `main.rs`.
    module: Vec<String>,
    /// The file with comments, literals and `#[cfg(test)]` items blanked, lines kept.
    code: String,
}

impl Source {
    /// The top-level module the file belongs to, which decides its layer.
    fn top(&self) -> &str {
        match self.module.first() {
            Some(top) => top,
            None if self.path.ends_with("main.rs") => "main",
            None => "lib",
        }
    }
}

fn layer_of(module: &str) -> Option<(usize, &'static str)> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
        .map(|i| (i, LAYERS[i].0))
}

/// Every non-test source file under `src/`, in path order.
fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    collect_rs(&root.join("src"), &mut files);
    files.sort();
    let mut parsed = Vec::new();
    let mut test_files = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        let rel = file.strip_prefix(root).unwrap().to_path_buf();
        let module = module_path(&rel);
        let (code, test_mods) = blank_test_items(&blank_comments_and_literals(&text));
        let dir = child_dir(&file);
        test_files.extend(
            test_mods
                .iter()
                .flat_map(|m| [dir.join(format!("{m}.rs")), dir.join(m).join("mod.rs")]),
        );
        if is_test_file(&code) || file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        parsed.push((
            file,
            Source {
                path: rel.display().to_string(),
                module,
                code,
            },
        ));
    }
    let sources: Vec<Source> = parsed
        .into_iter()
        .filter(|(file, _)| !test_files.contains(file))
        .map(|(_, s)| s)
        .collect();
    assert!(
        sources.len() > 10,
        "found only {} source files under src/",
        sources.len()
    );
    sources
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/driver/ledger/mod.rs` → `["driver", "ledger"]`; `src/lib.rs` → `[]`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel.iter().skip(1).map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    let root_file = parts.is_empty() && matches!(stem, "lib" | "main");
    if stem != "mod" && !root_file {
        parts.push(stem.to_string());
    }
    parts
}

/// Where the files of a file's child modules live.
fn child_dir(file: &Path) -> PathBuf {
    let dir = file.parent().unwrap().to_path_buf();
    match file.file_stem().and_then(|s| s.to_str()) {
        Some("mod") => dir,
        Some("lib" | "main") if dir.ends_with("src") => dir,
        Some(stem) => dir.join(stem),
        None => dir,
    }
}

fn is_test_file(code: &str) -> bool {
    compact(code).contains("#![cfg(test)]")
}

fn compact(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn blank(c: char) -> char {
    if c == '\n' { '\n' } else { ' ' }
}

/// The text with comments and the insides of string and char literals replaced by spaces
/// (newlines kept, so line numbers hold), and every non-ASCII character a space, so the
/// result can be scanned byte by byte.
fn blank_comments_and_literals(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < c.len() {
        let start = i;
        if at(i) == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if at(i) == '/' && at(i + 1) == '*' {
            i = block_comment_end(&c, i);
        } else if let Some((open, hashes)) = raw_string_open(&c, i) {
            let close: Vec<char> = format!("\"{}", "#".repeat(hashes)).chars().collect();
            out.extend(&c[i..i + open]);
            i += open;
            while i < c.len() && !c[i..].starts_with(&close) {
                out.push(blank(c[i]));
                i += 1;
            }
            out.extend(&close);
            i = (i + close.len()).min(c.len());
            continue;
        } else if at(i) == '"' || (at(i) == '\'' && (at(i + 1) == '\\' || at(i + 2) == '\'')) {
            let quote = c[i];
            out.push(quote);
            i += 1;
            while i < c.len() && c[i] != quote {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            out.extend(c[start + 1..i.min(c.len())].iter().map(|&ch| blank(ch)));
            if i < c.len() {
                out.push(quote);
                i += 1;
            }
            continue;
        } else {
            out.push(if c[i].is_ascii() { c[i] } else { ' ' });
            i += 1;
            continue;
        }
        out.extend(c[start..i].iter().map(|&ch| blank(ch)));
    }
    out
}

/// The index just past a (possibly nested) block comment starting at `i`.
fn block_comment_end(c: &[char], mut i: usize) -> usize {
    let mut depth = 0;
    while i < c.len() {
        if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            depth += 1;
            i += 2;
        } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                break;
            }
        } else {
            i += 1;
        }
    }
    i.min(c.len())
}

/// At `r"`, `r#"`, `br#"` and the like: the length of the opening and its number of `#`.
fn raw_string_open(c: &[char], i: usize) -> Option<(usize, usize)> {
    if i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_') {
        return None;
    }
    let mut j = i;
    if matches!(c.get(j), Some('b' | 'c')) {
        j += 1;
    }
    if c.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = c[j..].iter().take_while(|&&ch| ch == '#').count();
    j += hashes;
    (c.get(j) == Some(&'"')).then_some((j + 1 - i, hashes))
}

/// The code with every item under `#[cfg(test)]` blanked, and the names of test modules
/// declared out of line (`#[cfg(test)] mod tests;`), whose files are test code too.
fn blank_test_items(code: &str) -> (String, Vec<String>) {
    let mut b = code.as_bytes().to_vec();
    let mut test_mods = Vec::new();
    let mut i = 0;
    while let Some(off) = find(&b[i..], b"#[") {
        let start = i + off;
        let attr_end = matching(&b, start + 1);
        if compact(&String::from_utf8_lossy(&b[start..attr_end])) != "#[cfg(test)]" {
            i = start + 2;
            continue;
        }
        let mut item = skip_space(&b, attr_end);
        while b[item..].starts_with(b"#[") {
            item = skip_space(&b, matching(&b, item + 1));
        }
        let (stop, brace) = first_at_depth_zero(&b, item, b"{;");
        let end = if brace == Some(b'{') {
            matching(&b, stop)
        } else {
            (stop + 1).min(b.len())
        };
        if brace == Some(b';') {
            let words: Vec<String> = String::from_utf8_lossy(&b[item..stop])
                .split_whitespace()
                .map(String::from)
                .collect();
            if let [.., kw, name] = words.as_slice()
                && kw == "mod"
            {
                test_mods.push(name.clone());
            }
        }
        for byte in &mut b[start..end] {
            if *byte != b'\n' {
                *byte = b' ';
            }
        }
        i = end;
    }
    (String::from_utf8(b).unwrap(), test_mods)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn skip_space(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The index just past the bracket that closes the one at `open` (`(`, `[` or `{`).
fn matching(b: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    for (i, &c) in b.iter().enumerate().skip(open) {
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    b.len()
}

/// The first of `stops` from `i` on that is outside parentheses and brackets.
fn first_at_depth_zero(b: &[u8], i: usize, stops: &[u8]) -> (usize, Option<u8>) {
    let mut depth = 0i32;
    for (j, &c) in b.iter().enumerate().skip(i) {
        match c {
            b'(' | b'[' => depth += 1,
            b')' | b']' => depth -= 1,
            c if depth == 0 && stops.contains(&c) => return (j, Some(c)),
            _ => {}
        }
    }
    (b.len(), None)
}

fn line_of(b: &[u8], i: usize) -> usize {
    b[..i.min(b.len())].iter().filter(|&&c| c == b'\n').count() + 1
}

/// Identifier tokens: (start, end) of each.
fn idents(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if is_ident(b[i]) && (i == 0 || !is_ident(b[i - 1])) {
            let end = i + b[i..].iter().take_while(|&&c| is_ident(c)).count();
            if !b[i].is_ascii_digit() {
                out.push((i, end));
            }
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// If `::` follows (after spaces) at `i`, the index after it.
fn after_path_sep(b: &[u8], i: usize) -> Option<usize> {
    let j = skip_space(b, i);
    b[j..].starts_with(b"::").then(|| skip_space(b, j + 2))
}

fn ident_at(b: &[u8], i: usize) -> Option<&str> {
    let len = b.get(i..)?.iter().take_while(|&&c| is_ident(c)).count();
    (len > 0).then(|| std::str::from_utf8(&b[i..i + len]).unwrap())
}

/// The first segment of each path at `i`: one name, or each entry of a `{a, b::{c}}` group.
fn first_segments(b: &[u8], i: usize) -> Vec<(usize, String)> {
    if b.get(i) != Some(&b'{') {
        return ident_at(b, i).map(|n| vec![(i, n.to_string())]).unwrap_or_default();
    }
    let end = matching(b, i);
    let mut out = Vec::new();
    let (mut depth, mut j, mut expect) = (0, i, true);
    while j < end {
        match b[j] {
            b'{' => {
                depth += 1;
                expect = depth == 1;
            }
            b'}' => depth -= 1,
            b',' if depth == 1 => expect = true,
            c if expect && is_ident(c) => {
                let name = ident_at(b, j).unwrap();
                if name != "self" {
                    out.push((j, name.to_string()));
                }
                expect = false;
                j += name.len();
                continue;
            }
            _ => {}
        }
        j += 1;
    }
    out
}

/// Every top-level module the code names, with its line: through `crate::` (and
/// `fleetmig::`, the library's name in `main.rs`) in `use` lines, grouped uses and paths in
/// code, and through a chain of `super::` that climbs to the crate root.
fn crate_refs(code: &str, module: &[String]) -> Vec<(usize, String)> {
    let b = code.as_bytes();
    let toks = idents(b);
    let mut out = Vec::new();
    let mut k = 0;
    while k < toks.len() {
        let (s, e) = toks[k];
        let word = &code[s..e];
        k += 1;
        let prev_word = k.checked_sub(2).map(|p| &code[toks[p].0..toks[p].1]);
        if (word == "crate" || word == "fleetmig") && (s == 0 || b[s - 1] != b'$') && prev_word != Some("in") {
            if let Some(next) = after_path_sep(b, e) {
                out.extend(first_segments(b, next).into_iter().map(|(p, n)| (line_of(b, p), n)));
            }
        } else if word == "super" && (s < 2 || &b[s - 2..s] != b"::") {
            let (mut ups, mut pos) = (0, e);
            while let Some(next) = after_path_sep(b, pos) {
                ups += 1;
                if ident_at(b, next) != Some("super") {
                    if ups == module.len() {
                        out.extend(first_segments(b, next).into_iter().map(|(p, n)| (line_of(b, p), n)));
                    }
                    break;
                }
                pos = next + "super".len();
            }
            while k < toks.len() && toks[k].0 < pos {
                k += 1;
            }
        }
    }
    out
}

/// Functions with a body: (line of `fn`, name, lines from `fn` to the closing brace).
fn fn_lengths(code: &str) -> Vec<(usize, String, usize)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    for (s, e) in idents(b) {
        if &code[s..e] != "fn" || !b.get(e).is_some_and(u8::is_ascii_whitespace) {
            continue;
        }
        let name_at = skip_space(b, e);
        let Some(name) = ident_at(b, name_at) else { continue };
        let (open, stop) = first_at_depth_zero(b, name_at, b"{;");
        if stop == Some(b'{') {
            let close = matching(b, open) - 1;
            out.push((line_of(b, s), name.to_string(), line_of(b, close) - line_of(b, s) + 1));
        }
    }
    out
}

/// The lines of every `Result<T, String>`, however `T` and the spacing look.
fn string_errors(code: &str) -> Vec<usize> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    for (s, e) in idents(b) {
        let open = skip_space(b, e);
        if &code[s..e] != "Result" || b.get(open) != Some(&b'<') {
            continue;
        }
        let (mut args, mut arg_start, mut angle, mut paren) = (Vec::new(), open + 1, 1, 0);
        for j in open + 1..b.len() {
            match b[j] {
                b'<' => angle += 1,
                b'>' if b[j - 1] != b'-' => angle -= 1,
                b'(' | b'[' => paren += 1,
                b')' | b']' => paren -= 1,
                b',' if angle == 1 && paren == 0 => {
                    args.push(compact(&code[arg_start..j]));
                    arg_start = j + 1;
                }
                _ => {}
            }
            if angle == 0 {
                args.push(compact(&code[arg_start..j]));
                break;
            }
        }
        args.retain(|a| !a.is_empty());
        let string = [
            "String",
            "std::string::String",
            "::std::string::String",
            "alloc::string::String",
        ];
        if args.len() == 2 && string.contains(&args[1].as_str()) {
            out.push(line_of(b, s));
        }
    }
    out
}

fn fail_if_any(rule: &str, found: &[String]) {
    assert!(
        found.is_empty(),
        "{rule}: {} violation(s):\n  {}",
        found.len(),
        found.join("\n  ")
    );
}

#[test]
fn layers_import_only_their_own_or_lower() {
    let mut found = Vec::new();
    let mut refs = 0;
    for src in sources() {
        let Some((own, own_name)) = layer_of(src.top()) else {
            found.push(format!(
                "{}:1: module `{}` has no layer: add it to LAYERS in tests/it/architecture.rs and to ARCHITECTURE.md",
                src.path,
                src.top()
            ));
            continue;
        };
        for (line, target) in crate_refs(&src.code, &src.module) {
            refs += 1;
            match layer_of(&target) {
                Some((theirs, their_name)) if theirs > own => found.push(format!(
                    "{}:{line}: `{}` (layer {own_name}) uses `{target}` (layer {their_name}, higher)",
                    src.path,
                    src.top()
                )),
                Some(_) => {}
                None => found.push(format!("{}:{line}: `{target}` has no layer in LAYERS", src.path)),
            }
        }
    }
    assert!(refs > 50, "read only {refs} crate paths in src/: the parser is broken");
    fail_if_any(
        "a module uses a layer above its own (model ← plan ← load/driver ← error ← exec ← report ← api ← cli ← app)",
        &found,
    );
}

#[test]
fn no_function_over_80_lines() {
    let mut found = Vec::new();
    let mut fns = 0;
    for src in sources() {
        for (line, name, len) in fn_lengths(&src.code) {
            fns += 1;
            if len > MAX_FN_LINES {
                found.push(format!("{}:{line}: fn `{name}` is {len} lines", src.path));
            }
        }
    }
    assert!(fns > 100, "read only {fns} functions in src/: the parser is broken");
    fail_if_any(&format!("functions over {MAX_FN_LINES} lines"), &found);
}

#[test]
fn no_result_with_a_string_error() {
    let found: Vec<String> = sources()
        .iter()
        .flat_map(|src| {
            string_errors(&src.code)
                .into_iter()
                .map(move |line| format!("{}:{line}: `Result<_, String>`", src.path))
        })
        .collect();
    fail_if_any("errors are typed, not `String`", &found);
}

/// Runs a parser over source text as `sources` would prepare it.
fn prepared(text: &str) -> String {
    blank_test_items(&blank_comments_and_literals(text)).0
}

#[test]
fn parser_reads_grouped_multiline_use() {
    let code = prepared(
        "use crate::{\n    model::fleet::Fleet,\n    exec::{dispatch::{self, RunSpec}, events},\n    self,\n};\n",
    );
    let refs = crate_refs(&code, &["report".into()]);
    assert_eq!(refs, [(2, "model".to_string()), (3, "exec".to_string())]);
}

#[test]
fn parser_reads_qualified_paths_and_super_to_the_root() {
    let text = "fn f() {\n    let v = crate::plan::tenant::version_of(x);\n    super::super::exec::run();\n    super::sibling();\n}\n";
    let refs = crate_refs(&prepared(text), &["driver".into(), "ledger".into()]);
    assert_eq!(refs, [(2, "plan".to_string()), (3, "exec".to_string())]);
    let main = crate_refs("use fleetmig::app::{self, exit};\nfleetmig::cli::Cli::parse();", &[]);
    assert_eq!(main, [(1, "app".to_string()), (2, "cli".to_string())]);
}

#[test]
fn parser_ignores_comments_literals_visibility_and_test_modules() {
    let text = "//! see [`crate::app`]\n/* crate::app */ pub(in crate::exec) fn f() { let s = \"crate::app::x {\"; let c = '{'; }\n\
                #[cfg(test)]\nmod tests {\n    use crate::app::run;\n}\n";
    let code = prepared(text);
    assert_eq!(crate_refs(&code, &["model".into()]), []);
    assert_eq!(fn_lengths(&code), [(2, "f".to_string(), 1)]);
    let raw = prepared("fn g() {\n    let q = r#\"{ \"crate::app\" }\"#;\n    let e = '\\'';\n}\n");
    assert_eq!(fn_lengths(&raw), [(1, "g".to_string(), 4)]);
    let (_, mods) = blank_test_items("#[cfg(test)]\nmod tests;\n");
    assert_eq!(mods, ["tests"]);
}

#[test]
fn parser_measures_fns_with_where_clauses_and_skips_bodiless_ones() {
    let text = "pub(crate) async fn run<F>(\n    f: F,\n) -> Result<(), E>\nwhere\n    F: Fn(&str) -> [u8; 4],\n{\n    body();\n}\n\
                trait T {\n    fn decl(&self) -> impl Future<Output = ()> + Send;\n    const fn inner() {}\n}\n";
    let fns = fn_lengths(&prepared(text));
    assert_eq!(fns, [(1, "run".to_string(), 8), (11, "inner".to_string(), 1)]);
}

#[test]
fn parser_finds_string_errors_only() {
    let text = "fn a() -> Result<Vec<(u8, String)>, String> {}\n\
                fn b(f: &dyn Fn(&str) -> Option<String>) -> Result<String, Error> {}\n\
                fn c() -> std::io::Result<String> {}\n\
                struct S { u: Option<Result<String,\n    String>> }\n";
    assert_eq!(string_errors(&prepared(text)), [1, 4]);
}

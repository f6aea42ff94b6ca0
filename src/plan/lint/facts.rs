//! What `lint`'s own rules need from a statement, whichever parser read it: the tables and
//! types it creates, drops or renames, and what kind of statement it is.

/// One statement of a migration file: where it is (byte offsets) and what it does.
#[derive(Debug, Clone, Default)]
pub struct Stmt {
    /// The offset of its first token (after comments and white space).
    pub start: usize,
    /// Just past its end.
    pub end: usize,
    pub facts: Vec<Fact>,
}

/// What a statement does that a rule looks at. Names are normalised: unquoted ones
/// lower-cased, schema dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    CreateTable {
        table: String,
        types: Vec<String>,
    },
    CreateEnum {
        name: String,
    },
    AddColumn {
        table: String,
        ty: Option<String>,
        not_null_without_default: bool,
    },
    DropTables {
        tables: Vec<String>,
    },
    DropTypes {
        names: Vec<String>,
    },
    RenameTable {
        from: String,
        to: String,
    },
    RenameColumn {
        table: String,
    },
    DropColumn {
        table: String,
    },
    ChangeType {
        table: String,
    },
    CreateIndex {
        table: String,
        concurrently: bool,
    },
    DropIndexConcurrently,
    /// An UPDATE or DELETE with no WHERE.
    WholeTable {
        table: String,
        verb: &'static str,
    },
    /// INSERT, UPDATE or DELETE.
    Data,
    /// A statement MySQL commits implicitly.
    Ddl,
    /// `PRAGMA foreign_key_check`.
    FkCheck,
    /// The parser could not read it: why.
    Unparsed {
        why: String,
    },
}

/// A rule's hit before it is placed: which rule, at which byte offset, saying what.
#[derive(Debug, Clone)]
pub struct Hit {
    pub rule: crate::model::lint::Rule,
    pub at: usize,
    pub message: String,
}

/// A name as the database would store it: quoted names as written, others lower-cased;
/// the schema dropped.
pub fn normalise(name: &str) -> String {
    let last = split_last(name.trim());
    match last.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => match last.strip_prefix('`').and_then(|s| s.strip_suffix('`')) {
            Some(quoted) => quoted.to_owned(),
            None => last.to_lowercase(),
        },
    }
}

/// The last part of a dotted name, dots inside quotes kept.
fn split_last(name: &str) -> &str {
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in name.char_indices() {
        match c {
            '"' | '`' => quoted = !quoted,
            '.' if !quoted => start = i + 1,
            _ => {}
        }
    }
    &name[start..]
}

/// A type as written, normalised for comparison with an enum's name: no array brackets.
pub fn normalise_type(ty: &str) -> String {
    let ty = ty.trim();
    let ty = ty.split('[').next().unwrap_or(ty);
    normalise(ty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_schema_and_case_unless_quoted() {
        assert_eq!(normalise("public.Users"), "users");
        assert_eq!(normalise("\"Odd.Name\""), "Odd.Name");
        assert_eq!(normalise("`t`"), "t");
        assert_eq!(normalise_type("public.mood[]"), "mood");
    }
}

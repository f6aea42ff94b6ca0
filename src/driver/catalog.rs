//! Catalog snapshots: for each engine, the queries that read a tenant's catalog (its
//! PostgreSQL schema, its MySQL database, its SQLite file) into [`Catalog`] objects.
//!
//! Every query returns one row per object: its `name`, the table it belongs to as
//! `owner` (NULL when none), then one text column per attribute, named as the diff shows
//! it. PostgreSQL reads the schemas it is given (a PostgreSQL query's first column is the
//! schema), MySQL the session's database; objects that belong to an extension are the
//! extension's, not listed one by one.

use sqlx::{Column, Row};

use crate::model::catalog::{Kind, Object};

/// The schemas asked for, as a condition on the namespace oid `$oid`.
macro_rules! ns {
    ($oid:literal) => {
        concat!($oid, " = n.oid AND n.nspname = ANY($1)")
    };
}

/// Not a member of an extension: `$class` is the catalog (`pg_class`), `$oid` the object.
macro_rules! own {
    ($class:literal, $oid:literal) => {
        concat!(
            "NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = '",
            $class,
            "'::regclass AND d.objid = ",
            $oid,
            " AND d.deptype = 'e')"
        )
    };
}

/// One query per kind, each taking the schemas to read as `$1` (a `text[]`) and returning
/// the object's schema first, then the columns [`object`] reads. One schema (`check`'s
/// session) or thousands (`drift` over a host's schema-tenants) read the same way, so the
/// two give the same snapshot; [`unqualify`] then takes the schema's own name out of the
/// definitions PostgreSQL qualifies when the schema is not on the search path.
pub const POSTGRES: &[(Kind, &str)] = &[
    (
        Kind::Extension,
        concat!(
            "SELECT n.nspname::text AS schema, e.extname::text AS name, NULL::text AS owner, \
             e.extversion::text AS version FROM pg_extension e, pg_namespace n WHERE ",
            ns!("e.extnamespace")
        ),
    ),
    (
        Kind::EnumType,
        concat!(
            "SELECT n.nspname::text AS schema, t.typname::text AS name, NULL::text AS owner, \
             string_agg(e.enumlabel::text, ', ' ORDER BY e.enumsortorder) AS labels \
             FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid, pg_namespace n WHERE ",
            ns!("t.typnamespace"),
            " AND ",
            own!("pg_type", "t.oid"),
            " GROUP BY n.nspname, t.typname"
        ),
    ),
    (
        Kind::Sequence,
        concat!(
            "SELECT n.nspname::text AS schema, c.relname::text AS name, NULL::text AS owner, \
             format_type(s.seqtypid, NULL) AS type, s.seqincrement::text AS increment, s.seqstart::text AS start \
             FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid, pg_namespace n WHERE ",
            ns!("c.relnamespace"),
            " AND ",
            own!("pg_class", "c.oid")
        ),
    ),
    (
        Kind::Table,
        concat!(
            "SELECT n.nspname::text AS schema, c.relname::text AS name, NULL::text AS owner, \
             CASE c.relkind WHEN 'p' THEN 'partitioned' END AS kind \
             FROM pg_class c, pg_namespace n WHERE c.relkind IN ('r', 'p') AND ",
            ns!("c.relnamespace"),
            " AND ",
            own!("pg_class", "c.oid")
        ),
    ),
    (
        Kind::Column,
        concat!(
            "SELECT n.nspname::text AS schema, c.relname || '.' || a.attname AS name, c.relname::text AS owner, \
             format_type(a.atttypid, a.atttypmod) AS type, \
             CASE WHEN a.attnotnull THEN 'no' ELSE 'yes' END AS nullable, \
             pg_get_expr(d.adbin, d.adrelid) AS \"default\", \
             CASE WHEN a.attcollation <> t.typcollation THEN co.collname::text END AS collation, \
             NULLIF(a.attidentity::text, '') AS identity, NULLIF(a.attgenerated::text, '') AS generated \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_type t ON t.oid = a.atttypid \
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             LEFT JOIN pg_collation co ON co.oid = a.attcollation, pg_namespace n \
             WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped AND ",
            ns!("c.relnamespace"),
            " AND ",
            own!("pg_class", "c.oid")
        ),
    ),
    (
        Kind::Constraint,
        concat!(
            "SELECT n.nspname::text AS schema, r.relname || '.' || con.conname AS name, r.relname::text AS owner, \
             pg_get_constraintdef(con.oid) AS definition \
             FROM pg_constraint con JOIN pg_class r ON r.oid = con.conrelid, pg_namespace n WHERE ",
            ns!("con.connamespace")
        ),
    ),
    (
        Kind::Index,
        concat!(
            "SELECT n.nspname::text AS schema, i.relname::text AS name, t.relname::text AS owner, \
             pg_get_indexdef(i.oid) AS definition \
             FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid, \
             pg_namespace n WHERE ",
            ns!("i.relnamespace"),
            " AND ",
            own!("pg_class", "t.oid")
        ),
    ),
    (
        Kind::View,
        concat!(
            "SELECT n.nspname::text AS schema, c.relname::text AS name, NULL::text AS owner, \
             CASE c.relkind WHEN 'm' THEN 'materialized' END AS kind, pg_get_viewdef(c.oid) AS definition \
             FROM pg_class c, pg_namespace n WHERE c.relkind IN ('v', 'm') AND ",
            ns!("c.relnamespace"),
            " AND ",
            own!("pg_class", "c.oid")
        ),
    ),
    (
        Kind::Function,
        concat!(
            "SELECT n.nspname::text AS schema, \
             p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')' AS name, \
             NULL::text AS owner, pg_get_functiondef(p.oid) AS definition \
             FROM pg_proc p, pg_namespace n WHERE p.prokind IN ('f', 'p') AND ",
            ns!("p.pronamespace"),
            " AND ",
            own!("pg_proc", "p.oid")
        ),
    ),
    (
        Kind::Trigger,
        concat!(
            "SELECT n.nspname::text AS schema, c.relname || '.' || t.tgname AS name, c.relname::text AS owner, \
             pg_get_triggerdef(t.oid) AS definition \
             FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid, pg_namespace n WHERE NOT t.tgisinternal AND ",
            ns!("c.relnamespace")
        ),
    ),
];

/// The views of the schemas in `$1`, by oid: `pg_get_viewdef` locks each view and the
/// tables it reads until the statement ends, so many schemas' views are read a few at a
/// time ([`PG_VIEWS_BY_OID`]) lest one statement exhaust the server's lock table.
pub const PG_VIEW_OIDS: &str = concat!(
    "SELECT c.oid FROM pg_class c, pg_namespace n WHERE c.relkind IN ('v', 'm') AND ",
    ns!("c.relnamespace"),
    " AND ",
    own!("pg_class", "c.oid")
);

/// [`POSTGRES`]'s view query for the views whose oids are in `$1`.
pub const PG_VIEWS_BY_OID: &str = "SELECT n.nspname::text AS schema, c.relname::text AS name, NULL::text AS owner, \
     CASE c.relkind WHEN 'm' THEN 'materialized' END AS kind, pg_get_viewdef(c.oid) AS definition \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ANY($1)";

/// Each schema with the name PostgreSQL prints for it in a definition (`quote_ident`):
/// `tenant_1`, `"Tenant-1"`.
pub const PG_QUALIFIERS: &str = "SELECT s, quote_ident(s) FROM unnest($1::text[]) s";

/// `text` with schema `qualifier`'s own prefix taken out wherever it qualifies a name:
/// `tenant_1.users` and `'tenant_1.users_id_seq'::regclass` read `users` and
/// `'users_id_seq'::regclass`, as when the schema is first on the search path. `qualifier`
/// is the schema as [`PG_QUALIFIERS`] gives it; inside a string literal its single quotes
/// are doubled, so that form is taken out too. A prefix that ends another name
/// (`xtenant_1.users`, `"a""tenant_1".users`) is left alone.
pub fn unqualify(text: &str, qualifier: &str) -> String {
    let mut out = text.to_owned();
    let mut forms = vec![format!("{qualifier}.")];
    if qualifier.contains('\'') {
        forms.push(format!("{}.", qualifier.replace('\'', "''")));
    }
    for form in forms {
        out = strip_prefixes(&out, &form);
    }
    out
}

fn strip_prefixes(text: &str, prefix: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().last().or_else(|| out.chars().last());
        out.push_str(&rest[..at]);
        let bounded = before.is_none_or(|c| !(c.is_alphanumeric() || matches!(c, '_' | '$' | '"')));
        if !bounded {
            out.push_str(prefix);
        }
        rest = &rest[at + prefix.len()..];
    }
    out.push_str(rest);
    out
}

/// The session's database's base tables, for MySQL queries that list columns.
macro_rules! my_tables {
    () => {
        "(SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() \
         AND TABLE_TYPE = 'BASE TABLE')"
    };
}

pub const MYSQL: &[(Kind, &str)] = &[
    (
        Kind::Sequence,
        "SELECT CAST(TABLE_NAME AS CHAR) AS name, CAST(NULL AS CHAR) AS owner FROM information_schema.TABLES \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'SEQUENCE'",
    ),
    (
        Kind::Table,
        "SELECT CAST(TABLE_NAME AS CHAR) AS name, CAST(NULL AS CHAR) AS owner, CAST(ENGINE AS CHAR) AS engine, \
         CAST(TABLE_COLLATION AS CHAR) AS collation FROM information_schema.TABLES \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE'",
    ),
    (
        Kind::Column,
        concat!(
            "SELECT CAST(CONCAT(TABLE_NAME, '.', COLUMN_NAME) AS CHAR) AS name, CAST(TABLE_NAME AS CHAR) AS owner, \
             CAST(COLUMN_TYPE AS CHAR) AS type, CAST(IF(IS_NULLABLE = 'YES', 'yes', 'no') AS CHAR) AS nullable, \
             CAST(COLUMN_DEFAULT AS CHAR) AS `default`, CAST(COLLATION_NAME AS CHAR) AS collation, \
             CAST(NULLIF(EXTRA, '') AS CHAR) AS extra FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN ",
            my_tables!()
        ),
    ),
    (
        Kind::Constraint,
        "SELECT CAST(CONCAT(tc.TABLE_NAME, '.', tc.CONSTRAINT_NAME) AS CHAR) AS name, \
         CAST(tc.TABLE_NAME AS CHAR) AS owner, CAST(tc.CONSTRAINT_TYPE AS CHAR) AS type, \
         CAST((SELECT GROUP_CONCAT(k.COLUMN_NAME ORDER BY k.ORDINAL_POSITION SEPARATOR ', ') \
         FROM information_schema.KEY_COLUMN_USAGE k WHERE k.CONSTRAINT_SCHEMA = tc.CONSTRAINT_SCHEMA \
         AND k.TABLE_NAME = tc.TABLE_NAME AND k.CONSTRAINT_NAME = tc.CONSTRAINT_NAME) AS CHAR) AS columns, \
         CAST((SELECT MAX(k.REFERENCED_TABLE_NAME) FROM information_schema.KEY_COLUMN_USAGE k \
         WHERE k.CONSTRAINT_SCHEMA = tc.CONSTRAINT_SCHEMA AND k.TABLE_NAME = tc.TABLE_NAME \
         AND k.CONSTRAINT_NAME = tc.CONSTRAINT_NAME) AS CHAR) AS `references` \
         FROM information_schema.TABLE_CONSTRAINTS tc WHERE tc.CONSTRAINT_SCHEMA = DATABASE()",
    ),
    (
        Kind::Index,
        "SELECT CAST(CONCAT(TABLE_NAME, '.', INDEX_NAME) AS CHAR) AS name, CAST(TABLE_NAME AS CHAR) AS owner, \
         CAST(CONCAT(IF(NON_UNIQUE = 0, 'UNIQUE ', ''), INDEX_TYPE, ' (', GROUP_CONCAT(CONCAT(COLUMN_NAME, \
         IFNULL(CONCAT('(', SUB_PART, ')'), '')) ORDER BY SEQ_IN_INDEX SEPARATOR ', '), ')') AS CHAR) AS definition \
         FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() \
         GROUP BY TABLE_NAME, INDEX_NAME, NON_UNIQUE, INDEX_TYPE",
    ),
    (
        Kind::View,
        "SELECT CAST(TABLE_NAME AS CHAR) AS name, CAST(NULL AS CHAR) AS owner, \
         CAST(VIEW_DEFINITION AS CHAR) AS definition FROM information_schema.VIEWS WHERE TABLE_SCHEMA = DATABASE()",
    ),
    (
        Kind::Function,
        "SELECT CAST(ROUTINE_NAME AS CHAR) AS name, CAST(NULL AS CHAR) AS owner, CAST(ROUTINE_TYPE AS CHAR) AS type, \
         CAST(ROUTINE_DEFINITION AS CHAR) AS definition FROM information_schema.ROUTINES \
         WHERE ROUTINE_SCHEMA = DATABASE()",
    ),
    (
        Kind::Trigger,
        "SELECT CAST(CONCAT(EVENT_OBJECT_TABLE, '.', TRIGGER_NAME) AS CHAR) AS name, \
         CAST(EVENT_OBJECT_TABLE AS CHAR) AS owner, \
         CAST(CONCAT(ACTION_TIMING, ' ', EVENT_MANIPULATION, ' ', ACTION_STATEMENT) AS CHAR) AS definition \
         FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE()",
    ),
];

/// MySQL's CHECK clauses, as `name` (`table.constraint`, as the constraint query names
/// it) and `check`. MariaDB names a column's CHECK after the column, so two tables can
/// share a name and only its `TABLE_NAME` column tells them apart; MySQL 8 has no such
/// column but keeps names unique in a database. The first query is MariaDB's, the second
/// MySQL's, tried when the first fails.
pub const MYSQL_CHECKS: [&str; 2] = [
    "SELECT CAST(CONCAT(TABLE_NAME, '.', CONSTRAINT_NAME) AS CHAR) AS name, CAST(CHECK_CLAUSE AS CHAR) AS `check` \
     FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = DATABASE()",
    "SELECT CAST(CONCAT(tc.TABLE_NAME, '.', tc.CONSTRAINT_NAME) AS CHAR) AS name, CAST(cc.CHECK_CLAUSE AS CHAR) AS `check` \
     FROM information_schema.TABLE_CONSTRAINTS tc JOIN information_schema.CHECK_CONSTRAINTS cc \
     ON cc.CONSTRAINT_SCHEMA = tc.CONSTRAINT_SCHEMA AND cc.CONSTRAINT_NAME = tc.CONSTRAINT_NAME \
     WHERE tc.CONSTRAINT_SCHEMA = DATABASE() AND tc.CONSTRAINT_TYPE = 'CHECK'",
];

/// Puts each CHECK clause read by [`MYSQL_CHECKS`] on its constraint.
pub fn mysql_checks(objects: &mut [Object], checks: impl IntoIterator<Item = (String, String)>) {
    for (name, clause) in checks {
        if let Some(o) = objects
            .iter_mut()
            .find(|o| o.kind == Kind::Constraint && o.name == name)
        {
            o.attrs.insert("check".to_owned(), clause);
        }
    }
}

/// The file's tables, SQLite's own left out.
macro_rules! lite_tables {
    () => {
        " WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
    };
}

pub const SQLITE: &[(Kind, &str)] = &[
    (
        Kind::Table,
        concat!(
            "SELECT m.name AS name, NULL AS owner FROM sqlite_master m",
            lite_tables!()
        ),
    ),
    (
        Kind::Column,
        concat!(
            "SELECT m.name || '.' || p.name AS name, m.name AS owner, p.type AS type, \
             CASE WHEN p.\"notnull\" THEN 'no' ELSE 'yes' END AS nullable, p.dflt_value AS \"default\", \
             CASE WHEN p.pk > 0 THEN CAST(p.pk AS TEXT) END AS primary_key \
             FROM sqlite_master m JOIN pragma_table_info(m.name) p",
            lite_tables!()
        ),
    ),
    (
        Kind::Constraint,
        concat!(
            "SELECT m.name || '.foreign key (' || group_concat(f.\"from\", ', ') || ')' AS name, m.name AS owner, \
             'REFERENCES ' || f.\"table\" || ' (' || group_concat(coalesce(f.\"to\", ''), ', ') || ') ON UPDATE ' \
             || f.on_update || ' ON DELETE ' || f.on_delete AS definition \
             FROM sqlite_master m JOIN pragma_foreign_key_list(m.name) f",
            lite_tables!(),
            " GROUP BY m.name, f.id"
        ),
    ),
    (
        Kind::Index,
        concat!(
            "SELECT i.name AS name, m.name AS owner, CASE WHEN i.partial THEN \
             (SELECT s.sql FROM sqlite_master s WHERE s.type = 'index' AND s.name = i.name) ELSE \
             CASE i.\"unique\" WHEN 1 THEN 'UNIQUE ' ELSE '' END || 'INDEX ON ' || m.name || ' (' || \
             (SELECT group_concat(coalesce(ii.name, '<expression>'), ', ') FROM pragma_index_info(i.name) ii) \
             || ')' END AS definition \
             FROM sqlite_master m JOIN pragma_index_list(m.name) i",
            lite_tables!()
        ),
    ),
    (
        Kind::View,
        "SELECT name AS name, NULL AS owner, sql AS definition FROM sqlite_master WHERE type = 'view'",
    ),
    (
        Kind::Trigger,
        "SELECT tbl_name || '.' || name AS name, tbl_name AS owner, sql AS definition \
         FROM sqlite_master WHERE type = 'trigger'",
    ),
];

/// An object of `kind` from a row of one of the queries above.
pub fn object<'r, R: Row>(kind: Kind, row: &'r R) -> Result<Object, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    object_at(kind, row, 0)
}

/// An object of `kind` from a row whose `name` column is the `first`.
pub fn object_at<'r, R: Row>(kind: Kind, row: &'r R, first: usize) -> Result<Object, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let mut object = Object::new(kind, row.try_get::<Option<String>, _>(first)?.unwrap_or_default());
    object.table = row.try_get(first + 1)?;
    for (i, column) in row.columns().iter().enumerate().skip(first + 2) {
        if let Some(value) = row.try_get::<Option<String>, _>(i)? {
            object.attrs.insert(column.name().to_owned(), value);
        }
    }
    Ok(object)
}

/// SQLite keeps a table's CHECK constraints and its columns' collations only in the
/// table's `CREATE TABLE` text: read them from `sql` (parsed, so spacing and quoting do not
/// count) into `objects`, which hold the table's columns already. A statement the parser
/// cannot read is kept whole, blanks normalised, as the table's `definition`: compared as
/// text rather than not compared at all.
pub fn sqlite_table_text(objects: &mut Vec<Object>, table: &str, sql: &str) {
    use sqlparser::ast::{ColumnOption, Statement, TableConstraint};
    let parsed = sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::SQLiteDialect {}, sql);
    let Ok([Statement::CreateTable(create)]) = parsed.as_deref() else {
        if let Some(o) = objects.iter_mut().find(|o| o.kind == Kind::Table && o.name == table) {
            o.attrs.insert("definition".to_owned(), sql.to_owned());
        }
        return;
    };
    let mut checks = Vec::new();
    for column in &create.columns {
        for option in &column.options {
            match &option.option {
                ColumnOption::Check(check) => {
                    let name = option.name.as_ref().or(check.name.as_ref());
                    checks.push((name.map(|n| n.value.clone()), check.expr.to_string()));
                }
                ColumnOption::Collation(collation) => {
                    let name = format!("{table}.{}", column.name.value);
                    if let Some(o) = objects.iter_mut().find(|o| o.kind == Kind::Column && o.name == name) {
                        o.attrs.insert("collation".to_owned(), collation.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    for constraint in &create.constraints {
        if let TableConstraint::Check(check) = constraint {
            checks.push((check.name.as_ref().map(|n| n.value.clone()), check.expr.to_string()));
        }
    }
    for (name, expr) in checks {
        let name = name.unwrap_or_else(|| format!("check ({expr})"));
        let mut object = Object::new(Kind::Constraint, format!("{table}.{name}"));
        object.table = Some(table.to_owned());
        object.attrs.insert("definition".to_owned(), format!("CHECK ({expr})"));
        objects.push(object);
    }
}

/// The file's tables with their `CREATE TABLE` text, for [`sqlite_table_text`].
pub const SQLITE_TABLE_TEXT: &str = concat!(
    "SELECT m.name AS name, m.sql AS sql FROM sqlite_master m",
    lite_tables!()
);
#[cfg(test)]
mod tests {
    use super::unqualify;

    #[test]
    fn a_schemas_own_qualifier_is_taken_out_wherever_it_qualifies_a_name() {
        assert_eq!(
            unqualify("CREATE INDEX i ON tenant_1.users USING btree (email)", "tenant_1"),
            "CREATE INDEX i ON users USING btree (email)"
        );
        assert_eq!(
            unqualify("nextval('tenant_1.users_id_seq'::regclass)", "tenant_1"),
            "nextval('users_id_seq'::regclass)"
        );
        assert_eq!(
            unqualify("FOREIGN KEY (a) REFERENCES \"Acme-EU\".accounts(id)", "\"Acme-EU\""),
            "FOREIGN KEY (a) REFERENCES accounts(id)"
        );
        assert_eq!(unqualify("'free'::tenant_1.plan_kind", "tenant_1"), "'free'::plan_kind");
    }

    #[test]
    fn a_name_that_only_ends_in_the_schema_or_another_schema_is_left_alone() {
        assert_eq!(unqualify("xtenant_1.users", "tenant_1"), "xtenant_1.users");
        assert_eq!(unqualify("tenant_10.users", "tenant_1"), "tenant_10.users");
        assert_eq!(unqualify("public.citext", "tenant_1"), "public.citext");
        // The schema `A"B` is not `B`, though its quoted name ends in `"B".`.
        assert_eq!(unqualify("\"A\"\"B\".users", "\"B\""), "\"A\"\"B\".users");
    }

    #[test]
    fn quotes_and_dots_in_a_schema_name_are_matched_as_postgres_prints_them() {
        // quote_ident('we''ird.s') is "we'ird.s"; in a literal its quote is doubled.
        let q = "\"we'ird.s\"";
        assert_eq!(unqualify("ON \"we'ird.s\".users", q), "ON users");
        assert_eq!(
            unqualify("nextval('\"we''ird.s\".users_id_seq'::regclass)", q),
            "nextval('users_id_seq'::regclass)"
        );
        assert_eq!(unqualify("ON \"we'ird\".s.users", q), "ON \"we'ird\".s.users");
    }
}

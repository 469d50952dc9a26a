//! Section 1: storage per session on the freshly built table.

use std::collections::HashMap;

use tokio_postgres::Client;

use crate::BoxError;

pub(crate) async fn run(admin: &Client) -> Result<(), BoxError> {
    println!("## 1. Storage\n");
    let row = admin
        .query_one(
            "SELECT count(*), pg_table_size('auth.user_sessions'), pg_indexes_size('auth.user_sessions') \
             FROM auth.user_sessions",
            &[],
        )
        .await?;
    let (rows, table, indexes): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    let mut per_index = HashMap::new();
    for row in admin
        .query(
            "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index \
             WHERE indrelid = 'auth.user_sessions'::regclass",
            &[],
        )
        .await?
    {
        per_index.insert(row.get::<_, String>(0), row.get::<_, i64>(1));
    }
    println!("({rows} rows, loaded by COPY with every index in place, then VACUUM ANALYZE)\n");
    println!("| what | bytes | bytes per session |");
    println!("|---|---|---|");
    println!(
        "| table (heap, fillfactor 80) | {table} | {:.0} |",
        table as f64 / rows as f64
    );
    let mut names: Vec<_> = per_index.keys().cloned().collect();
    names.sort();
    for name in names {
        println!(
            "| index {name} | {} | {:.0} |",
            per_index[&name],
            per_index[&name] as f64 / rows as f64
        );
    }
    println!(
        "| **table + indexes** | {} | **{:.0}** |\n",
        table + indexes,
        (table + indexes) as f64 / rows as f64
    );
    Ok(())
}

//! The test harness itself: the choice of server, and the sweep of leftover databases, which
//! leaves other runs' databases alone.

mod common;

use std::process::Command;

use common::{LEFTOVER_AGE_SECS, Owner, TEMPLATE_PREFIX, TEST_DB_PREFIX, admin, sweep};
use tokio_postgres::Client;
use uuid::Uuid;

/// A PID no process has: above the largest `pid_max` Linux allows (2^22).
const DEAD_PID: u32 = (1 << 22) + 1;

async fn create(admin: &Client, name: &str, template: bool, comment: &str) {
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    if template {
        admin
            .batch_execute(&format!("ALTER DATABASE {name} IS_TEMPLATE true"))
            .await
            .unwrap();
    }
    admin
        .batch_execute(&format!("COMMENT ON DATABASE {name} IS '{comment}'"))
        .await
        .unwrap();
}

async fn exists(admin: &Client, name: &str) -> bool {
    admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .unwrap()
        .is_some()
}

async fn drop_database(admin: &Client, name: &str) {
    for sql in [
        format!("ALTER DATABASE {name} IS_TEMPLATE false"),
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    ] {
        let _ = admin.batch_execute(&sql).await;
    }
}

#[tokio::test]
async fn the_sweep_drops_only_leftovers_and_never_another_runs_databases() {
    let admin = admin().await;
    let now: i64 = admin
        .query_one("SELECT extract(epoch FROM now())::bigint", &[])
        .await
        .unwrap()
        .get(0);
    let old = now - LEFTOVER_AGE_SECS - 3600;
    let here = Owner::this_process();
    let elsewhere = Owner {
        host: "another-host.invalid".into(),
        pidns: here.pidns.clone(),
        // A PID that is not alive here, as a process of another host's may well be.
        pid: DEAD_PID,
    };
    // Same host name, another PID namespace.
    let other_container = Owner {
        pidns: "1".into(),
        pid: DEAD_PID,
        ..here.clone()
    };
    let gone_from_here = Owner {
        pid: DEAD_PID,
        ..here.clone()
    };
    let tag = Uuid::new_v4().simple().to_string()[..12].to_owned();
    let db = |what: &str| format!("{TEST_DB_PREFIX}{tag}_{what}");
    let template = |what: &str| format!("{TEMPLATE_PREFIX}{tag}{what}");
    let current = template("current");
    // (name, is a template, comment, kept by the sweep)
    let cases = [
        // Another run on another host, or in another container of this host: its PID means
        // nothing here.
        (
            db("foreign"),
            false,
            elsewhere.comment("created", now),
            true,
        ),
        (
            db("container"),
            false,
            other_container.comment("created", now),
            true,
        ),
        // A run of this process: alive.
        (db("mine"), false, here.comment("created", now), true),
        // Another schema's template, in use.
        (
            template("fresh"),
            true,
            elsewhere.comment("used", now - 60),
            true,
        ),
        // The current template, even unused for long.
        (current.clone(), true, elsewhere.comment("used", old), true),
        // Leftovers: a process of this host that is gone; a day old, whoever made it.
        (
            db("gone"),
            false,
            gone_from_here.comment("created", now),
            false,
        ),
        (db("old"), false, elsewhere.comment("created", old), false),
        (template("old"), true, elsewhere.comment("used", old), false),
    ];
    for (name, is_template, comment, _) in &cases {
        create(&admin, name, *is_template, comment).await;
    }

    sweep(&admin, &current).await;

    let mut wrong = Vec::new();
    for (name, _, comment, kept) in &cases {
        if exists(&admin, name).await != *kept {
            wrong.push(format!(
                "{name} ({comment}) was {}",
                if *kept { "dropped" } else { "kept" }
            ));
        }
        drop_database(&admin, name).await;
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// With `DATABASE_URL` set, that is the server, even when nothing answers there: never a
/// silent fallback to a server of our own.
#[test]
fn a_set_database_url_is_used_even_when_nothing_answers_there() {
    let dead = "postgres://postgres@127.0.0.1:1/postgres";
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "print_database_url", "--ignored", "--nocapture"])
        .env("DATABASE_URL", dead)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("database_url={dead}\n")),
        "{stdout}"
    );
    assert!(!stderr.contains("throwaway"), "{stderr}");
}

#[test]
#[ignore = "run by a_set_database_url_is_used_even_when_nothing_answers_there"]
fn print_database_url() {
    println!("database_url={}", common::database_url());
}

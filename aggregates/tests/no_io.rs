//! The aggregates are pure logic: this keeps IO crates out of their direct dependencies.

const IO_CRATES: &[&str] = &[
    "sqlx",
    "tokio",
    "axum",
    "hyper",
    "reqwest",
    "async-nats",
    "postgres-es",
    "tower",
    "tower-http",
    "chrono-tz",
];

#[test]
fn the_aggregates_crate_depends_on_no_io_crate() {
    let manifest = include_str!("../Cargo.toml");
    let dependencies = manifest
        .split("[dependencies]")
        .nth(1)
        .map(|rest| rest.split("\n[").next().unwrap_or(rest))
        .unwrap_or_default();

    let names: Vec<&str> = dependencies
        .lines()
        .filter_map(|line| line.split(['.', '=', ' ']).next())
        .filter(|name| !name.is_empty())
        .collect();

    assert!(!names.is_empty(), "the manifest lists dependencies");
    for name in names {
        assert!(
            !IO_CRATES.contains(&name),
            "the aggregates crate must not depend on {name}"
        );
    }
}

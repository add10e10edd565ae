//! Prints the SqliteDatabase CRD as YAML:
//! `cargo run -p crds --bin crdgen > config/crd/sqlitedatabases.yaml`, and with `--legacy`
//! the variant without CEL rules for servers before 1.25 (`config/crd/legacy/`).

fn main() {
    let legacy = std::env::args().any(|a| a == "--legacy");
    print!("{}", crds::crd_yaml(legacy));
}

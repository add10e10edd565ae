//! Prints the SqliteDatabase CRD as YAML:
//! `cargo run -p crds --bin crdgen > config/crd/sqlitedatabases.yaml`, and with `--legacy`
//! the variant without CEL rules for servers before 1.25 (`config/crd/legacy/`); with
//! `--reference` the configuration reference (`docs/reference.md`).

fn main() {
    if std::env::args().any(|a| a == "--reference") {
        print!("{}", crds::reference_markdown());
        return;
    }
    let legacy = std::env::args().any(|a| a == "--legacy");
    print!("{}", crds::crd_yaml(legacy));
}

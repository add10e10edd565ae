//! The product's images, from their one definition (`images/images.json`): the checked-in
//! `images/Dockerfile` is exactly what it renders, and the same images build here without a
//! registry (docker archives) and run — each image's entrypoint, inside the image's own root
//! filesystem, as its nonroot user — so nothing they need is missing from them.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn images_py(args: &[&str]) -> std::process::Output {
    Command::new("python3")
        .arg(root().join("scripts/images.py"))
        .args(args)
        .output()
        .expect("python3")
}

#[test]
fn the_dockerfile_is_rendered_from_the_image_definition() {
    let o = images_py(&["dockerfile"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let checked_in = std::fs::read_to_string(root().join("images/Dockerfile")).unwrap();
    assert!(
        checked_in == String::from_utf8_lossy(&o.stdout),
        "images/Dockerfile drifted from images/images.json: run `scripts/images.py dockerfile > images/Dockerfile`"
    );
}

#[test]
fn images_build_without_a_registry_and_run_as_nonroot() {
    // chroot needs root; the machines this suite targets run it as root.
    let uid = Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&uid.stdout).trim() != "0"
        && e2e::may_skip("root (to chroot into the image's root filesystem)").unwrap()
    {
        return;
    }
    let bins = e2e::binary("hydrator").unwrap();
    let bin_dir = bins.parent().unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = images_py(&[
        "check",
        "--bin-dir",
        bin_dir.to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    eprintln!("{text}");
    for name in ["operator", "hydrator", "demo"] {
        assert!(
            text.contains(&format!("ghcr.io/sqlite-kube/{name}:"))
                && text.contains("ran in its root filesystem as 65532:65532"),
            "{name} missing:\n{text}"
        );
        // A docker archive: manifest, config, one layer.
        let list = Command::new("tar")
            .arg("tf")
            .arg(out.path().join(format!("{name}.tar")))
            .output()
            .unwrap();
        let files = String::from_utf8_lossy(&list.stdout);
        assert!(
            files.contains("manifest.json") && files.contains("layer.tar"),
            "{files}"
        );
    }
}

#!/usr/bin/env python3
"""The product's images from their one definition, images/images.json.

  scripts/images.py dockerfile                 print images/Dockerfile as rendered from it
  scripts/images.py build [--bin-dir DIR] [--out DIR] [--only NAME]
                                               docker-archive tarballs, built without a registry
  scripts/images.py single --tag T --file SRC:DEST [--file ...] --entrypoint P --out X.tar
                                               one image from given files (the pause image)
  scripts/images.py check [--bin-dir DIR] [--out DIR]
                                               build, then run each image's check inside its own
                                               root filesystem (chroot, as the image's user)

`build` needs no base image: each image is one layer holding the listed binaries, the shared
libraries they load (resolved with ldd on this machine, the same Debian glibc that
distroless/cc-debian12 ships), the CA certificates, /etc/passwd and /etc/group with the
nonroot user, and /tmp. The archives load with `docker load` or
`ctr -n k8s.io images import`. Binaries come from --bin-dir (default target/release).
"""
import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEF = os.path.join(ROOT, "images", "images.json")


def load():
    with open(DEF) as f:
        return json.load(f)


def dockerfile(d):
    user = d["user"]
    v, reg = d["version"], d["registry"]
    names = list(d["images"])
    out = [
        "# GENERATED from images/images.json by `scripts/images.py dockerfile`; edit that file.",
        "# operator/tests/manifests.rs fails when this file and the definition drift apart.",
        "# Build with docker where base images can be pulled:",
    ]
    for n in names:
        out.append(f"#   docker build -f images/Dockerfile --target {n} -t {reg}/{n}:{v} .")
    out += [
        "# Without a registry (this repository's tests, the local cluster): scripts/images.py build",
        "#",
        "# Binaries link glibc dynamically (distroless/cc provides it): the VFS extension must be a",
        "# glibc shared object to load into ordinary applications' SQLite.",
        "",
        "FROM rust:1-bookworm AS build",
        "WORKDIR /src",
        "COPY . .",
        "RUN --mount=type=cache,target=/usr/local/cargo/registry \\",
        "    --mount=type=cache,target=/src/target \\",
        "    cargo build --release --locked -p operator -p hydrator -p vfs -p preload -p sqlitekube-demo \\",
        " && mkdir -p /out \\",
    ]
    srcs = sorted({f[0] for i in d["images"].values() for f in i["files"]})
    out.append(" && cp " + " ".join(f"target/release/{s}" for s in srcs) + " /out/")
    for n, img in d["images"].items():
        out.append("")
        if img.get("comment"):
            out.append(f"# {img['comment']}")
        out.append(f"FROM gcr.io/distroless/cc-debian12:nonroot AS {n}")
        for src, dest in img["files"]:
            out.append(f"COPY --from=build /out/{src} {dest}")
        out.append(f"USER {user}")
        out.append("ENTRYPOINT " + json.dumps(img["entrypoint"]))
    return "\n".join(out) + "\n"


def libs_of(path):
    """The shared libraries `path` loads (absolute paths), the dynamic loader included."""
    o = subprocess.run(["ldd", path], capture_output=True, text=True)
    if o.returncode != 0:
        return []  # static, or not an ELF file
    libs = []
    for line in o.stdout.splitlines():
        parts = line.split()
        if "=>" in parts:
            p = parts[parts.index("=>") + 1]
            if p.startswith("/"):
                libs.append(p)
        elif parts and parts[0].startswith("/"):
            libs.append(parts[0])
    return libs


def add_file(tar, src, dest, mode=None):
    data = open(src, "rb").read()
    info = tarfile.TarInfo(dest.lstrip("/"))
    info.size = len(data)
    info.mode = mode if mode is not None else (os.stat(src).st_mode & 0o777)
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def add_text(tar, dest, text, mode=0o644):
    data = text.encode()
    info = tarfile.TarInfo(dest.lstrip("/"))
    info.size = len(data)
    info.mode = mode
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def add_dir(tar, dest, mode=0o755):
    info = tarfile.TarInfo(dest.lstrip("/"))
    info.type = tarfile.DIRTYPE
    info.mode = mode
    info.mtime = 0
    tar.addfile(info)


def layer(d, img, bin_dir):
    """The image's one layer, as tar bytes (deterministic: sorted, mtime 0, root-owned)."""
    uid, gid = d["user"].split(":")
    entries = {}  # dest -> source
    for src, dest in img["files"]:
        path = os.path.join(bin_dir, src)
        if not os.path.isfile(path):
            sys.exit(f"images: {path} missing (build it, or pass --bin-dir)")
        entries[dest] = path
        for lib in libs_of(path):
            entries.setdefault(lib, os.path.realpath(lib))
    ca = "/etc/ssl/certs/ca-certificates.crt"
    if os.path.isfile(ca):
        entries[ca] = ca
    dirs = set()
    for dest in list(entries) + ["/etc/passwd", "/etc/group", "/tmp/"]:
        parts = dest.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/" + "/".join(parts[:i]))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for dname in sorted(dirs):
            add_dir(tar, dname)
        add_dir(tar, "/tmp", 0o1777)
        add_text(tar, "/etc/passwd", f"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{uid}:{gid}:nonroot:/home/nonroot:/sbin/nologin\n")
        add_text(tar, "/etc/group", f"root:x:0:\nnonroot:x:{gid}:\n")
        for dest in sorted(entries):
            mode = 0o755 if dest in dict((f[1], 1) for f in img["files"]) else None
            add_file(tar, entries[dest], dest, mode)
    return buf.getvalue()


def archive(d, name, img, bin_dir, out_dir, tag=None, path=None):
    """A docker-archive tarball (docker load / ctr images import) for one image."""
    tag = tag or f"{d['registry']}/{name}:{d['version']}"
    lay = layer(d, img, bin_dir)
    diff_id = "sha256:" + hashlib.sha256(lay).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": d["user"],
            "Entrypoint": img["entrypoint"],
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "scripts/images.py build (images/images.json)"}],
    }
    cfg = json.dumps(config, sort_keys=True).encode()
    cfg_name = hashlib.sha256(cfg).hexdigest() + ".json"
    manifest = json.dumps([{"Config": cfg_name, "RepoTags": [tag], "Layers": ["layer.tar"]}]).encode()
    path = path or os.path.join(out_dir, f"{name}.tar")
    with tarfile.open(path, "w") as t:
        for fname, data in [(cfg_name, cfg), ("layer.tar", lay), ("manifest.json", manifest)]:
            info = tarfile.TarInfo(fname)
            info.size = len(data)
            info.mtime = 0
            t.addfile(info, io.BytesIO(data))
    return path, tag, len(lay)


def check(d, name, img, path):
    """Runs the image's check inside its own root filesystem, as its user: the binaries,
    their libraries and the user are all there (needs root for chroot)."""
    work = tempfile.mkdtemp(prefix=f"image-{name}-")
    os.chmod(work, 0o755)  # the image root, traversable by its user
    try:
        with tarfile.open(path) as t:
            lay = t.extractfile("layer.tar").read()
        with tarfile.open(fileobj=io.BytesIO(lay)) as t:
            t.extractall(work, filter="tar")
        c = img["check"]
        chroot = shutil.which("chroot") or "/usr/sbin/chroot"
        cmd = [chroot, f"--userspec={d['user']}", work] + img["entrypoint"] + c["args"]
        o = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/local/bin"})
        text = o.stdout + o.stderr
        if c["expect"] not in text:
            sys.exit(f"images: {name}: `{' '.join(img['entrypoint'] + c['args'])}` in its root filesystem did not print {c['expect']!r}:\n{text}")
        return text.strip().splitlines()[0] if text.strip() else ""
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["dockerfile", "build", "check", "single"])
    ap.add_argument("--tag")
    ap.add_argument("--file", action="append", default=[])
    ap.add_argument("--entrypoint")
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "release"))
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "images"))
    ap.add_argument("--only")
    a = ap.parse_args()
    d = load()
    if a.command == "dockerfile":
        sys.stdout.write(dockerfile(d))
        return
    if a.command == "single":
        files = [f.split(":", 1) for f in a.file]
        img = {"files": [[os.path.abspath(src), dest] for src, dest in files], "entrypoint": [a.entrypoint]}
        path, tag, size = archive(d, "single", img, "/", None, tag=a.tag, path=a.out)
        print(f"{tag}: {path} ({size // 1024} KiB layer)")
        return
    os.makedirs(a.out, exist_ok=True)
    for name, img in d["images"].items():
        if a.only and name != a.only:
            continue
        path, tag, size = archive(d, name, img, a.bin_dir, a.out)
        line = f"{tag}: {path} ({size // 1024} KiB layer)"
        if a.command == "check":
            line += f"; ran in its root filesystem as {d['user']}: {check(d, name, img, path)}"
        print(line)


if __name__ == "__main__":
    main()

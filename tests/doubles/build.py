#!/usr/bin/env python3
"""Build the TEST DOUBLE agent packages (see README.md here) and the test signing key.

Importable (tests) and runnable (Molecule prepare playbooks):

    build.py cloudwatch-agent --version V --out DIR [--arch ARCH] [--sign GNUPGHOME]
    build.py cloudwatch-repo --version V --root DIR [--arch ARCH] [--sign GNUPGHOME]
    build.py codedeploy-agent --version V --out DIR
    build.py signing-key --gnupghome DIR

Packages are built with dpkg-deb from the trees next to this file. Builds are reproducible (fixed
mtimes and SOURCE_DATE_EPOCH), so rebuilding a version gives the same bytes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
EPOCH = 1700000000  # fixed mtime: identical input gives an identical .deb
EXECUTABLES = {"postinst", "prerm", "amazon-cloudwatch-agent-ctl", "start-amazon-cloudwatch-agent",
               "codedeploy-agent"}
SIGNING_UID = "ec2-fleet TEST signing key (not AWS) <tests@ec2fleet.invalid>"


def host_arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], check=True, capture_output=True,
                          text=True).stdout.strip()


def _build(tree: str, out_dir: Path, version: str, arch: str, extra_files: dict[str, str],
           empty_dirs: tuple[str, ...] = ()) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        shutil.copytree(HERE / tree, root)
        control = root / "DEBIAN" / "control.in"
        text = control.read_text().replace("@VERSION@", version).replace("@ARCH@", arch)
        (root / "DEBIAN" / "control").write_text(text)
        control.unlink()
        for rel in empty_dirs:  # git keeps no empty directory, the package needs them
            (root / rel).mkdir(parents=True, exist_ok=True)
        for rel, content in extra_files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        for path in sorted(root.rglob("*"), reverse=True):
            if path.is_dir():
                path.chmod(0o755)
            else:
                path.chmod(0o755 if path.name in EXECUTABLES else 0o644)
            os.utime(path, (EPOCH, EPOCH), follow_symlinks=False)
        os.utime(root, (EPOCH, EPOCH))
        deb = out_dir / f"{text.split('Package: ')[1].split()[0]}_{version}_{arch}.deb"
        env = dict(os.environ, SOURCE_DATE_EPOCH=str(EPOCH))
        subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(deb)],
                       check=True, capture_output=True, env=env)
    return deb


def build_cloudwatch_agent(out_dir: Path, version: str, arch: str | None = None) -> Path:
    """The CloudWatch agent double, for this host's architecture unless told otherwise."""
    return _build("amazon-cloudwatch-agent", out_dir, version, arch or host_arch(),
                  {"opt/aws/amazon-cloudwatch-agent/bin/CWAGENT_VERSION": version + "\n"},
                  ("opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.d",
                   "opt/aws/amazon-cloudwatch-agent/logs"))


def build_codedeploy_agent(out_dir: Path, version: str) -> Path:
    """The CodeDeploy agent double (Architecture: all, like the real package)."""
    return _build("codedeploy-agent", out_dir, version, "all",
                  {"opt/codedeploy-agent/.version": f"agent_version: TEST_DOUBLE_{version}_deb\n"})


def _gpg(gnupghome: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    # gpg-agent's socket lives in the home, and a Unix socket path has at most 107 bytes: a checkout
    # in a deep folder (a CI workspace) makes key generation fail with "No agent running". gpg
    # names sockets after the path it is given, so it gets a short link to the home instead.
    with tempfile.TemporaryDirectory(prefix="ec2fleet-gpg-", dir="/tmp") as short:
        home = Path(short) / "h"
        home.symlink_to(Path(gnupghome).resolve())
        try:
            return subprocess.run(["gpg", "--homedir", str(home), "--batch", "--no-tty", *args],
                                  check=True, capture_output=True, **kwargs)
        except subprocess.CalledProcessError as exc:
            err = exc.stderr if isinstance(exc.stderr, str) else (exc.stderr or b"").decode(errors="replace")
            raise SystemExit(f"gpg {' '.join(args[-2:])} failed: {err.strip().splitlines()[-1:] or exc}") from None
        finally:
            # Key generation and signing start a gpg-agent for this home: stop it, so a test run or
            # the local fleet leaves no process behind.
            subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True)


def make_signing_key(gnupghome: Path) -> tuple[str, Path]:
    """A fresh passphrase-less signing key in GNUPGHOME: (fingerprint, armored public key path).
    Also writes GNUPGHOME/public.asc and GNUPGHOME/fingerprint for playbooks to read."""
    gnupghome = Path(gnupghome)
    gnupghome.mkdir(parents=True, exist_ok=True, mode=0o700)
    public = gnupghome / "public.asc"
    if not public.exists():
        _gpg(gnupghome, "--passphrase", "", "--quick-gen-key", SIGNING_UID, "ed25519", "sign", "never")
        public.write_bytes(_gpg(gnupghome, "--armor", "--export").stdout)
        (gnupghome / "fingerprint").write_text(fingerprint(gnupghome) + "\n")
    return fingerprint(gnupghome), public


def fingerprint(gnupghome: Path) -> str:
    colons = _gpg(Path(gnupghome), "--with-colons", "--list-keys", text=True).stdout
    return next(line.split(":")[9] for line in colons.splitlines() if line.startswith("fpr:"))


def sign(gnupghome: Path, path: Path) -> Path:
    """Detached binary signature PATH.sig, as AWS publishes next to its packages."""
    sig = Path(str(path) + ".sig")
    sig.unlink(missing_ok=True)
    _gpg(Path(gnupghome), "--detach-sign", "--output", str(sig), str(path))
    return sig


def publish_cloudwatch_agent(root: Path, version: str, gnupghome: Path | None, arch: str | None = None) -> Path:
    """Lay the double out like AWS's bucket: ROOT/debian/<arch>/<version>/amazon-cloudwatch-agent.deb
    (+ .sig signed with the test key in GNUPGHOME when given). Returns the .deb path."""
    arch = arch or host_arch()
    target = Path(root) / "debian" / arch / version
    built = build_cloudwatch_agent(target, version, arch)
    deb = built.with_name("amazon-cloudwatch-agent.deb")
    built.replace(deb)
    if gnupghome:
        sign(gnupghome, deb)
    return deb


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    cw = sub.add_parser("cloudwatch-agent")
    cw.add_argument("--version", required=True)
    cw.add_argument("--out", required=True, type=Path)
    cw.add_argument("--arch")
    cw.add_argument("--sign", type=Path, metavar="GNUPGHOME")
    cd = sub.add_parser("codedeploy-agent")
    cd.add_argument("--version", required=True)
    cd.add_argument("--out", required=True, type=Path)
    repo = sub.add_parser("cloudwatch-repo", help="the double laid out like the agent's S3 bucket")
    repo.add_argument("--version", required=True)
    repo.add_argument("--root", required=True, type=Path)
    repo.add_argument("--arch")
    repo.add_argument("--sign", type=Path, metavar="GNUPGHOME")
    key = sub.add_parser("signing-key")
    key.add_argument("--gnupghome", required=True, type=Path)
    args = parser.parse_args(argv)
    if args.what == "cloudwatch-agent":
        deb = build_cloudwatch_agent(args.out, args.version, args.arch)
        print(deb)
        if args.sign:
            print(sign(args.sign, deb))
    elif args.what == "cloudwatch-repo":
        print(publish_cloudwatch_agent(args.root, args.version, args.sign, args.arch))
    elif args.what == "codedeploy-agent":
        print(build_codedeploy_agent(args.out, args.version))
    else:
        fpr, public = make_signing_key(args.gnupghome)
        print(fpr)
        print(public)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

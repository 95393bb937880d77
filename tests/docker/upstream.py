"""Run docker-py's own integration suite (tests/integration of a docker/docker-py checkout) against Atoll.

The upstream code is never part of this repository: PyPI's sdist of `docker` carries no tests, so the
checkout is a manual input (``scripts/dockerpy-suite /path/to/docker-py``). This module:

1. starts a loopback ``docker-registry`` and pushes stand-ins for the Docker Hub images the suite pulls
   (``alpine:3.10``, ``alpine:latest``, ``busybox:latest``, ``hello-world:latest``): the host's static
   busybox as the root filesystem, each with a marker file so they are different images;
2. starts an isolated ``atoll up`` (tests/e2e/cloud.py: temp dirs, the run's prefixes) whose docker.io
   mirror is that registry, so ``pull alpine:3.10`` really pulls;
3. runs pytest on the chosen files of the checkout with ``DOCKER_HOST`` set and every entry of
   ``upstream_excluded.txt`` deselected (each with its reason), with the checkout's own ``docker``
   package first on the path;
4. prints the counts, the JSON summary last.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from atoll.agent.images.starter import busybox_rootfs_tar
from tests.e2e.cloud import Cloud
from tests.images import factory
from tests.registry.server import Registry, running_registry, upload

EXCLUDED = Path(__file__).with_name("upstream_excluded.txt")
DEFAULT_FILES = [
    "api_container_test.py",
    "api_exec_test.py",
    "api_image_test.py",
    "api_network_test.py",
    "api_volume_test.py",
    "models_containers_test.py",
    "models_images_test.py",
    "models_networks_test.py",
    "models_volumes_test.py",
]
HELLO = b'#!/bin/sh\necho "Hello from Docker!"\n'
# Alpine's own accounts (the suite execs as "postgres") and directories it relies on (/var/opt).
ALPINE_PASSWD = b"""root:x:0:0:root:/root:/bin/ash
bin:x:1:1:bin:/bin:/sbin/nologin
daemon:x:2:2:daemon:/sbin:/sbin/nologin
adm:x:3:4:adm:/var/adm:/sbin/nologin
lp:x:4:7:lp:/var/spool/lpd:/sbin/nologin
mail:x:8:12:mail:/var/mail:/sbin/nologin
operator:x:11:0:operator:/root:/sbin/nologin
postgres:x:70:70::/var/lib/postgresql:/bin/sh
nobody:x:65534:65534:nobody:/:/sbin/nologin
"""
ALPINE_GROUP = b"""root:x:0:root
bin:x:1:root,bin,daemon
daemon:x:2:root,bin,daemon
adm:x:4:root,adm,daemon
wheel:x:10:root
postgres:x:70:
nobody:x:65534:
"""


@dataclass(frozen=True)
class Exclusion:
    nodeid: str
    reason: str


def read_exclusions(path: Path = EXCLUDED) -> list[Exclusion]:
    """Lines ``<node id prefix> -- <reason>``; ``#`` comments and blank lines are skipped."""
    out = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        nodeid, sep, reason = line.partition(" -- ")
        if not sep or not reason.strip() or "::" not in nodeid:
            raise ValueError(f"{path}:{number}: expected '<file>::<test> -- <reason>', got {line!r}")
        out.append(Exclusion(nodeid.strip(), reason.strip()))
    return out


def stand_ins(work: Path) -> dict[str, factory.Image]:
    """The Docker Hub images the suite pulls, built from the host's static busybox."""
    rootfs = work / "busybox-rootfs.tar"
    busybox_rootfs_tar(rootfs)
    base = rootfs.read_bytes()
    sh = ["/bin/sh"]
    env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]

    def image(cmd: list[str], *members: factory.Member) -> factory.Image:
        return factory.Image(layers=[base, factory.layer(*members)], cmd=cmd, env=env)

    def alpine(release: bytes) -> factory.Image:
        return image(
            sh,
            factory.file("etc/alpine-release", release),
            factory.file("etc/passwd", ALPINE_PASSWD),
            factory.file("etc/group", ALPINE_GROUP),
            factory.directory("var"),
            factory.directory("var/opt"),
            factory.directory("var/lib"),
            factory.directory("var/lib/postgresql", uid=70, gid=70),
        )

    return {
        "library/alpine:3.10": alpine(b"3.10.9\n"),
        "library/alpine:latest": alpine(b"3.21.0\n"),
        "library/busybox:latest": image(["sh"], factory.file("etc/busybox-stand-in", b"1\n")),
        "library/hello-world:latest": image(["/hello"], factory.file("hello", HELLO, mode=0o755)),
    }


def push_stand_ins(reg: Registry, work: Path) -> None:
    for ref, img in stand_ins(work).items():
        repo, _, tag = ref.partition(":")
        upload(reg, repo, tag, img, docker=True)


def junit_counts(path: Path) -> dict[str, int]:
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in suites:
        for key in counts:
            counts[key] += int(suite.get(key, "0"))
    return counts


def failed_ids(path: Path) -> list[str]:
    out = []
    for case in ET.parse(path).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            out.append(f"{case.get('classname')}::{case.get('name')}")
    return out


def run_suite(checkout: Path, files: list[str], extra: list[str], work: Path) -> dict[str, object]:
    exclusions = read_exclusions()
    junit = work / "junit.xml"
    with running_registry(work / "registry") as reg:
        push_stand_ins(reg, work)
        cloud = Cloud(
            base=work / "cloud",
            extra_env={"ATOLL_REGISTRY_MIRRORS": f"docker.io={reg.url}"},
        )
        cloud.base.mkdir()
        cloud.start()
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
            env.update(
                DOCKER_HOST=cloud.docker_host,
                DOCKER_CONFIG=str(work / "docker-config"),
                PYTHONPATH=str(checkout),
                TMPDIR=str(work / "tmp"),
            )
            (work / "tmp").mkdir()
            args = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE"]
            args += [f"--junitxml={junit}", "-o", "junit_family=xunit2", "--timeout=120"]
            args += [f"--deselect={e.nodeid}" for e in exclusions]
            args += [f"tests/integration/{f}" for f in files] + extra
            proc = subprocess.run(args, cwd=checkout, env=env, stdout=subprocess.PIPE, text=True)
            sys.stdout.write(proc.stdout)
        finally:
            cloud.teardown()
    counts = junit_counts(junit) if junit.exists() else {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failed = failed_ids(junit) if junit.exists() else []
    ran = counts["tests"] - counts["skipped"]
    failed_n = counts["failures"] + counts["errors"]
    # Exclusion lines may name a whole class: count the tests pytest deselected.
    deselected = re.search(r"(\d+) deselected", proc.stdout)
    return {
        "ran": ran,
        "passed": ran - failed_n,
        "failed": failed_n,
        "skipped": counts["skipped"],
        "excluded": int(deselected.group(1)) if deselected else 0,
        "failed_tests": failed,
        "pytest_exit": proc.returncode,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("checkout", type=Path, help="a docker/docker-py checkout (its tests/integration)")
    parser.add_argument("--files", nargs="*", default=DEFAULT_FILES, help="files under tests/integration")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    opts = parser.parse_args()
    checkout = opts.checkout.resolve()
    if not (checkout / "tests" / "integration").is_dir():
        parser.error(f"{checkout} has no tests/integration")
    with tempfile.TemporaryDirectory(prefix="atoll-dockerpy-") as tmp:
        result = run_suite(checkout, opts.files, opts.pytest_args, Path(tmp))
    for name in ("ran", "passed", "failed", "skipped", "excluded"):
        print(f"{name}: {result[name]}")
    for test in result["failed_tests"]:  # type: ignore[attr-defined]
        print(f"FAILED {test}")
    print(json.dumps(result))
    return 0 if result["failed"] == 0 and result["ran"] else 1


if __name__ == "__main__":
    sys.exit(main())

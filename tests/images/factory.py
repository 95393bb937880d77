"""Build image archives in memory for the image store tests: layer tars, docker save, OCI layouts.

Archives are kept as ordered ``{member name: bytes}`` dicts until the last moment, so a test can break
exactly one thing (drop a blob, corrupt a config) before packing them as a tar or a directory.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MTIME = 1_700_000_000

Member = Callable[[tarfile.TarFile], None]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def hexof(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _info(
    name: str, kind: bytes, mode: int, uid: int = 0, gid: int = 0, mtime: int = MTIME
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid, info.gid = uid, gid
    info.mtime = mtime
    return info


def file(
    name: str,
    data: bytes = b"",
    *,
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    mtime: int = MTIME,
    xattrs: dict[str, str] | None = None,
) -> Member:
    def add(tar: tarfile.TarFile) -> None:
        info = _info(name, tarfile.REGTYPE, mode, uid, gid, mtime)
        info.size = len(data)
        if xattrs:
            info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
        tar.addfile(info, io.BytesIO(data))

    return add


def directory(name: str, *, mode: int = 0o755, uid: int = 0, gid: int = 0, mtime: int = MTIME) -> Member:
    return lambda tar: tar.addfile(_info(name, tarfile.DIRTYPE, mode, uid, gid, mtime))


def symlink(name: str, target: str, *, uid: int = 0, gid: int = 0) -> Member:
    def add(tar: tarfile.TarFile) -> None:
        info = _info(name, tarfile.SYMTYPE, 0o777, uid, gid)
        info.linkname = target
        tar.addfile(info)

    return add


def hardlink(name: str, target: str) -> Member:
    def add(tar: tarfile.TarFile) -> None:
        info = _info(name, tarfile.LNKTYPE, 0o644)
        info.linkname = target
        tar.addfile(info)

    return add


def fifo(name: str, *, mode: int = 0o640) -> Member:
    return lambda tar: tar.addfile(_info(name, tarfile.FIFOTYPE, mode))


def chardev(name: str, major: int = 1, minor: int = 3) -> Member:
    def add(tar: tarfile.TarFile) -> None:
        info = _info(name, tarfile.CHRTYPE, 0o666)
        info.devmajor, info.devminor = major, minor
        tar.addfile(info)

    return add


def whiteout(path: str) -> Member:
    head, _, leaf = path.rpartition("/")
    return file(f"{head}/.wh.{leaf}" if head else f".wh.{leaf}")


def opaque(dirname: str) -> Member:
    return file(f"{dirname}/.wh..wh..opq")


def layer(*members: Member) -> bytes:
    """An uncompressed layer tar (PAX format, as Docker writes them)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for add in members:
            add(tar)
    return buf.getvalue()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1, mtime=0)


@dataclass
class Image:
    layers: list[bytes]
    tags: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=lambda: ["/bin/sh"])
    env: list[str] = field(default_factory=lambda: ["PATH=/usr/bin:/bin"])
    created: str = "2024-01-02T03:04:05Z"
    extra_config: dict[str, Any] = field(default_factory=dict)

    @property
    def diff_ids(self) -> list[str]:
        return [sha256(t) for t in self.layers]

    def config_json(self) -> bytes:
        doc: dict[str, Any] = {
            "architecture": "amd64",
            "os": "linux",
            "created": self.created,
            "config": {"Cmd": self.cmd, "Env": self.env, "WorkingDir": "/", "Labels": {"a": "b"}},
            "rootfs": {"type": "layers", "diff_ids": self.diff_ids},
        }
        doc.update(self.extra_config)
        return json.dumps(doc).encode()

    @property
    def id(self) -> str:
        return sha256(self.config_json())


def docker_save(*images: Image) -> dict[str, bytes]:
    """Pre-25 ``docker save``: ``<hex>.json`` configs, ``<id>/layer.tar`` uncompressed layers."""
    members: dict[str, bytes] = {}
    manifest = []
    for image in images:
        config = image.config_json()
        members[f"{hexof(config)}.json"] = config
        names = []
        for tar in image.layers:
            name = f"{hexof(tar + b'v1')}/layer.tar"
            members[name] = tar
            names.append(name)
        manifest.append({"Config": f"{hexof(config)}.json", "RepoTags": image.tags or None, "Layers": names})
    members["manifest.json"] = json.dumps(manifest).encode()
    members["repositories"] = b"{}"
    return members


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def descriptor(media_type: str, blob: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(blob), "size": len(blob), **extra}


def oci_manifest(
    members: dict[str, bytes], image: Image, *, compress: Callable[[bytes], bytes] = gz, layer_type: str = ""
) -> bytes:
    """Add ``image``'s config and layers as blobs; return its manifest blob (also added)."""
    config = image.config_json()
    members[f"blobs/sha256/{hexof(config)}"] = config
    layers = []
    for tar in image.layers:
        blob = compress(tar)
        members[f"blobs/sha256/{hexof(blob)}"] = blob
        layers.append(descriptor(layer_type or OCI_GZIP_LAYER, blob))
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, config),
            "layers": layers,
        }
    ).encode()
    members[f"blobs/sha256/{hexof(manifest)}"] = manifest
    return manifest


def oci_layout(*images: Image, full_names: bool = False, layer_type: str = "") -> dict[str, bytes]:
    """An OCI image layout; each tag becomes one index.json entry (ref.name = the tag part)."""
    members: dict[str, bytes] = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}'}
    entries = []
    for image in images:
        manifest = oci_manifest(members, image, layer_type=layer_type)
        for tag in image.tags or [""]:
            annotations = {}
            if tag:
                annotations["org.opencontainers.image.ref.name"] = tag.rpartition(":")[2]
                if full_names:
                    annotations["io.containerd.image.name"] = tag
            entries.append(descriptor(OCI_MANIFEST, manifest, annotations=annotations))
    members["index.json"] = json.dumps({"schemaVersion": 2, "manifests": entries}).encode()
    return members


def pack(members: dict[str, bytes], *, symlinks: dict[str, str] | None = None) -> bytes:
    """Members as a tar archive (ustar, like ``docker save``)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members.items():
            info = _info(name, tarfile.REGTYPE, 0o644)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = _info(name, tarfile.SYMTYPE, 0o777)
            info.linkname = target
            tar.addfile(info)
    return buf.getvalue()


def unpack_to(members: dict[str, bytes], root: Path) -> Path:
    for name, data in members.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


async def chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def tree(root: Path) -> dict[str, tuple[int, int, int, str]]:
    """Every path under ``root`` with (mode, uid, size, link target): to compare before and after."""
    out: dict[str, tuple[int, int, int, str]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        link = str(path.readlink()) if path.is_symlink() else ""
        out[str(path.relative_to(root))] = (st.st_mode, st.st_uid, st.st_size, link)
    return out

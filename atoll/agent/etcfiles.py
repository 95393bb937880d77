"""The small files every container expects in /etc, owned by the host rather than the image.

Like Docker, they are bind-mounted from the instance directory, so the image's own copies stay
untouched and the network layer can rewrite them later.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

HOST_RESOLV = Path("/etc/resolv.conf")


def _resolv_conf() -> str:
    """The host's resolver lines minus loopback servers, which mean nothing inside a netns."""
    try:
        lines = HOST_RESOLV.read_text().splitlines()
    except OSError:
        return ""
    keep = []
    for line in lines:
        parts = line.split()
        if (
            parts[:1] == ["nameserver"]
            and len(parts) > 1
            and (parts[1].startswith("127.") or parts[1] == "::1")
        ):
            continue
        keep.append(line)
    return "\n".join(keep) + "\n"


def write_etc_files(
    etc_dir: Path, hostname: str, *, addresses: Sequence[str] = (), nameservers: Sequence[str] = ()
) -> list[tuple[str, Path]]:
    """Write the files and return (container path, host path) pairs to bind-mount.

    ``addresses`` are the instance's own (its hostname resolves to them, as in Docker; 127.0.1.1
    without any); ``nameservers`` replace the host's resolvers when given (a subnet's DNS servers)."""
    etc_dir.mkdir(parents=True, exist_ok=True)
    own = "".join(f"{a}\t{hostname}\n" for a in addresses) or f"127.0.1.1\t{hostname}\n"
    resolv = "".join(f"nameserver {n}\n" for n in nameservers) if nameservers else _resolv_conf()
    files = {
        "/etc/hostname": f"{hostname}\n",
        "/etc/hosts": f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{own}",
        "/etc/resolv.conf": resolv,
    }
    mounts = []
    for target, content in files.items():
        path = etc_dir / Path(target).name
        path.write_text(content)
        mounts.append((target, path))
    return mounts

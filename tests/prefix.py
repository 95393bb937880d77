"""One prefix per test run. Everything a test makes in the kernel (cgroups, links, netns, nft tables)
or on disk carries it, so the leak check judges only this run, even while another run is going."""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

RUN_PREFIX = os.environ.setdefault("ATOLL_TEST_RUN", f"atoll-test-{secrets.token_hex(3)}")

NET_PREFIX = "t" + hashlib.sha256(RUN_PREFIX.encode()).hexdigest()[:3]
"""Starts every link name the run's dataplanes make. Four characters, so each dataplane can add one of
its own (prefixes have at most five: interface names have at most 15 characters)."""
NFT_TABLE = RUN_PREFIX.replace("-", "_")
"""Starts the name of every nftables table of the run's dataplanes."""

os.environ.setdefault("ATOLL_BPF_CACHE", str(Path(__file__).resolve().parent.parent / "build" / "bpf"))
"""The fast path's eBPF object is built into the checkout's ``build/`` (a build artifact, like the venv;
``make clean`` removes it), not into the system's /var/cache."""

"""One prefix per test run. Everything a test makes in the kernel (cgroups, links, netns, nft tables)
or on disk carries it, so the leak check judges only this run, even while another run is going."""

from __future__ import annotations

import os
import secrets

RUN_PREFIX = os.environ.setdefault("ATOLL_TEST_RUN", f"atoll-test-{secrets.token_hex(3)}")

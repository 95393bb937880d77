"""``atoll join``: trust the controller by the fingerprint in the token, then trade the token for a
host certificate.

The CA is fetched over TLS without verification (there is nothing to verify against yet) and accepted
only if its SHA-256 matches the token's fingerprint; from then on the controller is verified against
that CA and must present the name ``controller.atoll``. The key never leaves this host: only a CSR is
sent.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import httpx

from atoll.agent.cluster.membership import Membership, cluster_dir, identity, save
from atoll.model.errors import Conflict, InvalidInput, RuntimeFailure, Unauthorized
from atoll.wire import pki, tokens

TIMEOUT = 15.0


def fetch_ca(address: str) -> bytes:
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    try:
        response = httpx.get(f"https://{address}/join/ca", verify=insecure, timeout=TIMEOUT)
    except httpx.HTTPError as e:
        raise RuntimeFailure(f"controller {address}: cannot reach it: {e}") from e
    if response.status_code != 200:
        raise RuntimeFailure(f"controller {address}: GET /join/ca answered {response.status_code}")
    return response.content


def join(token_text: str, data_dir: Path, *, listen: str, advertise: str = "", name: str = "") -> Membership:
    token = tokens.decode(token_text)
    if (cluster_dir(data_dir) / "membership.json").exists():
        raise Conflict(f"data_dir: {data_dir} already belongs to a cluster; run `atoll agent` instead")
    ca_pem = fetch_ca(token.address)
    try:
        seen = pki.fingerprint(ca_pem)
    except ValueError as e:
        raise Unauthorized(f"controller {token.address}: did not send a certificate: {e}") from e
    if seen != token.ca_fingerprint:
        raise Unauthorized(
            f"controller {token.address}: its CA has fingerprint {seen}, the token says "
            f"{token.ca_fingerprint}: refusing to join (wrong address, or someone in the middle)"
        )
    ident = identity(data_dir)
    ident.key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_pem = pki.new_key_pem()
    trusted = ssl.create_default_context(cadata=ca_pem.decode())
    try:
        with httpx.Client(verify=trusted, timeout=TIMEOUT) as client:
            response = client.post(
                f"https://{token.address}/join",
                json={
                    "secret": token.secret,
                    "csr": pki.make_csr(key_pem, "joining").decode(),
                    "name": name or socket.gethostname(),
                    "address": advertise or listen,
                },
                extensions={"sni_hostname": pki.CONTROLLER_NAME},
            )
    except httpx.HTTPError as e:
        raise RuntimeFailure(f"controller {token.address}: join failed: {e}") from e
    if response.status_code != 200:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:200]
        cls = Unauthorized if response.status_code in (401, 403) else InvalidInput
        raise cls(f"controller {token.address} refused the join: {message}")
    answer = response.json()
    ident.write(key_pem, answer["certificate"].encode(), ca_pem)
    membership = Membership(
        host_id=answer["host_id"], controller=token.address, listen=listen, advertise=advertise or listen
    )
    save(data_dir, membership)
    return membership

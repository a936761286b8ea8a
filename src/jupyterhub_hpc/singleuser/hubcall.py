"""What the job's programs need to call their hub: the TLS context and one JSON ``POST``.

Standard library only, as all of :mod:`jupyterhub_hpc.singleuser`: the launcher, the server's
extension (:mod:`jupyterhub_hpc.lab.hub`) and the container init
(:mod:`jupyterhub_hpc.containers.report`) use it.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from typing import Any

__all__ = ["HubRefused", "hub_ssl_context", "post_json"]


class HubRefused(Exception):
    """The hub answered with an HTTP error: ``status`` and the start of its ``detail``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status} {detail}")
        self.status = status
        self.detail = detail


def hub_ssl_context() -> ssl.SSLContext | None:
    """The hub's CA and this server's certificate under ``internal_ssl`` (the variables
    JupyterHub sets for the server); None when the hub is plain HTTP."""
    ca = os.environ.get("JUPYTERHUB_SSL_CLIENT_CA")
    if not ca:
        return None
    ctx = ssl.create_default_context(cafile=ca)
    cert, key = os.environ.get("JUPYTERHUB_SSL_CERTFILE"), os.environ.get("JUPYTERHUB_SSL_KEYFILE")
    if cert and key:
        ctx.load_cert_chain(cert, key)
    return ctx


def post_json(
    url: str,
    token: str,
    body: Any,
    *,
    timeout: float = 10.0,
    context: ssl.SSLContext | None = None,
) -> Any:
    """POST ``body`` as JSON with the server's token, once; the decoded answer. Raises
    :class:`HubRefused` for an HTTP error and ``OSError`` when the hub cannot be reached."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            text = response.read()
    except urllib.error.HTTPError as exc:
        raise HubRefused(exc.code, exc.read().decode(errors="replace")[:300]) from None
    return json.loads(text) if text else None

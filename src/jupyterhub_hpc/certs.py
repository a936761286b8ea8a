"""JupyterHub's ``internal_ssl`` for batch jobs: the server's certificates reach the job.

With ``c.JupyterHub.internal_ssl = True`` the hub makes a key and certificate for
each server (``Spawner.create_certs``) in its own ``internal_certs_location``. A
batch job runs on another node, as another user, so it cannot read them there,
and a hub that is not root cannot copy them into the user's home.

So the hub sends their **contents** with the job (:func:`job_certificates`, this
module, the hub's half):

- the private key, base64 on one line, in ``JUPYTERHUB_HPC_SSL_KEY``: a secret
  variable (``secret_env_names``), so it travels like the API token, in the
  submit command's environment only (never a command line or the script);
- the certificate and the internal CA certificate (public) as quoted exports
  in the job script.

In the job, the launcher writes the three files into a new private directory
on the node (:func:`jupyterhub_hpc.singleuser.certs.write_job_certificates`, the
job's half, which names the variables). The hub and the proxy connect to the
server with HTTPS and check its certificate against the internal CA:
``Spawner.ssl_alt_names`` must name the compute nodes as the hub reaches them
(``node_address``), e.g. ``["DNS:*.nodes.example.org"]``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping

from .singleuser.certs import SSL_CA_ENV, SSL_CERT_ENV, SSL_KEY_ENV

__all__ = ["SSL_CA_ENV", "SSL_CERT_ENV", "SSL_KEY_ENV", "SSL_PATH_ENVS", "job_certificates"]

#: JupyterHub's variables naming the certificate files (hub-side paths: useless in a job)
SSL_PATH_ENVS = ("JUPYTERHUB_SSL_KEYFILE", "JUPYTERHUB_SSL_CERTFILE", "JUPYTERHUB_SSL_CLIENT_CA")


def job_certificates(cert_paths: Mapping[str, str]) -> dict[str, str]:
    """The variables carrying a server's key, certificate and CA to its job, read
    from the hub's files (``Spawner.cert_paths``: keyfile, certfile, cafile)."""

    def read(name: str) -> bytes:
        with open(cert_paths[name], "rb") as handle:
            return handle.read()

    return {
        SSL_KEY_ENV: base64.b64encode(read("keyfile")).decode(),
        SSL_CERT_ENV: read("certfile").decode(),
        SSL_CA_ENV: read("cafile").decode(),
    }

"""The job's half of ``internal_ssl``: write the server's certificates the job carries.

The hub sends a server's key, certificate and internal CA with its job
(:func:`jupyterhub_hpc.certs.job_certificates`): the private key base64 on one
line in ``JUPYTERHUB_HPC_SSL_KEY`` (a secret variable: the submit command's
environment only), the certificate and the CA certificate (public) as quoted
exports in the job script.

In the job, the launcher writes the three files into a new private directory on
the node (mode 0700, files 0600; :func:`write_job_certificates`), points
``JUPYTERHUB_SSL_KEYFILE``/``CERTFILE``/``CLIENT_CA`` at them and removes the
contents from the environment before starting the server.

Standard library only, like everything in :mod:`jupyterhub_hpc.singleuser`.
"""

from __future__ import annotations

import base64
import os
from collections.abc import MutableMapping

__all__ = ["SSL_CA_ENV", "SSL_CERT_ENV", "SSL_KEY_ENV", "write_job_certificates"]

SSL_KEY_ENV = "JUPYTERHUB_HPC_SSL_KEY"
SSL_CERT_ENV = "JUPYTERHUB_HPC_SSL_CERT"
SSL_CA_ENV = "JUPYTERHUB_HPC_SSL_CA"


def write_job_certificates(env: MutableMapping[str, str], directory: str) -> bool:
    """In the job: write the certificates ``env`` carries into ``directory`` (which
    must be private), point JupyterHub's variables at them and drop the contents.
    False (nothing done) when the job carries none."""
    if SSL_KEY_ENV not in env:
        return False
    files = {
        "JUPYTERHUB_SSL_KEYFILE": ("server.key", base64.b64decode(env.pop(SSL_KEY_ENV))),
        "JUPYTERHUB_SSL_CERTFILE": ("server.crt", env.pop(SSL_CERT_ENV, "").encode()),
        "JUPYTERHUB_SSL_CLIENT_CA": ("ca.crt", env.pop(SSL_CA_ENV, "").encode()),
    }
    for variable, (name, content) in files.items():
        if not content:
            raise ValueError(f"the job carries no {name}")
        path = os.path.join(directory, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        env[variable] = path
    return True

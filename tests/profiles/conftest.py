"""Profile tests: exercise this checkout's ``src/`` (also when the venv holds a non-editable copy),
and share the recorded scheduler outputs and a site configuration shaped like this machine's Slurm."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

DATA = Path(__file__).parent / "data"


def data(name: str) -> str:
    return (DATA / name).read_text()


#: what SlurmSpawner passes as the admin's base (its traits' defaults)
BASE: dict[str, Any] = {
    "job_name": "jupyterhub",
    "partition": None,
    "account": None,
    "qos": None,
    "reservation": None,
    "constraint": None,
    "cpus": 1,
    "memory": "1G",
    "walltime": "08:00:00",
    "gpus": 0,
    "gpu_type": None,
}

#: the three-profile site of docs/profiles.md, sized for the test machine (8 CPUs, 8000 MB, 2 GPUs)
SITE_PROFILES: list[dict[str, Any]] = [
    {
        "display_name": "CPU (interactive)",
        "slug": "cpu",
        "description": "Up to 4 cores on the debug partition.",
        "default": True,
        "spawner_override": {"partition": "debug"},
        "profile_options": {
            "cpus": {"type": "integer", "display_name": "CPU cores", "job_field": "cpus", "min": 1, "max": 4},
            "memory": {
                "type": "memory",
                "display_name": "Memory",
                "min": "256M",
                "max": "2G",
                "default": "400M",
            },
            "walltime": {
                "type": "walltime",
                "display_name": "Time limit",
                "max": "08:00:00",
                "default": "01:00:00",
            },
            "env": {
                "type": "environment",
                "display_name": "Environment",
                "choices": {
                    "base": {"display_name": "Base Python", "default": True},
                    "ml": {
                        "display_name": "Machine learning",
                        "spawner_override": {"environment": {"HPC_PROFILE_ENV": "ml"}},
                    },
                },
                "unlisted_choice": {
                    "enabled": True,
                    "display_name": "Conda environment name",
                    "validation_regex": "[a-z][a-z0-9_-]{0,31}",
                    "validation_message": "lower-case letters, digits, - and _",
                    "spawner_override": {"environment": {"HPC_PROFILE_ENV": "{value}"}},
                },
            },
        },
    },
    {
        "display_name": "Large memory (short)",
        "slug": "bigmem",
        "description": "More memory, at most 5 minutes (partition short).",
        "spawner_override": {"partition": "short"},
        "profile_options": {
            "memory": {
                "type": "memory",
                "display_name": "Memory",
                "min": "256M",
                "max": "7G",
                "default": "1G",
            },
            "walltime": {"type": "walltime", "display_name": "Time limit", "default": "00:04:00"},
        },
    },
    {
        "display_name": "GPU",
        "slug": "gpu",
        "description": "Fake Tesla GPUs on the gpu partition (at most 4 hours).",
        "spawner_override": {"partition": "gpu"},
        "profile_options": {
            "gpus": {
                "type": "integer",
                "display_name": "GPUs",
                "job_field": "gpus",
                "min": 0,
                "max": 2,
                "default": 1,
            },
            "gpu_type": {
                "type": "choice",
                "display_name": "GPU type",
                "job_field": "gpu_type",
                "when": {"gpus": {"min": 1}},
                "choices": {"tesla": {"display_name": "Tesla"}},
            },
            "cpus": {
                "type": "integer",
                "display_name": "CPU cores",
                "job_field": "cpus",
                "min": 1,
                "max": 8,
                "default": 2,
            },
            "walltime": {"type": "walltime", "display_name": "Time limit", "default": "01:00:00"},
        },
    },
    {
        "display_name": "Staff only",
        "slug": "staff",
        "allowed_groups": ["hpc-staff"],
        "spawner_override": {"partition": "debug"},
    },
]


@pytest.fixture
def site_profiles() -> list[dict[str, Any]]:
    import copy

    return copy.deepcopy(SITE_PROFILES)

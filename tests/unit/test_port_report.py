"""The job's port report can arrive before ``sbatch`` returned the job id: it must be retried."""

from __future__ import annotations

import pytest

from jupyterhub_hpc.spawner import HPCSpawner, PortReportTooEarly


def test_a_report_during_submission_is_asked_to_retry() -> None:
    spawner = HPCSpawner()
    spawner._spawn_pending = True
    with pytest.raises(PortReportTooEarly):
        spawner.accept_port(45678)
    assert spawner.job_port == 0


def test_a_report_with_no_spawn_at_all_is_refused_for_good() -> None:
    spawner = HPCSpawner()
    with pytest.raises(ValueError) as info:
        spawner.accept_port(45678)
    assert not isinstance(info.value, PortReportTooEarly)
    assert spawner.job_port == 0

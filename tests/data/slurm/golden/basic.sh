#!/bin/bash
#SBATCH --job-name=jupyterhub-alice
#SBATCH --output=/home/alice/.jupyterhub-hpc-%j.log
#SBATCH --chdir=/home/alice
#SBATCH --export=ALL
#SBATCH --nodes=1
#SBATCH --cpus-per-task=2
#SBATCH --mem=4096M
#SBATCH --time=02:00:00
#SBATCH --partition=debug
#SBATCH --account=proj1
#SBATCH --qos=normal
#SBATCH --constraint=a100&ib
#SBATCH --gres=gpu:a100:1
#SBATCH --licenses=matlab:1
# Written by jupyterhub-hpc. Every value below is shell-quoted.
umask 077
chmod 0600 -- /home/alice/.jupyterhub-hpc-"${SLURM_JOB_ID}".log 2>/dev/null || true
umask 0022
trap 'status=$?; echo "jupyterhub-hpc-exit-status=${status}"' EXIT
trap 'exit 143' TERM
export JUPYTERHUB_USER=alice
export JUPYTERHUB_API_URL=http://10.0.0.1:8081/hub/api
export JUPYTERHUB_SERVICE_PREFIX=/user/alice/
export JUPYTERHUB_OAUTH_SCOPES='["access:servers!server=alice/"]'
export PATH=/opt/jupyterhub-hpc/venv/bin:"$PATH"
# -- job_script_prologue (admin) --
module load python/3.11
jupyterhub-hpc-singleuser --port-range 9000-9100 -- jupyterhub-singleuser --debug
server_status=$?
# -- job_script_epilogue (admin) --
echo finished
exit "$server_status"

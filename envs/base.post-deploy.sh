#!/usr/bin/env bash
# Runs once inside the freshly created env (Snakemake: <env>.post-deploy.sh).
# medmnist 3.0.2 declares torchvision, which this CPU torch cannot use; medverify needs
# only its dataset records and downloader, so it goes in --no-deps (deps are in the yaml).
set -euo pipefail
python -m pip install --no-deps medmnist==3.0.2

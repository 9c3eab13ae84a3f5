#!/usr/bin/env bash
# Runs once inside the freshly created lirpa env (Snakemake: <env>.post-deploy.sh).
# pip requirement files cannot say --no-deps for one package, so:
# - auto-lirpa 0.3 declares torch<1.13: --no-deps keeps the env's torch 2.13
#   (medverify._lirpa_compat bridges the API differences);
# - medmnist 3.0.2 declares torchvision, which this CPU torch cannot use.
# Their runtime deps are listed in lirpa.yaml.
set -euo pipefail
python -m pip install --no-deps auto-lirpa==0.3 medmnist==3.0.2

#!/usr/bin/env bash
# Leave-one-site-out cross-validation of the demo recipe on the six synthetic scanner sites:
# one fit per site, trained on the other five and scored on the held-out one (cv.json: per_group).
# About 6 x 25 minutes on 2 CPU cores; set EPOCHS or PATIENTS lower for a quick look.
# Usage: scripts/leave_one_site_out.sh [OUT_DIR]   (run from the repository root, after make test)
set -euo pipefail
OUT=${1:-runs/loso}
PATIENTS=${PATIENTS:-480}
EPOCHS=${EPOCHS:-32}
SEED=${SEED:-21}
BIN=${BIN:-.venv/bin}
mkdir -p "$OUT"
"$BIN/fetalcns" synth --out "$OUT/data" --patients "$PATIENTS" --seed "$SEED" --sites A,B,C,D,E,F
OMP_WAIT_POLICY=PASSIVE "$BIN/fetalcns" train --data "$OUT/data" --out "$OUT/cv" --group-by site \
    --width 0.25 --output-stride 16 --pooling lse --lse-sharpness 4 --epochs "$EPOCHS" --seed 0 --no-progress
"$BIN/python" - "$OUT/cv/cv.json" <<'PY'
import json, sys
cv = json.load(open(sys.argv[1]))
print(json.dumps({"protocol": cv["protocol"], "per_group": cv["per_group"],
                  "out_of_fold_patient_accuracy": cv["out_of_fold_patient_accuracy"]}, indent=2))
PY

#!/usr/bin/env bash
# The second example (sets up .venv on first use): offline, the shipped model makes a face react to
# a BioVid-like heat protocol, rendered with the stimulus and PSPI curves under it.
set -euo pipefail
. "$(dirname "$0")/setup.sh"
mkdir -p out
paindiffusion generate --protocol biovid --seconds 60 --expressiveness high --seed 0 -o out/demo.npz --overwrite
paindiffusion render out/demo.npz -o out/demo.mp4 --side-by-side --overwrite
paindiffusion render out/demo.npz -o out/demo.arkit.json --overwrite
echo "done: out/demo.mp4 (video), out/demo.npz (frames, PSPI, stimulus), out/demo.arkit.json (ARKit-52 weights)"

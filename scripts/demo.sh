#!/usr/bin/env bash
# The main job (sets up .venv on first use): the live demo. A local web page on 127.0.0.1 shows a face that
# reacts, at 25 fps, to the heat you apply; it prints its URL. Extra arguments go to 'paindiffusion demo'
# (e.g. --port 8080 --open). Ctrl-C stops it. The offline mp4 example is ./scripts/demo_video.sh.
set -euo pipefail
. "$(dirname "$0")/setup.sh"
exec paindiffusion demo "$@"

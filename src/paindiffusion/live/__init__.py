"""Live use: a face that reacts to heat as it changes, in a browser (``paindiffusion demo``) or streamed to
robots and avatars (``paindiffusion stream``). :mod:`.generator` runs the batched generator at 25 fps,
:mod:`.outputs` sends frames out (OSC, WebSocket, stdout), :mod:`.inputs` brings controls in (OSC, serial,
stdin, CSV), :mod:`.server` is the web demo, :mod:`.guard` and :mod:`.web` hold what every local web
server shares."""

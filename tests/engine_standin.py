"""A stand-in for an inference engine executable (vllm / sglang / llama-server) in tests.

It replays the real public startup log of one golden row (KVPLAN_STANDIN_ROW, from tests/golden), then
prints the engine's ready line and waits to be stopped, like a server. KVPLAN_STANDIN_ARGV names a file
that receives its command line; KVPLAN_STANDIN_MODE=exit makes it exit with code 1 after the log instead.
"""

import json
import os
import sys
import time
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden"
READY = {"vllm": "(APIServer pid=1) INFO:     Application startup complete.",
         "sglang": "[2025-01-01 00:00:00] The server is fired up and ready to roll!",
         "llama.cpp": "main: server is listening on http://127.0.0.1:8080 - starting the main loop"}

rows = {r["id"]: r for f in ("engine_logs.json", "startup_logs.json", "explain_logs.json") for r in json.loads((GOLDEN / f).read_text())}
row = rows[os.environ["KVPLAN_STANDIN_ROW"]]
if os.environ.get("KVPLAN_STANDIN_ARGV"):
    Path(os.environ["KVPLAN_STANDIN_ARGV"]).write_text(json.dumps(sys.argv[1:]))
for line in row["log"]:
    print(line, flush=True)
    time.sleep(0.005)
if os.environ.get("KVPLAN_STANDIN_MODE") == "exit":
    sys.exit(1)
print(READY[row["engine"]], flush=True)
while True:  # a server: runs until stopped
    time.sleep(1)

"""LitServe peer: a LitAPI over the factory's pipeline; POST /predict {"features": {...}}.

python peer_litserve.py PORT WORKERS   (inference workers per device, on the CPU; LitServe
starts as many API server processes by default); no access log, as the gateway runs.
"""

from __future__ import annotations

import sys

import litserve as ls
from peer_model import PeerModel


class ChurnAPI(ls.LitAPI):
    def setup(self, device) -> None:
        self.model = PeerModel()

    def decode_request(self, request):
        return request["features"]

    def predict(self, x):
        return self.model.predict_one(x)

    def encode_response(self, output):
        return output


if __name__ == "__main__":
    port, workers = int(sys.argv[1]), int(sys.argv[2])
    server = ls.LitServer(ChurnAPI(), accelerator="cpu", workers_per_device=workers, timeout=60)
    server.run(port=port, host="127.0.0.1", generate_client_file=False, log_level="warning")

"""The gateway: one Envoy in front of the mesh that serves gRPC and REST/JSON (the
gRPC-JSON transcoder), checks JWTs, authorises by role and rate-limits per route."""

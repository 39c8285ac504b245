"""The local mesh: every service of fenlei.services on one machine, each behind its own
Envoy sidecar (or none, `--no-sidecars`), the gateway in front, kept running by one
supervisor process. `fenlei up`, `status`, `mesh apply` and `down` drive it (LocalMesh)."""

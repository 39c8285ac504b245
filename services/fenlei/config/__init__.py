"""Live configuration: settings changed while the mesh runs, the gateway's deny list, and the history of every change."""

"""The local mesh's telemetry: the trace collector and what reads the spans it keeps."""

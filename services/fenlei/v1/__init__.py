"""Generated from protos/fenlei/v1 by scripts/gen.py. Do not edit."""

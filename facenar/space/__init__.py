"""The space wing: backbones, operators, architectures, supernets and their cost (parameters, multiply-adds, latency)."""

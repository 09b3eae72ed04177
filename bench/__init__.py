"""The benchmark harness: real broker, services and peers as processes on loopback, load from other processes.

``python -m bench <scenario> [--size small|full] [--out DIR]`` (or ``locstream bench ...``); see docs/benchmarks.md.
"""

"""Shipyard's model server: a KServe model over a registered version, its contract and Feast online.

Modules, one per noun: `errors` (failure modes -> HTTP status), `contract` (request validation),
`tensors` (the V2 binary tensor extension, decoded strictly), `features` (online feature assembly),
`model` (the `kserve.Model`), `http` (the ASGI edge), `connections` (HTTP/1.1 connections: header
deadline and size), `lifecycle` (start-up, drain, shutdown), `metrics` (Prometheus), `requestlog`
(batched request log), `server` (start-up), `process` (a server as a child process), `demo` (the end
of `make run`).
"""

__all__ = [
    "connections",
    "contract",
    "demo",
    "errors",
    "features",
    "http",
    "lifecycle",
    "metrics",
    "model",
    "requestlog",
    "server",
    "tensors",
]

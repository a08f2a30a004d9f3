"""Shipyard's model server: a KServe model over a registered version, its contract and Feast online.

Modules, one per noun: `errors` (failure modes -> HTTP status), `contract` (request validation),
`tensors` (the V2 binary tensor extension, decoded strictly), `features` (online feature assembly),
`scoring` (the fitted pipeline compiled to score column arrays), `batching` (concurrent requests
scored together), `model` (the `kserve.Model`), `workers` (several processes on one port), `http`
(the ASGI edge), `connections` (HTTP/1.1 connections: header deadline and size), `lifecycle`
(start-up, drain, shutdown), `metrics` (Prometheus), `requestlog` (batched request log), `server`
(start-up), `process` (a server as a child process), `demo` (the end of `make run`).
"""

__all__ = [
    "batching",
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
    "scoring",
    "server",
    "tensors",
    "workers",
]

"""Shipyard's model server: a KServe model over a registered version, its contract and Feast online.

Modules, one per noun: `errors` (failure modes -> HTTP status), `contract` (request validation),
`features` (online feature assembly), `model` (the `kserve.Model`), `http` (the ASGI edge),
`metrics` (Prometheus), `requestlog` (batched request log), `server` (start-up), `demo` (the
end of `make run`).
"""

__all__ = ["contract", "demo", "errors", "features", "http", "metrics", "model", "requestlog", "server"]

"""`python -m serving`: run the model server (see serving.server.parse_args for the options)."""

from serving.workers import prepare_metrics_env

prepare_metrics_env()  # before anything imports prometheus_client

from serving.server import main  # noqa: E402

main()

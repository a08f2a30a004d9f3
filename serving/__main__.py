"""`python -m serving`: run the model server (see serving.server.parse_args for the options)."""

from serving.server import main

main()

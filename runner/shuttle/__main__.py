from shuttle.cli import entrypoint

entrypoint()

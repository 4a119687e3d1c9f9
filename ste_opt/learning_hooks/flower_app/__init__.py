"""Deployable Flower app (SuperLink + SuperNodes) for ``SplitFedTrainer``.

This folder is a Flower app project: ``pyproject.toml`` names ``server_app:app`` and
``client_app:app``; ``flwr run <this folder> <federation>`` builds it into a FAB. The ServerApp runs
``SplitFedTrainer.fit`` with ``FlowerBackend(grid=grid)``; each SuperNode's ClientApp rebuilds its
client role from the run config (``config``: a config file or bundled name; the node's
``partition-id`` selects its data partition). See ``docs/distributed.md`` for the commands.
"""
